"""What a path in a models folder holds: a SavedModel, a Keras file or a TFLite file, or nothing servable.

The repository (finding models) and the runtime (loading them) both ask :func:`model_format`, so a
path the repository serves is one the runtime can load, and anything else fails with the same message
naming the path and listing what the appliance accepts.

    model_format(Path("models/digits/2"))      # -> (Format.SAVED_MODEL, Path("models/digits/2"))
    model_format(Path("~/models/tiny.keras"))  # -> (Format.KERAS, Path("~/models/tiny.keras"))
"""

from __future__ import annotations

import enum
from pathlib import Path

from ..errors import NotFound

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


class Format(enum.Enum):
    SAVED_MODEL = "SavedModel"
    KERAS = "Keras"
    TFLITE = "TFLite"


# A model file's suffix -> its format; ".h5" is Keras' legacy HDF5 format.
MODEL_SUFFIXES = {".keras": Format.KERAS, ".h5": Format.KERAS, ".tflite": Format.TFLITE}
VERSION_FILES = tuple(f"model{suffix}" for suffix in MODEL_SUFFIXES)  # a version folder holding one of these
ACCEPTED = (
    "the appliance serves <name>/<version>/saved_model.pb (TF Serving's layout), <name>/saved_model.pb "
    "(a SavedModel without version folder, e.g. from Keras' model.export), <name>.keras, <name>.h5, "
    "<name>.tflite, and <name>/<version>/model.keras, model.h5 or model.tflite"
)


def model_file_format(path: Path) -> Format | None:
    """The format a model file's name says (``tiny.keras`` -> KERAS), or None for any other name."""
    return MODEL_SUFFIXES.get(path.suffix.lower())


def model_format(path: Path) -> tuple[Format, Path]:
    """The format of the model at ``path`` (a version folder, a SavedModel folder or a model file) and its file.

    The file is the SavedModel folder itself, or the one Keras or TFLite file. Raises NotFound, naming
    ``path`` and what is accepted, when ``path`` holds no such model or more than one.
    """
    path = Path(path)
    if path.is_file():
        found = model_file_format(path)
        if found is None:
            raise NotFound(f"{path} is not a model file the appliance can serve: {ACCEPTED}")
        return found, path
    if any((path / name).is_file() for name in SAVED_MODEL_FILES):
        return Format.SAVED_MODEL, path
    files = [path / name for name in VERSION_FILES if (path / name).is_file()]
    if len(files) > 1:
        raise NotFound(f"{path} holds more than one model ({', '.join(f.name for f in files)}): keep one")
    if files:
        return MODEL_SUFFIXES[files[0].suffix], files[0]
    raise no_model_in(path)


def no_model_in(folder: Path) -> NotFound:
    """The error of a folder that holds no model, TF Serving's message first (its clients may match on it)."""
    return NotFound(f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {folder}; {ACCEPTED}")
