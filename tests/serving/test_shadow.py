"""Shadow traffic over a real manager (real TensorFlow: bundled digits v1 and v2, sqrt whose v1 refuses negative
inputs, slow whose v2 sleeps): the figures are checked against both digits versions run in TensorFlow directly on
the same inputs, and against a comparison (compare.py) of the same requests."""

from __future__ import annotations

import math
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf

from appliance.errors import InvalidArgument
from appliance.serving.compare import Comparison, PredictRequest
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime
from appliance.serving.shadow import QUEUE_SIZE, ShadowTraffic
from tests.compare_models import NEGATIVE_INPUT_MESSAGE, build_slow_model, build_sqrt_model

from ..conftest import MODELS

RNG = np.random.default_rng(22)
# Random 8x8 "images" of 1 to 3 rows: the two digits versions disagree on some of them.
DIGITS_REQUESTS = [{"pixels": RNG.uniform(0, 16, (1 + i % 3, 64)).astype(np.float32)} for i in range(40)]


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "digits", root / "digits")
    build_sqrt_model(root)
    build_slow_model(root)
    manager = ModelManager(Repository([], roots=[root]), LocalTFRuntime(device="cpu"), 0)
    manager.start()
    assert manager.wait_until_ready(120)
    for name in ("digits", "sqrt", "slow"):
        assert {v.version for v in manager.summary(name).versions} == {1, 2}
    yield manager
    manager.stop()


@pytest.fixture
def shadow(manager):
    """The manager's own shadow traffic, every model off again after the test."""
    yield manager.shadow
    for model in manager.shadow.active():
        manager.shadow.clear(model)


def live_predict(manager, model: str, version: int, inputs: dict) -> dict:
    """What every API does for a Predict: run it on the version asked for, then hand it over while still held."""
    with manager.acquire(model, version) as handle:
        outputs = handle.servable.predict("serving_default", inputs)
        handle.record_predict("serving_default", inputs, outputs)
    return outputs


def test_figures_equal_both_versions_run_directly_and_a_comparison(manager, shadow):
    figures = shadow.set("digits", 2, share=1.0)
    kept = []
    for inputs in DIGITS_REQUESTS:
        outputs = live_predict(manager, "digits", 1, inputs)
        kept.append({alias: array.copy() for alias, array in outputs.items()})
        assert shadow.wait_idle()  # one at a time: none dropped
        for alias, array in outputs.items():
            np.testing.assert_array_equal(array, kept[-1][alias])  # the live answer is left as it was

    signatures = [tf.saved_model.load(str(MODELS / "digits" / str(v))).signatures["serving_default"] for v in (1, 2)]
    pixels = tf.constant(np.concatenate([r["pixels"] for r in DIGITS_REQUESTS]))
    one, two = (signature(pixels=pixels) for signature in signatures)
    same_class = int((one["class"].numpy() == two["class"].numpy()).sum())
    difference = np.abs(one["probabilities"].numpy() - two["probabilities"].numpy())
    assert 0 < same_class < len(pixels), "the test inputs should make the versions disagree sometimes"

    document = figures.to_json()
    assert (document["compared"], document["dropped"], document["unavailable"]) == (len(DIGITS_REQUESTS), 0, 0)
    assert document["fails_on_candidate"] == 0 and document["version"] == 2 and document["share"] == 1.0
    assert document["agreement"]["class"] == pytest.approx(same_class / len(pixels))
    outputs = {o["label"]: o for o in document["outputs"]}
    assert outputs["class"]["predictions"] == len(pixels) and outputs["class"]["agreeing"] == same_class
    assert outputs["probabilities"]["mean_abs_diff"] == pytest.approx(difference.mean(), rel=1e-4)
    assert outputs["probabilities"]["max_abs_diff"] == pytest.approx(difference.max(), rel=1e-4)
    assert document["candidate_p50_ms"] > 0 and document["since"].endswith("Z")
    assert document["summary"].startswith(f"v2 agrees on {100 * same_class / len(pixels):.1f}% of 40 requests")

    requests = [PredictRequest("serving_default", inputs) for inputs in DIGITS_REQUESTS]
    compared = Comparison(manager, "digits", 1, 2, requests, cpu_share=1.0).run()
    assert [(o.label, o.predictions, o.agreeing) for o in compared.outputs] == [
        (o["label"], o["predictions"], o["agreeing"]) for o in document["outputs"]
    ]
    health = figures.health_json()
    assert health == {
        "candidate": 2,
        "compared": 40,
        "agreement": same_class / len(pixels),
        "output": "class",
        "fails_on_candidate": 0,
    }


