"""Dropping a new version into a served base path while clients keep sending requests.

A real appliance process polls a base path in tmp_path; client threads send
``/predict`` continuously while version 2 is copied in (staged, then renamed
into place as an exporter would). The new version must become AVAILABLE and
chosen, the old one retired, and no request may fail.
"""

from __future__ import annotations

import shutil
import time

import requests

from .conftest import MODELS, ApplianceProcess, PredictLoad

POLL_SECONDS = 0.2


def test_new_version_becomes_chosen_with_no_failed_request(tmp_path):
    base = tmp_path / "digits"
    base.mkdir()
    shutil.copytree(MODELS / "digits" / "1", base / "1")
    server = ApplianceProcess(
        "--model_name", "digits", "--model_base_path", str(base), "--file_system_poll_wait_seconds", str(POLL_SECONDS)
    )
    with PredictLoad(server.url) as load:
        time.sleep(1.0)
        staging = tmp_path / "staging"
        shutil.copytree(MODELS / "digits" / "2", staging)
        staging.rename(base / "2")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not load.versions or load.versions[-1] != 2):
            time.sleep(POLL_SECONDS / 4)
        switched_at = len(load.versions)
        time.sleep(1.0)

    assert load.failures == []
    assert load.versions[0] == 1 and load.versions[-1] == 2
    # Once version 2 answered, new requests all go to it.
    tail = load.answers_since(switched_at)
    assert tail and set(tail) == {2}
    status = requests.get(server.url + "/v1/models/digits", timeout=30).json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "END")]
    assert server.stop() == 0
    assert "Traceback" not in server.stderr


def test_corrupt_version_shows_its_error_and_the_others_keep_serving(tmp_path):
    # A models folder serves every version of each model, so version 1 stays served beside a broken 2.
    base = tmp_path / "models" / "digits"
    shutil.copytree(MODELS / "digits" / "1", base / "1")
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"\x0a\x05half-written")
    server = ApplianceProcess(
        "--models_dir", str(tmp_path / "models"), "--file_system_poll_wait_seconds", str(POLL_SECONDS)
    )
    try:
        status = requests.get(server.url + "/v1/models/digits", timeout=30).json()["model_version_status"]
        by_version = {s["version"]: s for s in status}
        assert by_version["2"]["state"] == "END"
        assert by_version["2"]["status"]["error_code"] != "OK" and by_version["2"]["status"]["error_message"]
        assert by_version["1"]["state"] == "AVAILABLE"
        answer = requests.post(server.url + "/predict", json={"input": [[0.0] * 64]}, timeout=30).json()
        assert answer["version"] == 1
        response = requests.post(
            server.url + "/v1/models/digits/versions/2:predict", json={"instances": [[0.0] * 64]}, timeout=30
        )
        assert response.status_code == 404 and "Specific(digits, 2)" in response.json()["error"]

        # Repairing the version (an exporter finishing its copy) makes it load and become chosen.
        shutil.rmtree(base / "2")
        staging = tmp_path / "staging"
        shutil.copytree(MODELS / "digits" / "2", staging)
        staging.rename(base / "2")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = requests.post(server.url + "/predict", json={"input": [[0.0] * 64]}, timeout=30).json()
            if answer["version"] == 2:
                break
            time.sleep(POLL_SECONDS)
        assert answer["version"] == 2
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.stderr
