"""A remote TensorFlow Serving in front of local models: proxy when healthy, fall back when not.

The "remote" is a second real appliance process (it speaks TF Serving's REST
API); a fault-injecting TCP proxy between the two makes it slow, hang, reset,
refuse, lie or drop answers half-way. The remote serves digits v2 only (and
iris v1, v2), so version-pinned requests for digits v1 must go local.
"""

from __future__ import annotations

import signal
import time

import pytest
import requests

from .conftest import ApplianceProcess, PredictLoad
from .faults import FaultyProxy

PROBE_SECONDS = 0.2
TIMEOUT_SECONDS = 2.0
ROW = {"instances": [[float(i % 17) for i in range(64)]]}


@pytest.fixture(scope="module")
def proxy(remote):
    port = int(remote.url.rsplit(":", 1)[1])
    with FaultyProxy("127.0.0.1", port) as faulty:
        yield faulty


@pytest.fixture(scope="module")
def front(proxy):
    server = ApplianceProcess(
        "--remote_url",
        proxy.url,
        "--remote_probe_seconds",
        str(PROBE_SECONDS),
        "--remote_timeout_seconds",
        str(TIMEOUT_SECONDS),
    )
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def healthy_remote(request, proxy):
    """Every test starts with a transparent proxy and a remote the front has seen healthy."""
    proxy.mode = "pass"
    if "front" in request.fixturenames:
        front = request.getfixturevalue("front")
        assert wait_for(lambda: remote_state(front) == "up"), "the remote never came up"
    yield
    proxy.mode = "pass"


def break_remote(proxy: FaultyProxy, mode: str) -> None:
    """Switch the proxy to a failure mode for every connection, the front's pooled keep-alive ones included."""
    proxy.mode = mode
    proxy.drop_connections()


def wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(PROBE_SECONDS / 2)
    return bool(condition())


def remote_state(front) -> str:
    return requests.get(front.url + "/health", timeout=30).json()["remote"]["state"]


def predict(front, path: str = "/v1/models/digits:predict", body=None) -> requests.Response:
    return requests.post(front.url + path, json=body or ROW, timeout=30)


def test_healthy_remote_answers_and_matches_local(front, remote, proxy):
    seen = proxy.requests
    response = predict(front)
    assert response.status_code == 200
    assert response.headers["X-Appliance-Backend"] == "remote"
    assert proxy.requests > seen
    direct = requests.post(remote.url + "/v1/models/digits/versions/2:predict", json=ROW, timeout=30)
    assert response.json() == direct.json()
    break_remote(proxy, "refuse")
    local = predict(front, "/v1/models/digits/versions/2:predict")
    assert local.headers["X-Appliance-Backend"] == "local"
    assert local.json() == direct.json()


def test_version_the_remote_does_not_serve_goes_local(front, proxy):
    response = predict(front, "/v1/models/digits/versions/1:predict")
    assert response.status_code == 200 and response.headers["X-Appliance-Backend"] == "local"
    assert (
        predict(front, "/v1/models/iris/versions/1:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}).headers[
            "X-Appliance-Backend"
        ]
        == "remote"
    )


@pytest.mark.parametrize("mode", ["refuse", "reset", "http500", "garbage", "garbage_json", "truncate"])
def test_a_failing_remote_falls_back_to_local_answers(front, proxy, mode):
    break_remote(proxy, mode)
    for _ in range(5):
        response = predict(front)
        assert response.status_code == 200, response.text
        assert response.headers["X-Appliance-Backend"] == "local"
        assert "predictions" in response.json()
    assert wait_for(lambda: remote_state(front) == "down")
    proxy.mode = "pass"
    assert wait_for(lambda: remote_state(front) == "up"), "back once a probe succeeds"
    assert wait_for(lambda: predict(front).headers["X-Appliance-Backend"] == "remote")


def test_a_hanging_remote_times_out_then_falls_back(front, proxy):
    break_remote(proxy, "hang")
    started = time.monotonic()
    response = predict(front)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.headers["X-Appliance-Backend"] == "local"
    assert elapsed < TIMEOUT_SECONDS + 10, "no request waits much past the remote timeout"
    assert wait_for(lambda: remote_state(front) == "down", timeout=TIMEOUT_SECONDS * 8)
    started = time.monotonic()
    assert predict(front).headers["X-Appliance-Backend"] == "local"
    assert time.monotonic() - started < TIMEOUT_SECONDS, "with the circuit open the remote is not waited for"


def test_health_and_models_command_show_the_remote(front, proxy):
    health = requests.get(front.url + "/health", timeout=30).json()
    assert health["remote"]["url"] == proxy.url and health["remote"]["state"] == "up"
    assert health["remote"]["versions"] == {"digits": [2], "iris": [1, 2]}


def test_remote_killed_under_load_no_client_request_fails(tmp_path):
    victim = ApplianceProcess()
    front = ApplianceProcess(
        "--remote_url",
        victim.url,
        "--remote_probe_seconds",
        str(PROBE_SECONDS),
        "--remote_timeout_seconds",
        str(TIMEOUT_SECONDS),
    )
    try:
        assert wait_for(lambda: remote_state(front) == "up")
        with PredictLoad(front.url, clients=4) as load:
            time.sleep(1.0)
            victim.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            assert wait_for(lambda: remote_state(front) == "down")
            fallback_seconds = time.monotonic() - killed_at
            time.sleep(1.0)
        assert load.failures == []
        assert fallback_seconds < TIMEOUT_SECONDS + 5 * PROBE_SECONDS + 5
        revived = ApplianceProcess("--rest_api_port", victim.url.rsplit(":", 1)[1])
        try:
            assert wait_for(lambda: remote_state(front) == "up")
            assert wait_for(lambda: predict(front).headers["X-Appliance-Backend"] == "remote")
        finally:
            revived.stop()
    finally:
        front.stop()
        victim.stop()


def test_routing_modes_from_the_settings_file(remote, tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'[remote]\nurl = "{remote.url}"\nprobe_seconds = {PROBE_SECONDS}\n'
        '[remote.routing]\n"*" = "prefer_local"\niris = "remote_only"\n'
    )
    front = ApplianceProcess("--settings_file", str(settings))
    try:
        assert wait_for(lambda: remote_state(front) == "up")
        assert predict(front).headers["X-Appliance-Backend"] == "local"
        iris = predict(front, "/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert iris.headers["X-Appliance-Backend"] == "remote"
    finally:
        front.stop()


def test_bad_remote_settings_are_a_clear_error_at_start(tmp_path):
    from .test_cli import run_cli

    settings = tmp_path / "settings.toml"
    settings.write_text('[remote]\nurl = "ftp://nope"\n')
    result = run_cli("serve", "--rest_api_port", "0", "--port", "0", "--settings_file", str(settings))
    assert result.returncode == 2 and "http://, https://, grpc:// or grpcs://" in result.stderr