def test_requests_to_the_candidate_itself_are_not_shadowed(manager, shadow):
    figures = shadow.set("digits", 2, share=1.0)
    live_predict(manager, "digits", 2, DIGITS_REQUESTS[0])
    live_predict(manager, "sqrt", 1, {"x": np.ones(2, np.float32)})  # another model: not shadowed
    assert shadow.wait_idle()
    assert (figures.compared, figures.dropped, figures.unavailable) == (0, 0, 0)


def test_a_share_samples_about_that_share_of_requests(manager):
    """Sampled requests of a candidate that is not served are counted as unavailable: a cheap way to count them."""
    shadow = ShadowTraffic(manager, queue_size=10_000)
    try:
        figures = shadow.set("digits", 9, share=0.1)
        calls = 4000
        outputs = {"class": np.zeros(1, np.int64)}
        for _ in range(calls):
            shadow.offer("digits", 1, "serving_default", DIGITS_REQUESTS[0], outputs)
        assert shadow.wait_idle()
        sampled = figures.unavailable + figures.dropped + figures.compared
        sd = math.sqrt(calls * 0.1 * 0.9)
        assert abs(sampled - 0.1 * calls) < 4 * sd, sampled
        assert figures.compared == figures.dropped == 0 and figures.unavailable == sampled
    finally:
        shadow.stop()


def test_a_full_queue_drops_and_never_blocks_the_live_calls(manager, shadow):
    """slow v2 takes half a second per call: live calls on v1 meanwhile all return; at most the queue's worth plus the
    one running are shadowed, the rest dropped."""
    figures = shadow.set("slow", 2, share=1.0)
    calls = QUEUE_SIZE + 12
    answered = [live_predict(manager, "slow", 1, {"x": np.full(2, i, np.float32)}) for i in range(calls)]
    assert len(answered) == calls
    assert figures.dropped >= calls - QUEUE_SIZE - 1
    assert shadow.wait_idle(timeout=120)
    assert figures.compared + figures.dropped == calls and figures.compared >= 1
    assert figures.to_json()["agreement"] == {}  # y is a float vector: differences only
    assert figures.to_json()["outputs"][0]["max_abs_diff"] == 0.0


def test_failures_on_the_candidate_and_an_unavailable_candidate_are_counted(manager, shadow):
    xs = [np.array(v, np.float32) for v in ([1, 4], [-1, 9], [16], [-4])]
    figures = shadow.set("sqrt", 1, share=1.0)  # v1 refuses negative inputs, v2 answers them
    for x in xs:
        live_predict(manager, "sqrt", 2, {"x": x})
        assert shadow.wait_idle()
    negative = sum(bool((x < 0).any()) for x in xs)
    assert (figures.compared, figures.fails_on_candidate) == (len(xs) - negative, negative)
    assert NEGATIVE_INPUT_MESSAGE in figures.sample_error
    assert figures.summary().endswith(f"; {negative} fail on v1")

    gone = shadow.set("digits", 7, share=1.0)  # no such version: counted, never loaded
    live_predict(manager, "digits", 1, DIGITS_REQUESTS[0])
    assert shadow.wait_idle()
    assert (gone.unavailable, gone.compared) == (1, 0)
    assert 7 not in {v.version for v in manager.summary("digits").versions}


def test_changing_the_share_keeps_the_figures_and_another_candidate_starts_afresh(manager, shadow):
    first = shadow.set("digits", 2, share=1.0)
    live_predict(manager, "digits", 1, DIGITS_REQUESTS[0])
    assert shadow.wait_idle() and first.compared == 1
    assert shadow.set("digits", 2, share=0.5) is first and first.config.share == 0.5
    assert shadow.set("digits", 1, share=0.5) is not first
    assert shadow.clear("digits").version == 1 and shadow.figures("digits") is None
    assert shadow.clear("digits") is None


@pytest.mark.parametrize(("version", "share"), [(0, 0.1), (2, 0), (2, 1.5), (2, True), ("2", 0.1)])
def test_bad_settings_are_refused(manager, version, share):
    with pytest.raises(InvalidArgument):
        ShadowTraffic(manager).set("digits", version, share)


def test_the_worker_starts_on_first_use_and_stops(manager):
    shadow = ShadowTraffic(manager, rng=random.Random(1))
    assert shadow._thread is None  # nothing runs while no model is shadowed
    shadow.set("digits", 2)
    thread = shadow._thread
    assert thread is not None and thread.is_alive()
    shadow.stop()
    assert not thread.is_alive() and shadow.active() == {}
