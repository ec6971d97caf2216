"""``GET /monitoring/prometheus/metrics`` on a real server: real models, real HTTP, the scrape parsed as
Prometheus does.

The server serves a copy of the bundled models (plus a broken one) from
tmp, so versions can be switched and removed; every count is checked as the
difference between two scrapes.
"""

from __future__ import annotations

import io
import shutil
import sys
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from appliance.api.app import create_app
from appliance.api.metrics import PATH, Metrics
from appliance.api.security import AccessPolicy
from appliance.config import RemoteSettings
from appliance.server import Server
from appliance.serving.manager import ModelManager
from appliance.serving.remote import RemoteTFServing
from appliance.serving.repository import Repository
from appliance.serving.routing import Router
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ..conftest import MODELS

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
PIXELS = [[0.0] * 64]


class Served:
    """A real server over a manager of its own; ``metrics`` is the object its app records into."""

    def __init__(self, root):
        self.root = root
        self.metrics = Metrics()
        self.manager = ModelManager(
            Repository([], [root]), LocalTFRuntime(device="cpu"), poll_seconds=0, observer=self.metrics.observer
        )
        self.manager.start()
        assert self.manager.wait_until_ready(120)
        self.server = Server(create_app(self.manager, max_request_bytes=1 << 20, metrics=self.metrics), "127.0.0.1", 0)
        self.server.start()
        self.url = self.server.url


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for model in ("digits", "iris"):
        shutil.copytree(MODELS / model, root / model)
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    server = Served(root)
    yield server
    server.server.stop()
    server.manager.stop()


