"""The control API's comparisons, over real HTTP to a real appliance serving digits (v1, v2) and sqrt (v1 refuses
negative inputs): progress while one runs, its result checked against the signatures run in TensorFlow directly,
cancelling, and every bad request answered with a precise status while the server keeps serving."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import requests
import tensorflow as tf

from appliance.serving.runtime.warmup import WARMUP_FILE, read_prediction_logs
from tests.compare_models import build_sqrt_model, write_request_log

from ..conftest import MODELS, ApplianceProcess, wait_for

RNG = np.random.default_rng(21)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "digits", root / "digits")
    build_sqrt_model(root)
    server = ApplianceProcess("--models_dir", str(root))
    yield server
    server.stop()


def compare_url(server, model: str = "digits") -> str:
    return f"{server.url}/v1/appliance/models/{model}/compare"


def finished(server, model: str = "digits") -> dict:
    """The comparison's document once it has finished; every document seen on the way has a sane progress."""
    seen: list[dict] = []

    def done() -> bool:
        seen.append(requests.get(compare_url(server, model), timeout=10).json())
        return seen[-1]["state"] != "running"

    wait_for(done, timeout=120)
    assert all(0 <= d["done"] <= d["total"] and (d["result"] is None) == (d["state"] == "running") for d in seen)
    return seen[-1]


def signatures(version: int):
    return tf.saved_model.load(str(MODELS / "digits" / str(version))).signatures


def directly(signature: str, inputs: list[dict]) -> tuple[int, int]:
    """How many rows digits v1 and v2 give the same class through ``signature``, run in TensorFlow directly; and
    how many rows there are."""
    same = rows = 0
    for one in inputs:
        classes = [signatures(v)[signature](**{k: tf.constant(x) for k, x in one.items()})["class"] for v in (1, 2)]
        same += int((classes[0].numpy() == classes[1].numpy()).sum())
        rows += len(classes[0])
    return same, rows


def test_before_any_comparison(server):
    assert requests.get(compare_url(server, "sqrt"), timeout=10).json() == {
        "model": "sqrt",
        "version": None,
        "against": None,
        "state": "none",
        "done": 0,
        "total": 0,
        "error": None,
        "summary": None,
        "result": None,
    }
    nothing = requests.delete(compare_url(server, "sqrt"), timeout=10)
    assert nothing.status_code == 404 and "no comparison of model sqrt has run" in nothing.json()["error"]


def test_a_comparison_on_the_versions_warm_up_requests(server):
    logs = [
        log.predict_log.request
        for version in (1, 2)
        for log in read_prediction_logs(MODELS / "digits" / str(version) / WARMUP_FILE)
        if log.WhichOneof("log_type") == "predict_log"
    ]
    response = requests.post(compare_url(server), json={"version": 1, "against": "2"}, timeout=30)
    assert response.status_code == 202, response.text
    assert response.json()["model"] == "digits" and response.json()["total"] == len(logs)

    document = finished(server)
    outputs = {o["label"]: o for o in document["result"]["outputs"]}
    assert document["state"] == "done" and document["done"] == len(logs) and document["error"] is None
    for signature, label in (("serving_default", "class"), ("image", "image/class")):
        inputs = [
            {k: tf.make_ndarray(t) for k, t in r.inputs.items()}
            for r in logs
            if r.model_spec.signature_name == signature
        ]
        assert inputs, f"the warm-up files have requests of signature {signature}"
        assert (outputs[label]["agreeing"], outputs[label]["predictions"]) == directly(signature, inputs)
    assert document["result"]["skipped"] == 2  # the classify records
    assert document["summary"].startswith("v1 agrees with v2") and document["summary"] == document["result"]["summary"]


def test_a_comparison_on_a_given_log_with_a_limit(server, tmp_path):
    batches = [RNG.uniform(0, 16, (2, 64)).astype(np.float32) for _ in range(30)]
    log = write_request_log(tmp_path / "requests.tfrecord", "digits", [{"pixels": b} for b in batches])

    response = requests.post(compare_url(server), json={"version": 2, "against": 1, "log": str(log), "limit": 20})
    assert response.status_code == 202, response.text
    document = finished(server)

    same, total = directly("serving_default", [{"pixels": np.concatenate(batches[-20:])}])
    (v2, v1) = document["result"]["version"], document["result"]["against"]
    assert (v2["version"], v1["version"], document["result"]["skipped"]) == (2, 1, 10)
    outputs = {o["name"]: o for o in document["result"]["outputs"]}
    assert (outputs["class"]["agreeing"], outputs["class"]["predictions"]) == (same, total)
    assert v1["p50_ms"] > 0 and v2["p95_ms"] >= v2["p50_ms"]


def test_fails_on_one_version_and_cancel(server, tmp_path):
    xs = [np.array([(-1.0) ** i * (i + 1)], np.float32) for i in range(2000)]  # every other one negative
    log = write_request_log(tmp_path / "sqrt.tfrecord", "sqrt", [{"x": x} for x in xs])
    body = {"version": 1, "against": 2, "log": str(log), "limit": 2000}
    assert requests.post(compare_url(server, "sqrt"), json=body, timeout=30).status_code == 202
    again = requests.post(compare_url(server, "sqrt"), json=body, timeout=30)
    assert again.status_code == 409 and "is running" in again.json()["error"]
    wait_for(lambda: requests.get(compare_url(server, "sqrt"), timeout=10).json()["done"] >= 4)

    cancelled = requests.delete(compare_url(server, "sqrt"), timeout=30).json()
    assert cancelled["state"] == "cancelled" and cancelled["result"]["cancelled"]
    done = cancelled["done"]
    assert 4 <= done < 2000 and cancelled["result"]["requests"] == done
    assert cancelled["result"]["version"]["fails_alone"] == done // 2  # the odd ones
    assert "x must be non-negative" in cancelled["result"]["version"]["sample_error"]
    assert f"{cancelled['result']['version']['fails_alone']} fail on v1" in cancelled["summary"]


@pytest.mark.parametrize(
    ("method", "model", "body", "status", "message"),
    [
        ("post", "digits", {"version": 1, "against": 1}, 400, "not version 1 with itself"),
        (
            "post",
            "digits",
            {"version": 1, "against": 9},
            404,
            "Specific(digits, 9). Versions of model digits: 2, 1. Both",
        ),
        ("post", "nope", {"version": 1, "against": 2}, 404, "nope"),
        ("post", "digits", {"version": 1}, 400, '"against"'),
        ("post", "digits", {"version": 1, "against": 2, "extra": 1}, 400, "unknown: extra"),
        ("post", "digits", {"version": 1, "against": "two"}, 400, "'against' must be a positive integer"),
        ("post", "digits", {"version": 1, "against": 2, "limit": 0}, 400, "'limit' must be a positive number"),
        ("post", "digits", {"version": 1, "against": 2, "log": "relative.tfrecord"}, 400, "absolute path"),
        ("post", "digits", {"version": 1, "against": 2, "log": None}, 400, "absolute path"),
        ("post", "digits", {"version": 1, "against": 2, "log": "/no/such/file"}, 404, "no request log file"),
        ("post", "digits", {"version": 1, "against": 2, "log": "/etc/hostname"}, 400, "no recorded predict requests"),
        ("get", "iris", None, 404, "iris"),
        ("delete", "iris", None, 404, "iris"),
    ],
)
def test_bad_requests(server, method, model, body, status, message):
    response = getattr(requests, method)(compare_url(server, model), json=body, timeout=30)
    assert response.status_code == status and message in response.json()["error"], response.text
    assert requests.get(server.url + "/health", timeout=10).json()["status"] == "ready"
