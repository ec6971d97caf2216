"""Replay and compare over a real manager (real TensorFlow, bundled digits v1 and v2): the figures are checked
against both versions' signatures run in TensorFlow directly on the same inputs."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from appliance.errors import InvalidArgument, NotFound
from appliance.serving.compare import Comparison, Comparisons, PredictRequest, read_predict_requests
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime
from appliance.serving.runtime.warmup import WARMUP_FILE, read_prediction_logs
from tests.compare_models import NEGATIVE_INPUT_MESSAGE, build_sqrt_model, write_request_log

from ..conftest import MODELS, wait_for

RNG = np.random.default_rng(20)
# Random 8x8 "images": the two versions disagree on some of them. Requests of 1 to 3 rows.
DIGITS_REQUESTS = [{"pixels": RNG.uniform(0, 16, (1 + i % 3, 64)).astype(np.float32)} for i in range(60)]


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "digits", root / "digits")
    build_sqrt_model(root)
    manager = ModelManager(Repository([], roots=[root]), LocalTFRuntime(device="cpu"), 0)
    manager.start()
    assert manager.wait_until_ready(120)
    for name in ("digits", "sqrt"):
        manager.choose(name, 1)  # loads version 1 too, if the policy serves the latest only
    yield manager
    manager.stop()


@pytest.fixture(scope="module")
def digits_log(tmp_path_factory):
    return write_request_log(tmp_path_factory.mktemp("log") / "requests.tfrecord", "digits", DIGITS_REQUESTS)


def _signature(version: int):
    return tf.saved_model.load(str(MODELS / "digits" / str(version))).signatures["serving_default"]


def test_agreement_equals_the_signatures_run_directly(manager, digits_log):
    requests, skipped = read_predict_requests([digits_log], "digits")
    result = Comparison(manager, "digits", 1, 2, requests, cpu_share=1.0).run()

    v1, v2 = _signature(1), _signature(2)
    pixels = np.concatenate([r["pixels"] for r in DIGITS_REQUESTS])
    one, two = v1(pixels=tf.constant(pixels)), v2(pixels=tf.constant(pixels))
    same_class = int((one["class"].numpy() == two["class"].numpy()).sum())
    same_argmax = int((one["probabilities"].numpy().argmax(-1) == two["probabilities"].numpy().argmax(-1)).sum())
    difference = np.abs(one["probabilities"].numpy() - two["probabilities"].numpy())
    assert 0 < same_class < len(pixels), "the test inputs should make the versions disagree sometimes"

    outputs = {o.name: o for o in result.outputs}
    assert (result.requests, skipped, result.both_failed) == (len(DIGITS_REQUESTS), 0, 0)
    assert outputs["class"].predictions == len(pixels) and outputs["class"].agreeing == same_class
    assert outputs["probabilities"].agreeing == same_argmax
    assert outputs["probabilities"].mean_abs_diff == pytest.approx(difference.mean(), rel=1e-4)
    assert outputs["probabilities"].max_abs_diff == pytest.approx(difference.max(), rel=1e-4)
    assert result.version.fails_alone == result.against.fails_alone == 0
    assert result.version.p50_ms is not None and result.version.p50_ms <= result.version.p95_ms
    share = f"{100 * min(same_class, same_argmax) / len(pixels):.1f}%"
    assert result.summary().startswith("v1 agrees with v2") and share in result.summary()
    assert f"of {len(pixels)} predictions in {len(DIGITS_REQUESTS)} requests" in result.summary()


def test_requests_failing_on_one_version_are_counted_with_a_sample_error(manager, tmp_path):
    xs = [np.array(v, np.float32) for v in ([1, 4], [-1, 9], [16], [-4], [0.25], [-9, -16])]
    log = write_request_log(tmp_path / "sqrt.tfrecord", "sqrt", [{"x": x} for x in xs])
    requests, _ = read_predict_requests([log], "sqrt")
    requests.append(PredictRequest("serving_default", {"wrong_name": xs[0]}))  # refused by both

    result = Comparison(manager, "sqrt", 1, 2, requests, cpu_share=1.0).run()

    negative = sum(bool((x < 0).any()) for x in xs)
    assert (result.version.fails_alone, result.against.fails_alone, result.both_failed) == (negative, 0, 1)
    assert NEGATIVE_INPUT_MESSAGE in result.version.sample_error and result.against.sample_error is None
    (y,) = result.outputs
    assert y.agreeing is None and y.max_abs_diff == 0.0  # both versions agree wherever both answer
    assert result.summary().endswith(f"; {negative} fail on v1; 1 fail on both")


def test_a_torn_last_record_and_other_models_records_are_skipped(tmp_path):
    log = write_request_log(tmp_path / "log", "digits", DIGITS_REQUESTS[:5])
    other = write_request_log(tmp_path / "other", "iris", [{"x": np.zeros((1, 4), np.float32)}])
    data = log.read_bytes()
    log.write_bytes(data + data[:100])  # the start of a record (the first is ~300 bytes), as kill -9 leaves it

    requests, skipped = read_predict_requests([other, log], "digits")
    assert len(requests) == 5 and skipped == 1
    np.testing.assert_array_equal(requests[0].inputs["pixels"], DIGITS_REQUESTS[0]["pixels"])
    last_two, skipped = read_predict_requests([log], "digits", limit=2)
    assert len(last_two) == 2 and skipped == 3
    np.testing.assert_array_equal(last_two[-1].inputs["pixels"], DIGITS_REQUESTS[4]["pixels"])
    newest_only, skipped = read_predict_requests([other, log], "digits", limit=3)
    assert len(newest_only) == 3 and skipped == 2  # enough in the newest file: the older one is not read


def test_progress_while_running_and_cancel(manager, digits_log):
    requests, _ = read_predict_requests([digits_log], "digits")
    comparison = Comparison(manager, "digits", 2, 1, requests, cpu_share=0.01).start()
    assert comparison.state == "running"
    wait_for(lambda: comparison.progress[0] >= 1)
    comparison.cancel()
    result = comparison.wait(60)
    assert comparison.state == "cancelled" and result.cancelled
    assert 1 <= result.requests < len(requests) and comparison.progress == (result.requests, len(requests))
    assert "(cancelled)" in result.summary()


def test_bad_comparisons_are_refused(manager, digits_log):
    requests, _ = read_predict_requests([digits_log], "digits")
    with pytest.raises(InvalidArgument, match="not version 1 with itself"):
        Comparison(manager, "digits", 1, 1, requests)
    with pytest.raises(NotFound):
        Comparison(manager, "digits", 1, 7, requests)
    with pytest.raises(InvalidArgument, match="no recorded predict requests"):
        Comparison(manager, "digits", 1, 2, [])
    with pytest.raises(InvalidArgument, match="CPU share"):
        Comparison(manager, "digits", 1, 2, requests, cpu_share=0)


def test_the_comparison_keeps_within_its_share_of_the_cpu(manager, digits_log):
    """The process's whole CPU time over a run (the comparison's TensorFlow threads included) stays under the
    share of the wall time the run took, the pauses making up the rest."""
    requests, _ = read_predict_requests([digits_log], "digits")
    share = 0.2
    comparison = Comparison(manager, "digits", 1, 2, requests * 3, cpu_share=share)
    wall, cpu = time.monotonic(), time.process_time()
    comparison.run()
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu

    assert 0 < cpu <= comparison.budget.busy_seconds + 0.05 * wall  # the work's cost covers the process's CPU
    assert cpu <= share * 1.1 * wall
    assert wall >= 0.99 * comparison.budget.busy_seconds / share  # paused for the rest


def test_the_comparison_waits_while_live_requests_flow(manager, digits_log):
    requests, _ = read_predict_requests([digits_log], "digits")
    stop = threading.Event()

    def live() -> None:  # a client sending request after request, as fast as they are answered
        while not stop.is_set():
            with manager.acquire("digits") as handle:
                handle.servable.predict("serving_default", DIGITS_REQUESTS[0])

    client = threading.Thread(target=live)
    client.start()
    try:
        wait_for(lambda: manager.acquisitions > 0)
        comparison = Comparison(
            manager, "digits", 1, 2, requests, cpu_share=1.0, quiet_seconds=0.2, max_yield_seconds=60
        )
        comparison.start()
        time.sleep(1)  # five quiet windows, none quiet
        assert comparison.progress[0] == 0
    finally:
        stop.set()
        client.join()
    assert comparison.wait(60).requests == len(requests)  # and once they stop, it runs


def test_comparisons_replay_the_recorded_requests_first_then_the_warm_up_requests(manager, digits_log):
    recorded = Comparisons(manager, recorded=lambda name: [digits_log] if name == "digits" else [])
    assert recorded.latest("digits") is None
    assert recorded.start("digits", 1, 2).wait(60).requests == len(DIGITS_REQUESTS)
    with pytest.raises(InvalidArgument, match="no recorded requests and versions 1 and 2 have no warm-up"):
        recorded.start("sqrt", 1, 2)  # nothing recorded, no warm-up files

    warm_up = Comparisons(manager)
    comparison = warm_up.start("digits", 1, 2)
    assert warm_up.latest("digits") is comparison
    warm_up_requests = sum(
        log.WhichOneof("log_type") == "predict_log"
        for version in (1, 2)
        for log in read_prediction_logs(MODELS / "digits" / str(version) / WARMUP_FILE)
    )
    assert comparison.wait(60).requests == warm_up_requests
    with pytest.raises(NotFound):
        warm_up.latest("nope")


def test_a_version_unloaded_mid_run_ends_the_comparison_with_its_figures_so_far(manager):
    requests = [PredictRequest("serving_default", {"x": np.array([float(i)], np.float32)}) for i in range(500)]
    comparison = Comparison(manager, "sqrt", 1, 2, requests, cpu_share=0.05).start()
    try:
        wait_for(lambda: comparison.progress[0] >= 1)
        manager.unload_model("sqrt")
        result = comparison.wait(60)
    finally:
        manager.load_model("sqrt")
        manager.choose("sqrt", 1)
    assert comparison.state == "failed" and "sqrt" in comparison.error.message
    assert 1 <= result.requests < len(requests) and result.outputs[0].predictions == result.requests


def test_on_change_hears_each_step_of_progress_then_the_end(manager, digits_log):
    requests, _ = read_predict_requests([digits_log], "digits")
    heard = []
    comparison = Comparison(
        manager,
        "digits",
        1,
        2,
        requests,
        cpu_share=1.0,
        on_change=lambda c: heard.append((c.state, c.progress)),
        progress_interval=0,  # every request
    )
    result = comparison.run()
    assert heard[:-1] == [("running", (n, len(requests))) for n in range(1, len(requests) + 1)]
    assert heard[-1] == ("done", (len(requests), len(requests))) and result is comparison.result


def test_progress_reports_are_throttled_and_the_end_is_always_reported(manager, digits_log):
    requests, _ = read_predict_requests([digits_log], "digits")
    heard = []
    comparison = Comparison(
        manager,
        "digits",
        1,
        2,
        requests,
        cpu_share=1.0,
        on_change=lambda c: heard.append(c.state),
        progress_interval=3600,
    )
    comparison.run()
    assert heard == ["done"]


def test_a_failing_listener_does_not_stop_the_comparison(manager, digits_log):
    requests, _ = read_predict_requests([digits_log], "digits")

    def broken(comparison):
        raise RuntimeError("a listener's bug")

    comparison = Comparison(manager, "digits", 1, 2, requests, cpu_share=1.0, on_change=broken, progress_interval=0)
    assert comparison.run().requests == len(requests) and comparison.state == "done"


def test_comparisons_listeners_hear_the_start_and_the_end_of_each_comparison(manager, digits_log):
    comparisons = Comparisons(manager, cpu_share=1.0, recorded=lambda name: [digits_log])
    heard = []
    comparisons.subscribe(lambda c: heard.append((c, c.state)))
    comparisons.subscribe(lambda c: 1 / 0)  # a broken listener stops neither the others nor the run
    first = comparisons.start("digits", 1, 2)
    assert heard[0][0] is first  # told before start() returns
    first.wait(60)
    wait_for(lambda: heard[-1] == (first, "done"))
    second = comparisons.start("digits", 2, 1)
    second.cancel()
    second.wait(60)
    wait_for(lambda: heard[-1] == (second, "cancelled"))
    assert {c for c, _ in heard} == {first, second}
