"""What a path in a models folder holds, as the repository and the runtime both see it."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import NotFound
from appliance.serving.formats import Format, model_format


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    return path


@pytest.mark.parametrize(
    "files, asked, expected",
    [
        (["1/saved_model.pb"], "1", (Format.SAVED_MODEL, "1")),
        (["1/saved_model.pbtxt"], "1", (Format.SAVED_MODEL, "1")),
        (["1/saved_model.pb", "1/model.keras"], "1", (Format.SAVED_MODEL, "1")),
        (["1/model.keras"], "1", (Format.KERAS, "1/model.keras")),
        (["1/model.h5"], "1", (Format.KERAS, "1/model.h5")),
        (["1/model.tflite"], "1", (Format.TFLITE, "1/model.tflite")),
        (["tiny.keras"], "tiny.keras", (Format.KERAS, "tiny.keras")),
        (["OLD.H5"], "OLD.H5", (Format.KERAS, "OLD.H5")),
        (["lite.tflite"], "lite.tflite", (Format.TFLITE, "lite.tflite")),
    ],
)
def test_model_format(tmp_path, files, asked, expected):
    for file in files:
        touch(tmp_path / file)
    kind, file = expected
    assert model_format(tmp_path / asked) == (kind, tmp_path / file)


@pytest.mark.parametrize(
    "files, asked, says",
    [
        ([], "1", "Could not find SavedModel .pb or .pbtxt at supplied export directory path"),
        (["1/variables/variables.index"], "1", "Could not find SavedModel"),
        (["1/model.keras", "1/model.tflite"], "1", "more than one model (model.keras, model.tflite)"),
        (["foo.onnx"], "foo.onnx", "not a model file"),
        ([], "gone", "Could not find SavedModel"),
    ],
)
def test_no_model_is_an_error_naming_the_path(tmp_path, files, asked, says):
    (tmp_path / "1").mkdir()
    for file in files:
        touch(tmp_path / file)
    with pytest.raises(NotFound) as raised:
        model_format(tmp_path / asked)
    assert says in raised.value.message and str(tmp_path / asked) in raised.value.message
