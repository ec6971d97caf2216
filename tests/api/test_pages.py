"""``/health`` states, with a real manager before, during and after its first load."""

from __future__ import annotations

import shutil

from appliance.api.pages import health_document
from appliance.config import ModelConfig
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ..conftest import MODELS


def test_health_is_loading_then_ready_then_degraded(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    shutil.copytree(MODELS / "iris" / "1", good / "1")
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "saved_model.pb").write_bytes(b"corrupt")
    runtime = LocalTFRuntime(device="cpu")
    manager = ModelManager(Repository([ModelConfig("good", good)]), runtime, poll_seconds=0)
    code, document = health_document(manager)
    assert (code, document["status"]) == (503, "loading")
    assert document["device"]["type"] == "CPU"
    manager.start()
    assert manager.wait_until_ready(60)
    code, document = health_document(manager)
    assert (code, document["status"]) == (200, "ready")
    assert document["models"][0]["versions"] == [{"version": 1, "state": "AVAILABLE", "error": None}]
    manager.stop()

    mixed = ModelManager(Repository([ModelConfig("good", good), ModelConfig("bad", bad)]), runtime, 0)
    mixed.start()
    assert mixed.wait_until_ready(60)
    code, document = health_document(mixed)
    assert (code, document["status"], document["unavailable_models"]) == (200, "degraded", ["bad"])
    (broken,) = next(m for m in document["models"] if m["name"] == "bad")["versions"]
    assert broken["state"] == "END" and broken["error"]
    mixed.stop()
