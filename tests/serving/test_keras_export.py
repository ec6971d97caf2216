"""Keras files served as SavedModels: exported once by Keras' own model.export into the per-user cache.

The Keras model of tests/own_models.py is saved as ``.keras`` and ``.h5`` in tmp_path, loaded through the
real runtime and compared with the same model called in process.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from appliance import paths
from appliance.errors import InvalidArgument
from appliance.serving.runtime.keras_export import CONVERTED, STALE_SECONDS, exported_saved_model, file_digest
from appliance.serving.runtime.local_tf import LocalTFRuntime
from tests.own_models import sample_rows, tiny_model


@pytest.fixture(scope="module")
def runtime():
    return LocalTFRuntime("cpu")


@pytest.fixture(scope="module")
def keras_model():
    return tiny_model()


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def converted(cache_home: Path) -> list[str]:
    folder = cache_home / "appliance" / CONVERTED
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_keras_file_answers_as_the_model_in_process(runtime, keras_model, tmp_path, cache_home, suffix, caplog):
    file = tmp_path / f"tiny{suffix}"
    keras_model.save(file)
    original = file.read_bytes()
    caplog.set_level(logging.INFO, logger="appliance.serving.runtime.keras_export")
    # What a conversion killed mid-way leaves: removed once a day old, kept while it may be one still running.
    stale, recent = (cache_home / "appliance" / CONVERTED / f".{n}.x.tmp" for n in ("stale", "recent"))
    for temp in (stale, recent):
        (temp / "variables").mkdir(parents=True)
    os.utime(stale, (time.time() - STALE_SECONDS - 60,) * 2)

    servable = runtime.load(file)
    try:
        rows = sample_rows()
        (output,) = servable.predict("serving_default", {"features": rows}).values()
        assert np.allclose(output, keras_model(rows).numpy(), atol=1e-6)
    finally:
        servable.close()

    assert converted(cache_home) == sorted([file_digest(file), recent.name])
    assert paths.user_cache_dir() == cache_home / "appliance"
    assert file.read_bytes() == original
    assert [r.getMessage() for r in caplog.records if "converted to SavedModel" in r.getMessage()]

    caplog.clear()
    runtime.load(file).close()  # a restart: the conversion is found, not done again
    messages = [r.getMessage() for r in caplog.records]
    assert any("using cached conversion" in m for m in messages) and not any("converted to" in m for m in messages)


def test_a_version_folder_holding_model_keras_is_served(runtime, keras_model, tmp_path):
    version = tmp_path / "tiny" / "2"
    version.mkdir(parents=True)
    keras_model.save(version / "model.keras")
    servable = runtime.load(version)
    try:
        assert set(servable.signatures["serving_default"].inputs) == {"features"}
    finally:
        servable.close()


def test_the_same_file_under_another_name_reuses_the_conversion(keras_model, tmp_path, cache_home):
    keras_model.save(tmp_path / "a.keras")
    shutil.copy(tmp_path / "a.keras", tmp_path / "b.keras")
    assert exported_saved_model(tmp_path / "a.keras") == exported_saved_model(tmp_path / "b.keras")
    assert len(converted(cache_home)) == 1


def test_a_damaged_file_is_an_error_naming_it_and_leaves_no_cache(runtime, keras_model, tmp_path, cache_home):
    file = tmp_path / "cut.keras"
    keras_model.save(file)
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(InvalidArgument, match=str(file)):
        runtime.load(file)
    assert converted(cache_home) == [], "neither a conversion nor a temp folder is left"
