"""The control API's shadow traffic, over real HTTP: a real appliance serving digits (v1, v2) sends live requests of
v1 also to v2, and GET, /health and the metrics report the agreement that digits v1 and v2 run in TensorFlow directly
give on the same inputs; the control token guards changes; bad requests get a precise status."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import requests
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import MODELS, ApplianceProcess, wait_for
from .conftest import serving

RNG = np.random.default_rng(23)
ROWS = RNG.uniform(0, 16, (30, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "digits", root / "digits")
    server = ApplianceProcess("--models_dir", str(root))
    yield server
    server.stop()


def shadow_url(server, model: str = "digits") -> str:
    return f"{server.url}/v1/appliance/models/{model}/shadow"


def classes_agreeing(rows: np.ndarray) -> int:
    """How many rows digits v1 and v2 give the same class, run in TensorFlow directly."""
    classes = [
        tf.saved_model.load(str(MODELS / "digits" / str(v))).signatures["serving_default"](pixels=tf.constant(rows))[
            "class"
        ]
        for v in (1, 2)
    ]
    return int((classes[0].numpy() == classes[1].numpy()).sum())


def test_shadow_traffic_reports_the_agreement_of_both_versions(server):
    off = requests.get(shadow_url(server), timeout=10).json()
    assert (off["active"], off["version"], off["compared"]) == (False, None, 0)
    assert requests.get(server.url + "/health", timeout=10).json()["models"][0]["shadow"] is None

    started = requests.put(shadow_url(server), json={"version": 2, "share": 1.0}, timeout=10)
    assert started.status_code == 200, started.text
    assert (started.json()["active"], started.json()["version"], started.json()["share"]) == (True, 2, 1.0)
    for i, row in enumerate(ROWS):  # one at a time, so that none is dropped
        predict = f"{server.url}/v1/models/digits/versions/1:predict"
        assert requests.post(predict, json={"instances": [row.tolist()]}, timeout=10).status_code == 200
        wait_for(lambda i=i: requests.get(shadow_url(server), timeout=10).json()["compared"] == i + 1)
    requests.post(
        f"{server.url}/v1/models/digits/versions/2:predict", json={"instances": [ROWS[0].tolist()]}, timeout=10
    )

    figures = requests.get(shadow_url(server), timeout=10).json()
    same = classes_agreeing(ROWS)
    assert 0 < same < len(ROWS), "the test inputs should make the versions disagree sometimes"
    assert figures["compared"] == len(ROWS) and figures["agreement"]["class"] == pytest.approx(same / len(ROWS))
    assert (figures["fails_on_candidate"], figures["dropped"], figures["unavailable"]) == (0, 0, 0)
    assert figures["candidate_p50_ms"] > 0 and figures["summary"].startswith("v2 agrees on")

    health = requests.get(server.url + "/health", timeout=10).json()
    (digits,) = health["models"]
    assert digits["shadow"] == {
        "candidate": 2,
        "compared": len(ROWS),
        "agreement": pytest.approx(same / len(ROWS)),
        "output": "class",
        "fails_on_candidate": 0,
    }
    metrics = requests.get(server.url + "/monitoring/prometheus/metrics", timeout=10).text
    compared = re.search(
        r'appliance_shadow_requests_total\{candidate="2",model="digits",outcome="compared"\} (\S+)', metrics
    )
    assert compared and float(compared.group(1)) == len(ROWS)
    ratio = re.search(r'appliance_shadow_agreement_ratio\{candidate="2",model="digits",output="class"\} (\S+)', metrics)
    assert ratio and float(ratio.group(1)) == pytest.approx(same / len(ROWS))
    answered_by_v2 = sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "appliance_requests_total"
        and sample.labels.get("model") == "digits"
        and sample.labels.get("version") == "2"
    )
    assert answered_by_v2 == 1  # the shadow calls are not live requests: only the one sent to v2 counts

    same_candidate = requests.put(shadow_url(server), json={"version": "2", "share": 0.5}, timeout=10).json()
    assert same_candidate["compared"] == len(ROWS) and same_candidate["share"] == 0.5  # the figures stay
    stopped = requests.delete(shadow_url(server), timeout=10).json()
    assert stopped["active"] is False and stopped["compared"] == len(ROWS)
    assert requests.get(shadow_url(server), timeout=10).json()["version"] is None
    assert "appliance_shadow_requests_total{" not in requests.get(server.url + "/monitoring/prometheus/metrics").text


@pytest.mark.parametrize(
    ("method", "model", "body", "status", "message"),
    [
        ("put", "digits", {"version": 9}, 404, "no version 9"),
        ("put", "nope", {"version": 1}, 404, "nope"),
        ("put", "digits", {}, 400, '"version"'),
        ("put", "digits", {"version": 1, "extra": 1}, 400, "unknown: extra"),
        ("put", "digits", {"version": "two"}, 400, "'version' must be a positive integer"),
        ("put", "digits", {"version": 2, "share": 0}, 400, "'share' must be a number greater than 0"),
        ("put", "digits", {"version": 2, "share": 1.5}, 400, "'share' must be"),
        ("put", "digits", {"version": 2, "share": "0.1"}, 400, "'share' must be"),
        ("put", "digits", {"version": 2, "share": True}, 400, "'share' must be"),
        ("put", "digits", [1], 400, ""),
        ("get", "nope", None, 404, "nope"),
        ("delete", "nope", None, 404, "nope"),
    ],
)
def test_bad_requests(server, method, model, body, status, message):
    response = getattr(requests, method)(shadow_url(server, model), json=body, timeout=30)
    assert response.status_code == status and message in response.json()["error"], response.text
    assert requests.get(server.url + "/health", timeout=10).json()["status"] == "ready"


def test_control_token_guards_turning_shadow_traffic_on_and_off(manager):
    shadow = "/v1/appliance/models/digits/shadow"
    token = {"Authorization": "Bearer s3cret"}
    with serving(manager, control_token="s3cret") as url:
        for method, body in (("PUT", {"version": 2}), ("DELETE", None)):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                refused = requests.request(method, url + shadow, json=body, timeout=30, headers=headers)
                assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
        assert manager.shadow.figures("digits") is None
        assert requests.get(url + shadow, timeout=30).json()["active"] is False  # reading stays open
        started = requests.put(url + shadow, json={"version": 2}, timeout=30, headers=token)
        assert started.status_code == 200 and started.json()["share"] == 0.1
        assert manager.shadow.figures("digits").version == 2
        assert requests.delete(url + shadow, timeout=30, headers=token).json()["active"] is False
        assert manager.shadow.figures("digits") is None
