"""Choosing the version that answers unversioned requests: HTTP control, zero-drop switching, persistence.

Real appliance processes with their own per-user folders; real HTTP on loopback.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import statistics
import threading
import time

import pytest
import requests

from .conftest import MODELS, ApplianceProcess, PredictLoad

CHOSEN = "/v1/appliance/models/digits/chosen"
PIXELS = {"input": [[5.0] * 64]}


def choose(server, **body) -> requests.Response:
    return requests.put(server.url + CHOSEN, json=body, timeout=60)


def predicted_version(server) -> int:
    return requests.post(server.url + "/predict", json=PIXELS, timeout=30).json()["version"]


@pytest.fixture
def server():
    process = ApplianceProcess()
    yield process
    process.stop()


def test_choose_over_http_changes_predict_and_unversioned_tf_serving_calls(server):
    assert predicted_version(server) == 2
    response = choose(server, version=1)
    assert response.status_code == 200, response.text
    assert response.json()["chosen_version"] == 1
    assert predicted_version(server) == 1
    metadata = requests.get(server.url + "/v1/models/digits/metadata", timeout=30).json()
    assert metadata["model_spec"]["version"] == "1"
    assert requests.get(server.url + CHOSEN, timeout=30).json()["chosen_version"] == 1
    health = {m["name"]: m for m in requests.get(server.url + "/health", timeout=30).json()["models"]}
    assert health["digits"]["chosen_version"] == 1 and health["iris"]["chosen_version"] == 2


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (CHOSEN, {"version": 9}, 404, "Could not find version 9 of model digits"),
        (CHOSEN, {"label": "nope"}, 400, "Unrecognized servable version label: nope"),
        (CHOSEN, {"version": 1, "label": "x"}, 400, "exactly one of"),
        (CHOSEN, {}, 400, "exactly one of"),
        ("/v1/appliance/models/nope/chosen", {"version": 1}, 404, "nope"),
    ],
)
def test_choose_errors(server, path, body, status, message):
    response = requests.put(server.url + path, json=body, timeout=30)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert predicted_version(server) == 2


def test_version_as_status_shows_it_a_string_of_digits(server):
    status = requests.get(server.url + "/v1/models/digits", timeout=30).json()["model_version_status"]
    other = next(v["version"] for v in status if v["version"] != str(predicted_version(server)))
    assert isinstance(other, str)
    response = choose(server, version=other)
    assert response.status_code == 200, response.text
    assert str(response.json()["chosen_version"]) == other == str(predicted_version(server))
    for bad in ("0", "-1", "2.5", "abc", "", " 2", "²", True, 2.0, 0, -1, None, [2]):
        refused = choose(server, version=bad)
        assert refused.status_code == 400, bad
        assert refused.json()["error"] == f"'version' must be a positive integer (2 or \"2\"), not {json.dumps(bad)}"
    assert str(predicted_version(server)) == other


def test_switch_under_load_drops_nothing(server):
    with PredictLoad(server.url, clients=8, body=PIXELS) as load:
        time.sleep(1.0)
        load.marked.set()
        for i in range(40):
            assert choose(server, version=1 if i % 2 == 0 else 2).status_code == 200
            time.sleep(0.02)
        assert choose(server, version=1).status_code == 200
        load.marked.clear()
        after_last_switch = len(load.versions)
        time.sleep(1.0)

    assert load.failures == []
    assert set(load.versions) == {1, 2}
    assert set(load.answers_since(after_last_switch)) == {1}
    steady = [seconds for seconds, switching in load.latencies if not switching]
    during = [seconds for seconds, switching in load.latencies if switching]
    print(
        f"\nswitch under load: {len(load.versions)} requests, 0 failed, 41 switches; p99 steady "
        f"{statistics.quantiles(steady, n=100)[98] * 1e3:.1f} ms, during switching "
        f"{statistics.quantiles(during, n=100)[98] * 1e3:.1f} ms"
    )


def test_choice_survives_a_restart(tmp_path):
    first = ApplianceProcess(home=tmp_path)
    try:
        assert choose(first, version=1).status_code == 200
    finally:
        assert first.stop() == 0
    prefs = json.loads((tmp_path / "config" / "appliance" / "preferences.json").read_text())
    assert prefs["chosen_versions"] == {"digits": 1}
    second = ApplianceProcess(home=tmp_path)
    try:
        assert predicted_version(second) == 1
    finally:
        second.stop()


def test_kill_9_during_switching_leaves_preferences_intact(tmp_path):
    rng = random.Random(7)
    for round_ in range(3):
        server = ApplianceProcess(home=tmp_path)
        stop = threading.Event()

        def switch_forever(server=server, stop=stop):
            i = 0
            while not stop.is_set():
                try:
                    choose(server, version=1 + i % 2)
                except requests.RequestException:
                    return  # the process is gone
                i += 1

        switcher = threading.Thread(target=switch_forever)
        switcher.start()
        time.sleep(rng.uniform(0.2, 1.0))
        server.stop(signal.SIGKILL)
        stop.set()
        switcher.join(timeout=60)
        prefs = json.loads((tmp_path / "config" / "appliance" / "preferences.json").read_text())
        assert prefs["chosen_versions"]["digits"] in (1, 2), f"round {round_}: {prefs}"
    restarted = ApplianceProcess(home=tmp_path)
    try:
        assert predicted_version(restarted) == prefs["chosen_versions"]["digits"]
    finally:
        restarted.stop()


def test_choosing_a_version_the_policy_does_not_load_loads_it_first(tmp_path):
    base = tmp_path / "digits"
    for version in (1, 2):
        shutil.copytree(MODELS / "digits" / str(version), base / str(version))
    server = ApplianceProcess(
        "--model_name", "digits", "--model_base_path", str(base), "--file_system_poll_wait_seconds", "0.2"
    )
    try:
        status = requests.get(server.url + "/v1/models/digits", timeout=30).json()["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE")]  # latest 1
        assert choose(server, version=1).json()["chosen_version"] == 1
        assert predicted_version(server) == 1
        time.sleep(1.0)  # several polls: the chosen version stays loaded although the policy does not ask for it
        assert predicted_version(server) == 1
        assert choose(server, version=2).status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = requests.get(server.url + "/v1/models/digits", timeout=30).json()["model_version_status"]
            if [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "END")]:
                break
            time.sleep(0.1)
        assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "END")]
    finally:
        assert server.stop() == 0
