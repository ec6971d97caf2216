"""The bundled SavedModels loaded the usual way, ``tf.saved_model.load`` and the ``serving_default`` signature.

Shared by the naive servers (which call the signature, or Keras, once per
request) and by the in-process measurement. Importing this module imports
TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


class SavedModel:
    """One SavedModel version and its ``serving_default`` signature, which takes one float32 input."""

    def __init__(self, path: Path):
        self.path = path
        self._loaded = tf.saved_model.load(str(path))  # the signature needs the loaded object alive
        self.signature = self._loaded.signatures["serving_default"]
        (self.input_name,) = self.signature.structured_input_signature[1]

    def call(self, tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.signature(**{self.input_name: tensor})

    def predict(self, instances: list) -> list[dict]:
        """TF Serving's row format: one ``{output: value}`` per instance."""
        outputs = self.call(tf.constant(instances, tf.float32))
        return as_rows({name: tensor.numpy() for name, tensor in outputs.items()})


def as_rows(outputs: Mapping[str, np.ndarray]) -> list[dict]:
    """A batch's outputs, one array per output name, as TF Serving's rows: one ``{output: value}`` per instance."""
    columns = {name: array.tolist() for name, array in outputs.items()}
    count = len(next(iter(columns.values())))
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def version_dirs(model: str) -> list[Path]:
    """The bundled versions of ``model``, oldest first."""
    return sorted((path for path in (MODELS_DIR / model).iterdir() if path.name.isdigit()), key=lambda p: int(p.name))


def bundled_model_names() -> list[str]:
    return sorted(path.name for path in MODELS_DIR.iterdir() if path.is_dir() and not path.name.startswith("_"))


def newest_version_dirs() -> dict[str, Path]:
    """The newest version of every bundled model (the version the appliance chooses), by model name."""
    return {name: version_dirs(name)[-1] for name in bundled_model_names()}


def load_newest() -> dict[str, SavedModel]:
    """:func:`newest_version_dirs`, each loaded as a :class:`SavedModel`."""
    return {name: SavedModel(path) for name, path in newest_version_dirs().items()}
