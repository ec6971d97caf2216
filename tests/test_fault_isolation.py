"""Fault isolation: a model that fails, at load time or at run time, never harms the other models or the server.

A real ``appliance serve`` with two worker threads serves the deliberately
broken models of tests/faulty_models.py next to the bundled ones, and every
check goes over real HTTP: run-time TensorFlow errors (a failed assertion, an
allocation of 400 TB) become clear ``{"error": ...}`` answers with TF Serving's
status codes, versions that cannot load are END with their error while the
others serve, and failing requests never use up the worker threads.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import MODELS, ApplianceProcess
from tests.faulty_models import NEGATIVE_INPUT_MESSAGE, SCALE, build_faulty_models

WORKER_THREADS = 2
TIMEOUT = 60  # seconds; a request that hangs fails its test instead of stalling the run
HUGE_SIZE = 10**7  # a [10**7, 10**7] float32 tensor: 400 TB, beyond any machine's memory and address space
DIGITS_REQUEST = {"instances": [[0.0] * 64]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    faulty = build_faulty_models(tmp_path_factory.mktemp("faulty-models"))
    process = ApplianceProcess(
        "--models_dir", str(faulty), "--models_dir", str(MODELS), "--threads", str(WORKER_THREADS)
    )
    yield process
    process.stop()


def post(server, path: str, body: dict) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=TIMEOUT)


def error_of(response: requests.Response) -> str:
    """The message of a TF Serving-style error answer, checking its form."""
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document.keys() == {"error"} and isinstance(document["error"], str) and document["error"].strip()
    return document["error"]


def versions(server, model: str) -> list[dict]:
    response = requests.get(f"{server.url}/v1/models/{model}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()["model_version_status"]


def assert_serves_checked(server) -> None:
    response = post(server, "/v1/models/checked:predict", {"instances": [1.0, 4.0]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [SCALE * math.sqrt(1.0), SCALE * math.sqrt(4.0)]}


def assert_serves_digits(server) -> None:
    response = post(server, "/v1/models/digits:predict", DIGITS_REQUEST)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert len(prediction["probabilities"]) == 10 and math.isclose(sum(prediction["probabilities"]), 1, rel_tol=1e-5)


def assert_serves_allocator(server) -> None:
    response = post(server, "/v1/models/allocator:predict", {"inputs": 3})
    assert response.status_code == 200, response.text
    assert response.json() == {"outputs": 9.0}


# ---------------------------------------------------------------------------
# Versions that cannot load
# ---------------------------------------------------------------------------


def test_versions_that_cannot_load_are_end_with_their_error(server):
    flaky = {status["version"]: status for status in versions(server, "flaky")}
    assert [status["state"] for status in versions(server, "flaky")] == ["END", "END", "END", "AVAILABLE"]
    assert flaky["1"]["status"] == {"error_code": "OK", "error_message": ""}
    for broken_version in ("2", "3", "4"):  # garbage saved_model.pb; variables/ missing; variables cut short
        status = flaky[broken_version]["status"]
        assert status["error_code"] not in ("OK", "UNKNOWN")
        assert f"flaky/{broken_version}" in status["error_message"], status
    assert "variables" in flaky["3"]["status"]["error_message"]
    (broken,) = versions(server, "broken")
    assert broken["state"] == "END" and "broken/1" in broken["status"]["error_message"]


def test_a_model_that_cannot_load_blocks_no_other_model(server):
    for model in ("allocator", "checked", "digits", "iris"):
        assert {status["state"] for status in versions(server, model)} == {"AVAILABLE"}, model
    assert_serves_checked(server)
    assert_serves_digits(server)


def test_requests_for_versions_that_cannot_load_are_404(server):
    for path in (
        "/v1/models/flaky/versions/2:predict",
        "/v1/models/flaky/versions/3:predict",
        "/v1/models/flaky/versions/4:predict",
        "/v1/models/broken:predict",
    ):
        response = post(server, path, {"instances": [4.0]})
        assert response.status_code == 404, (path, response.text)
        assert "Servable not found" in error_of(response)
    response = requests.get(server.url + "/v1/models/flaky/versions/3/metadata", timeout=TIMEOUT)
    assert response.status_code == 404 and error_of(response)
    response = post(server, "/predict", {"model": "broken", "input": [4.0]})
    assert response.status_code == 404 and error_of(response)


def test_the_version_that_loads_answers_for_its_model(server):
    response = post(server, "/v1/models/flaky:predict", {"instances": [4.0]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [SCALE * math.sqrt(4.0)]}
    response = post(server, "/predict", {"model": "flaky", "input": [9.0]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [SCALE * math.sqrt(9.0)], "model": "flaky", "version": 1}


# ---------------------------------------------------------------------------
# Errors at run time
# ---------------------------------------------------------------------------


def test_a_failed_assertion_is_a_400_naming_it(server):
    response = post(server, "/v1/models/checked:predict", {"instances": [1.0, -4.0]})
    assert response.status_code == 400, response.text
    assert NEGATIVE_INPUT_MESSAGE in error_of(response)
    assert_serves_checked(server)


def test_a_scalar_input_stays_a_scalar(server):
    """The allocator's input has shape []: fed as shape [1], tf.fill would refuse it."""
    assert_serves_allocator(server)


def test_running_out_of_memory_is_a_429_and_the_server_keeps_serving(server):
    answers = {}
    started = time.monotonic()
    oom = threading.Thread(
        target=lambda: answers.update(oom=post(server, "/v1/models/allocator:predict", {"inputs": HUGE_SIZE}))
    )
    oom.start()
    try:
        while oom.is_alive() and time.monotonic() - started < 2:  # oneDNN's allocator waits 10 s for memory
            assert_serves_digits(server)  # meanwhile, on the other worker thread
            time.sleep(0.05)
    finally:
        oom.join(TIMEOUT)
    response = answers["oom"]
    assert response.status_code == 429, response.text
    assert f"OOM when allocating tensor with shape[{HUGE_SIZE},{HUGE_SIZE}]" in error_of(response)
    assert server.proc.poll() is None
    assert_serves_allocator(server)
    assert_serves_digits(server)


def test_failing_requests_never_use_up_the_worker_threads(server):
    failing = [
        ("/v1/models/checked:predict", {"instances": [-1.0]}),  # InvalidArgument: assertion failed
        ("/v1/models/allocator:predict", {"inputs": -1}),  # InvalidArgument: negative dimension
        ("/v1/models/allocator:predict", {"inputs": 3 * 10**9}),  # ResourceExhausted: beyond size_t bytes
        ("/v1/models/allocator:predict", {"inputs": 10**10}),  # InvalidArgument: more than 2**63 - 1 elements
    ] * (2 * WORKER_THREADS)
    with ThreadPoolExecutor(len(failing)) as pool:
        answers = list(pool.map(lambda request: post(server, *request), failing))
    for (path, body), response in zip(failing, answers):
        assert response.status_code in (400, 429), (path, body, response.text)
        assert error_of(response)
    valid = [
        ("/v1/models/checked:predict", {"instances": [4.0]}, {"predictions": [SCALE * 2.0]}),
        ("/v1/models/allocator:predict", {"inputs": 2}, {"outputs": 4.0}),
    ] * 4
    with ThreadPoolExecutor(len(valid)) as pool:
        answers = list(pool.map(lambda request: post(server, *request[:2]), valid))
    assert [(response.status_code, response.json()) for response in answers] == [(200, want) for *_, want in valid]


def test_no_request_ended_in_an_unexpected_error(server):
    assert server.proc.poll() is None
    assert "Traceback" not in server.stderr
    assert "unexpected error" not in server.stderr
