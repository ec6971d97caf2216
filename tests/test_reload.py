"""Reloading a model over HTTP (``POST /v1/appliance/models/<name>/reload``) while clients keep predicting.

A real appliance process on a copy of the bundled digits model; real HTTP on loopback.
"""

from __future__ import annotations

import shutil
import time

import requests

from .conftest import MODELS, ApplianceProcess, PredictLoad

RELOAD = "/v1/appliance/models/digits/reload"
PIXELS = {"input": [[8.0] * 64]}


def probabilities(server) -> list:
    return requests.post(server.url + "/predict", json=PIXELS, timeout=30).json()["predictions"]["probabilities"]


def test_reload_under_load_drops_no_request_and_serves_the_files_on_disk(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS / "digits", models / "digits")
    server = ApplianceProcess(
        "--models_dir",
        str(models),
        "--file_system_poll_wait_seconds",
        "0",
        "--require_token_for_control",
        home=tmp_path / "home",
    )
    try:
        token = (tmp_path / "home" / "config" / "appliance" / "token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        before = probabilities(server)
        # Version 2 redeployed in place with version 1's weights: only a reload can pick that up.
        shutil.rmtree(models / "digits" / "2")
        shutil.copytree(MODELS / "digits" / "1", models / "digits" / "2")
        with PredictLoad(server.url, clients=4, body=PIXELS) as load:
            for _ in range(3):
                answered = len(load.versions)
                assert requests.post(server.url + RELOAD, timeout=120).status_code == 401
                reloaded = requests.post(server.url + RELOAD, timeout=120, headers=auth)
                assert reloaded.status_code == 200, reloaded.text
                assert reloaded.json()["chosen_version"] == 2
                assert {v["state"] for v in reloaded.json()["versions"]} == {"AVAILABLE"}
                deadline = time.monotonic() + 60
                while len(load.versions) < answered + 2 * load.clients and time.monotonic() < deadline:
                    time.sleep(0.05)
        assert load.failures == []
        assert len(load.versions) >= 6 * load.clients and set(load.versions) == {2}
        assert probabilities(server) != before, "the reload served the files now on disk"
    finally:
        assert server.stop() == 0
