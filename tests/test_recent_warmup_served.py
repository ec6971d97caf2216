"""Warm-up from recent requests in a real ``appliance serve``: a new version is warm, before it serves, with exactly
the requests this machine sent, and nothing is written into the model's folder.

The model is tests/counter_models.py's counter, whose variable adds up the inputs it ran: after version 2 becomes
AVAILABLE, its variable (read through the TF Serving API with version 2) says how many recorded requests of x = 1
its warm-up replayed.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import requests

from appliance.serving.request_log import model_dir

from .conftest import ApplianceProcess, wait_for
from .counter_models import build_counter_model

SENT = 20


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    (home / "config" / "appliance").mkdir(parents=True)
    (home / "config" / "appliance" / "settings.toml").write_text("request_log_sampling = { counter = 1.0 }\n")
    return home


@pytest.fixture
def base(tmp_path):
    base = tmp_path / "models" / "counter"
    build_counter_model(base, 1)
    return base


def serve(home: Path, base: Path) -> ApplianceProcess:
    return ApplianceProcess("--model_name", "counter", "--model_base_path", str(base), home=home)


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def warmup_url(server: ApplianceProcess, model: str = "counter") -> str:
    return f"{server.url}/v1/appliance/models/{model}/warmup"


def test_a_new_version_is_warm_with_the_recorded_requests_before_it_serves(home, base, tmp_path):
    server = serve(home, base)
    try:
        for _ in range(SENT):
            response = requests.post(f"{server.url}/v1/models/counter:predict", json={"instances": [1.0]}, timeout=30)
            assert response.status_code == 200, response.text

        response = requests.put(warmup_url(server), json={"from_recent_requests": True}, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "model": "counter",
            "from_recent_requests": True,
            "limit": 100,
            "records": SENT,
            "last_load": None,
        }
        snapshot = model_dir(home / "data" / "appliance" / "warmup", "counter") / "tf_serving_warmup_requests"
        assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
        preferences = json.loads((home / "config" / "appliance" / "preferences.json").read_text())
        assert preferences["warmup_from_recent_requests"] == {"counter": 100}

        before = files_under(base)
        staging = tmp_path / "staging"
        build_counter_model(staging, 2)
        (staging / "2").rename(base / "2")
        copied = files_under(base / "2")

        def available() -> bool:
            status = requests.get(f"{server.url}/v1/models/counter/versions/2", timeout=30).json()
            return status.get("model_version_status", [{}])[0].get("state") == "AVAILABLE"

        wait_for(available, timeout=60)
        body = {"signature_name": "read", "instances": [0.0]}
        read = requests.post(f"{server.url}/v1/models/counter/versions/2:predict", json=body, timeout=30)
        assert read.json()["predictions"] == [SENT]  # every recorded request, once, before v2 served
        document = requests.get(warmup_url(server), timeout=30).json()
        assert document["last_load"] == {"version": 2, "replayed": SENT, "skipped": 0}

        after = files_under(base)
        assert {k: v for k, v in after.items() if not k.startswith("2")} == before
        assert {k.removeprefix("2/"): v for k, v in after.items() if k.startswith("2/")} == copied

        response = requests.put(warmup_url(server), json={"from_recent_requests": False}, timeout=30)
        assert response.status_code == 200 and response.json()["from_recent_requests"] is False
        assert not snapshot.exists()
    finally:
        server.stop()


def test_bad_warmup_requests_get_a_precise_status_and_the_server_keeps_serving(home, base):
    server = serve(home, base)
    try:
        url = warmup_url(server)
        response = requests.put(url, json={"from_recent_requests": True}, timeout=30)
        assert response.status_code == 400 and "no recorded requests of model counter" in response.json()["error"]
        for body in ({"from_recent_requests": "yes"}, {}, {"from_recent_requests": True, "limit": 0}, [True]):
            response = requests.put(url, json=body, timeout=30)
            assert response.status_code == 400 and response.json()["error"], body
        response = requests.put(url, json={"from_recent_requests": True, "size": 3}, timeout=30)
        assert response.status_code == 400 and "unknown: size" in response.json()["error"]
        for method in (requests.get, requests.put):
            response = method(warmup_url(server, "nope"), json={"from_recent_requests": False}, timeout=30)
            assert response.status_code == 404 and "nope" in response.json()["error"]
        assert requests.get(url, timeout=30).json()["from_recent_requests"] is False
        response = requests.post(f"{server.url}/v1/models/counter:predict", json={"instances": [1.0]}, timeout=30)
        assert response.status_code == 200
    finally:
        server.stop()
