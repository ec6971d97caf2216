"""Build the models a user brings, in each format the appliance serves, for tests/test_own_models.py.

One small Keras 3 model (``features`` float32 [None, 4] -> 3 softmax scores), written every way a user may
save it, plus the trap that saves without error but cannot answer:

    tiny.keras              model.save("tiny.keras")                        (Keras 3 zip)
    tiny.h5                 model.save("tiny.h5")                           (legacy HDF5)
    tiny_export/            model.export("tiny_export")                     (a SavedModel, no version folder)
    tiny.tflite             TFLiteConverter.from_saved_model("tiny_export") (TensorFlow Lite, any batch)
    trap_saved/1/           tf.saved_model.save(model, ...)                 (loads, then "Could not find variable")
    trap_module/1/          tf.saved_model.save(module holding the model)  (the same trap inside a tf.Module)

Usage:

    python tests/own_models.py --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

FEATURES = 4
CLASSES = 3


def tiny_model() -> keras.Model:
    """A Sequential model with seeded weights: Dense(8, relu) -> Dense(3, softmax)."""
    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input((FEATURES,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )


def sample_rows(count: int = 2) -> np.ndarray:
    """Rows to send both to the served model and to the model called in-process."""
    return np.random.default_rng(3).normal(size=(count, FEATURES)).astype(np.float32)


class _Holder(tf.Module):
    def __init__(self, model: keras.Model):
        super().__init__()
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="features")])
    def serve(self, features):
        return {"scores": self.model(features)}


def save_trap(model: keras.Model, path: Path) -> None:
    """Keras 3 through ``tf.saved_model.save``: the variables are not tracked (tensorflow/serving#2250)."""
    tf.saved_model.save(model, str(path))


def save_trap_module(model: keras.Model, path: Path) -> None:
    """The same trap, the model held by a tf.Module with its own serving function."""
    holder = _Holder(model)
    tf.saved_model.save(holder, str(path), signatures={"serving_default": holder.serve})


def build_own_models(out: Path) -> Path:
    """Write every model of the module docstring under ``out``; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = tiny_model()
    model.save(out / "tiny.keras")
    model.save(out / "tiny.h5")
    model.export(str(out / "tiny_export"), verbose=False)
    (out / "tiny.tflite").write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(out / "tiny_export")).convert())
    save_trap(model, out / "trap_saved" / "1")
    save_trap_module(model, out / "trap_module" / "1")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    build_own_models(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
