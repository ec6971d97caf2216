"""A user's own models dropped into the per-user models folder of a running appliance.

One real appliance process starts with an empty per-user models folder; the formats of
tests/own_models.py are then copied in while it runs (staged beside the folder, then renamed into it,
as a file manager's move would). Each must be served within the poll and answer ``:predict`` like the
same Keras model called in this process; the Keras trap and a stray file must end with errors naming
them. A restart must find the ``.keras`` conversion in the cache rather than convert again.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import requests

from .conftest import ApplianceProcess
from .own_models import build_own_models, sample_rows

POLL_SECONDS = 0.5


@pytest.fixture(scope="module")
def own_models(tmp_path_factory) -> Path:
    return build_own_models(tmp_path_factory.mktemp("own-models"))


@pytest.fixture(scope="module")
def in_process(own_models):
    return keras.saving.load_model(own_models / "tiny.keras")


def drop(source: Path, folder: Path, relative: str) -> None:
    """Copy ``source`` to ``folder / relative`` as a move would: assembled outside, its top entry renamed in."""
    top = relative.split("/", 1)[0]
    staging = folder.parent / "staging"
    target = staging / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    (staging / top).rename(folder / top)


def settled_status(server: ApplianceProcess, name: str, timeout: float = 90) -> dict:
    """The status of version ``name``'s newest version once it is AVAILABLE or END."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(f"{server.url}/v1/models/{name}", timeout=30)
        if response.status_code == 200:
            newest = response.json()["model_version_status"][0]
            if newest["state"] in ("AVAILABLE", "END"):
                return newest
        time.sleep(POLL_SECONDS / 2)
    raise AssertionError(f"model {name} never settled: {server.stderr[-3000:]}")


def predictions(server: ApplianceProcess, name: str, rows: np.ndarray) -> np.ndarray:
    response = requests.post(f"{server.url}/v1/models/{name}:predict", json={"instances": rows.tolist()}, timeout=30)
    assert response.status_code == 200, response.text
    return np.array(response.json()["predictions"])


def test_each_format_dropped_in_is_served_or_says_why_not(own_models, in_process, tmp_path):
    home = tmp_path / "home"
    server = ApplianceProcess("--file_system_poll_wait_seconds", str(POLL_SECONDS), home=home)
    try:
        folder = home / "data" / "appliance" / "models"
        assert folder.is_dir() and not any(folder.iterdir())
        drop(own_models / "tiny.keras", folder, "tiny.keras")
        drop(own_models / "tiny.h5", folder, "legacy.h5")
        drop(own_models / "tiny_export", folder, "flat")
        drop(own_models / "tiny.keras", folder, "versioned/2/model.keras")
        drop(own_models / "tiny.tflite", folder, "lite.tflite")
        drop(own_models / "tiny.tflite", folder, "lite_versioned/3/model.tflite")
        drop(own_models / "trap_saved" / "1", folder, "trap/1")
        drop(own_models / "trap_module" / "1", folder, "trap_module/1")
        (folder / "foo.onnx").write_bytes(b"not for this appliance")
        (folder / "notes.md").write_text("ignored: a document beside the models")

        rows = sample_rows()
        expected = in_process(rows).numpy()
        for name in ("tiny", "legacy", "flat", "versioned", "lite", "lite_versioned"):
            status = settled_status(server, name)
            assert status["state"] == "AVAILABLE", (name, status)
            assert np.allclose(predictions(server, name, rows), expected, atol=1e-6), name
        assert settled_status(server, "versioned")["version"] == "2"
        assert settled_status(server, "lite_versioned")["version"] == "3"
        lite = requests.get(f"{server.url}/v1/models/lite/metadata", timeout=30).json()
        (signature,) = lite["metadata"]["signature_def"]["signature_def"].values()
        assert [dim["size"] for dim in next(iter(signature["inputs"].values()))["tensor_shape"]["dim"]] == ["-1", "4"]

        for name in ("trap", "trap_module"):
            status = settled_status(server, name)
            assert status["state"] == "END"
            assert "re-export it with model.export(path)" in status["status"]["error_message"], status
        stray = settled_status(server, "foo.onnx")
        assert stray["state"] == "END" and str(folder / "foo.onnx") in stray["status"]["error_message"]
        assert ".keras" in stray["status"]["error_message"]

        health = requests.get(server.url + "/health", timeout=30).json()
        listed = {model["name"] for model in health["models"]}
        assert {"tiny", "legacy", "flat", "versioned", "lite", "trap", "trap_module", "foo.onnx"} <= listed
        assert "notes.md" not in listed and "notes" not in listed
        assert {"trap", "trap_module", "foo.onnx"} <= set(health["unavailable_models"])

        # A folder of something else is an error until a model is in it: then it is tried again, and served.
        (folder / "late").mkdir()
        (folder / "late" / "weights.bin").write_bytes(b"\0" * 16)
        assert settled_status(server, "late")["state"] == "END"
        for item in (own_models / "tiny_export").iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy)(item, folder / "late" / item.name)
        deadline = time.monotonic() + 60
        while settled_status(server, "late")["state"] != "AVAILABLE" and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        assert np.allclose(predictions(server, "late", rows), expected, atol=1e-6)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.stderr
    assert "converted to SavedModel" in server.stderr

    restarted = ApplianceProcess(home=home)
    try:
        assert settled_status(restarted, "tiny")["state"] == "AVAILABLE"
        assert np.allclose(predictions(restarted, "tiny", rows), expected, atol=1e-6)
    finally:
        restarted.stop()
    assert "using cached conversion" in restarted.stderr
    assert "converted to SavedModel" not in restarted.stderr, "the restart converted again"