def parse(text: bytes) -> dict[tuple, float]:
    """Every sample of a scrape, keyed by (sample name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def scrape(url: str) -> dict[tuple, float]:
    response = requests.get(url + PATH, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == PROMETHEUS_TEXT
    return parse(response.content)


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def predict(url: str, path: str, body) -> int:
    return requests.post(url + path, json=body, timeout=30).status_code


def test_requests_are_counted_and_timed_by_model_version_api_code_and_backend(served):
    url = served.url
    before = scrape(url)
    for _ in range(5):
        assert predict(url, "/v1/models/digits/versions/2:predict", {"instances": PIXELS}) == 200
    for _ in range(2):
        assert predict(url, "/predict", {"model": "digits", "version": 1, "input": PIXELS}) == 200
    for _ in range(3):
        assert predict(url, "/v1/models/digits/versions/2:predict", {"instances": "not a tensor"}) == 400
    for _ in range(2):
        assert predict(url, "/v1/models/no_such_model:predict", {"instances": PIXELS}) == 404
    assert requests.get(url + "/v1/models/iris", timeout=30).status_code == 200
    after = scrape(url)

    expected = {  # (model, version, api, code, backend) -> requests
        ("digits", "2", "predict", "200", "local"): 5,
        ("digits", "1", "simple_predict", "200", "local"): 2,
        ("digits", "2", "predict", "400", "local"): 3,
        ("", "", "predict", "404", ""): 2,  # no version took them: no model, version or backend
        ("iris", "", "status", "200", "local"): 1,
    }
    for (model, version, api, code, backend), count in expected.items():
        labels = {"model": model, "version": version, "api": api, "code": code, "backend": backend}
        assert grew(before, after, "appliance_requests_total", **labels) == count, labels
        assert grew(before, after, "appliance_request_duration_seconds_count", **labels) == count, labels
        assert grew(before, after, "appliance_request_duration_seconds_bucket", **labels, le="+Inf") == count
        assert grew(before, after, "appliance_request_duration_seconds_sum", **labels) > 0
    counted = sum(v - before.get(key, 0.0) for key, v in after.items() if key[0] == "appliance_requests_total")
    assert counted == sum(expected.values()) + 1  # and the first scrape

    # TF Serving's names: every /v1 request by status, the latency of successful ones in microseconds
    assert grew(before, after, ":tensorflow:serving:request_count", model_name="digits", status="OK") == 5
    assert grew(before, after, ":tensorflow:serving:request_count", model_name="digits", status="INVALID_ARGUMENT") == 3
    assert grew(before, after, ":tensorflow:serving:request_count", model_name="", status="NOT_FOUND") == 2
    tfs = {"model_name": "digits", "API": "predict", "entrypoint": "REST"}
    assert grew(before, after, ":tensorflow:serving:request_latency_count", **tfs) == 5
    seconds = grew(
        before,
        after,
        "appliance_request_duration_seconds_sum",
        model="digits",
        version="2",
        api="predict",
        code="200",
        backend="local",
    )
    assert grew(before, after, ":tensorflow:serving:request_latency_sum", **tfs) == pytest.approx(seconds * 1e6)


def test_load_time_of_every_bundled_version_and_the_failed_load(served):
    samples = scrape(served.url)
    for model, version in [("digits", "1"), ("digits", "2"), ("iris", "1"), ("iris", "2")]:
        assert value(samples, "appliance_model_load_seconds", model=model, version=version) > 0, (model, version)
        assert value(samples, "appliance_model_load_failures_total", model=model, version=version) == 0
    assert value(samples, "appliance_model_load_failures_total", model="broken", version="1") == 1
    assert ("appliance_model_load_seconds", (("model", "broken"), ("version", "1"))) not in samples


def state_of(samples: dict, model: str, version: str) -> list[str]:
    """The states the version-state gauge shows as 1 for one version (exactly one when all is well)."""
    found = [dict(labels) for (name, labels), v in samples.items() if name == "appliance_model_version_state" and v]
    return [labels["state"] for labels in found if (labels["model"], labels["version"]) == (model, version)]


def test_chosen_version_and_version_states_follow_a_switch_and_an_unload(served):
    samples = scrape(served.url)
    assert value(samples, "appliance_model_chosen_version", model="digits") == 2
    assert state_of(samples, "digits", "1") == state_of(samples, "digits", "2") == ["AVAILABLE"]
    assert state_of(samples, "broken", "1") == ["END"]

    chosen = served.url + "/v1/appliance/models/digits/chosen"
    assert requests.put(chosen, json={"version": 1}, timeout=60).status_code == 200
    try:
        assert value(scrape(served.url), "appliance_model_chosen_version", model="digits") == 1
    finally:
        assert requests.put(chosen, json={"version": 2}, timeout=60).status_code == 200
    samples = scrape(served.url)
    assert value(samples, "appliance_model_chosen_version", model="digits") == 2
    assert (
        value(
            samples, "appliance_requests_total", model="digits", version="1", api="control", code="200", backend="local"
        )
        == 1
    )

    shutil.rmtree(served.root / "iris" / "1")
    served.manager.poll()
    samples = scrape(served.url)
    assert state_of(samples, "iris", "1") == ["END"]
    assert state_of(samples, "iris", "2") == ["AVAILABLE"]


def test_process_metrics(served):
    if not sys.platform.startswith("linux"):
        pytest.skip("prometheus_client reads the process_* metrics from /proc")
    samples = scrape(served.url)
    assert value(samples, "process_resident_memory_bytes") > 10 << 20  # TensorFlow alone takes more
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "appliance_process_threads") > 1


def test_batch_sizes_reported_by_the_serving_layer(served):
    before = scrape(served.url)
    served.manager.observer.batch_run("digits", 2, "serving_default", 3, 4)
    served.manager.observer.batch_run("digits", 2, "serving_default", 8, 16)
    after = scrape(served.url)
    labels = {"model": "digits", "version": "2", "signature": "serving_default"}
    assert grew(before, after, "appliance_batch_size_rows_count", **labels) == 2
    assert grew(before, after, "appliance_batch_size_rows_sum", **labels) == 20
    assert grew(before, after, "appliance_batch_size_rows_bucket", **labels, le="4.0") == 1
    assert grew(before, after, "appliance_batch_size_requests_sum", **labels) == 11
    assert grew(before, after, "appliance_batch_size_requests_bucket", **labels, le="8.0") == 2
    assert grew(before, after, ":tensorflow:serving:batching_session:processed_batch_size_count") == 2
    assert grew(before, after, ":tensorflow:serving:batching_session:processed_batch_size_bucket", le="16") == 2


def test_requests_forwarded_to_a_remote_count_as_remote_and_its_health_is_a_gauge(served):
    remote = RemoteTFServing(RemoteSettings(url=served.url), models=["digits"])
    proxy = Server(
        create_app(served.manager, max_request_bytes=1 << 20, router=Router(served.manager, remote), metrics=Metrics()),
        "127.0.0.1",
        0,
    )
    proxy.start()
    try:
        assert value(scrape(proxy.url), "appliance_remote_up", url=served.url) == 0  # not probed yet
        assert remote.probe()
        assert predict(proxy.url, "/v1/models/digits/versions/1:predict", {"instances": PIXELS}) == 200
        assert predict(proxy.url, "/v1/models/digits:predict", {"instances": PIXELS}) == 200
        assert predict(proxy.url, "/v1/models/elsewhere:predict", {"instances": PIXELS}) == 404
        samples = scrape(proxy.url)
    finally:
        proxy.stop()
        remote.stop()
    assert value(samples, "appliance_remote_up", url=served.url) == 1
    for version in ("1", ""):  # the version asked for, if any
        assert (
            value(
                samples,
                "appliance_requests_total",
                model="digits",
                version=version,
                api="predict",
                code="200",
                backend="remote",
            )
            == 1
        )
    assert value(samples, "appliance_requests_total", model="", version="", api="predict", code="404", backend="") == 1

    unreachable = RemoteTFServing(RemoteSettings(url="http://127.0.0.1:9", failures_to_open=1), models=["digits"])
    assert not unreachable.probe()
    app = create_app(
        served.manager, max_request_bytes=1 << 20, router=Router(served.manager, unreachable), metrics=Metrics()
    )
    status, body = call(app, PATH, host="127.0.0.1")
    assert status.startswith("200")
    assert value(parse(body), "appliance_remote_up", url="http://127.0.0.1:9") == 0


def call(app, path: str, **headers: str) -> tuple[str, bytes]:
    environ = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "GET",
        "wsgi.input": io.BytesIO(),
        **{"HTTP_" + k.upper(): v for k, v in headers.items()},
    }
    setup_testing_defaults(environ)
    answered = {}
    body = b"".join(app(environ, lambda status, headers, exc_info=None: answered.update(status=status)))
    return answered["status"], body


def test_the_endpoint_is_behind_the_host_allow_list_and_the_token_and_counts_refusals():
    metrics = Metrics()
    manager = ModelManager(Repository([], []), LocalTFRuntime(device="cpu"), poll_seconds=0)
    app = create_app(manager, max_request_bytes=1 << 20, access=AccessPolicy(token="secret"), metrics=metrics)
    assert call(app, PATH, host="127.0.0.1")[0].startswith("401")
    assert call(app, PATH, host="evil.example", authorization="Bearer secret")[0].startswith("403")
    status, body = call(app, PATH, host="127.0.0.1", authorization="Bearer secret")
    assert status.startswith("200")
    samples = parse(body)
    for code in ("401", "403"):
        assert value(samples, "appliance_requests_total", model="", version="", api="", code=code, backend="") == 1
