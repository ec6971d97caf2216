"""The request log: sampled requests of a real model become TF Serving ``PredictionLog`` records on disk.

Requests run on the bundled models through the real runtime; what is read back is checked against TensorFlow
run directly on the recorded inputs, and classify/regress records are replayed as a real warm-up file.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from appliance.serving.request_log import Limits, RequestLog, read_records
from appliance.serving.runtime.local_tf import LocalTFRuntime
from appliance.serving.runtime.warmup import WARMUP_FILE, warm_up
from tests.conftest import wait_for

MODELS = Path(__file__).resolve().parents[2] / "models"
IRIS_EXAMPLE = {
    "sepal_length": ("float", [5.1]),
    "sepal_width": ("float", [3.4]),
    "petal_length": ("float", [1.5]),
    "petal_width": ("float", [0.2]),
}


@pytest.fixture(scope="module")
def digits():
    return LocalTFRuntime("cpu").load(MODELS / "digits" / "2")


@pytest.fixture(scope="module")
def digits_signature():
    return tf.saved_model.load(str(MODELS / "digits" / "2")).signatures["serving_default"]


@pytest.fixture
def request_log(tmp_path):
    recorder = RequestLog(tmp_path / "request-log", flush_interval=0.05, rng=random.Random(20))
    recorder.start()
    yield recorder
    recorder.stop()


def _predict_and_record(recorder: RequestLog, servable, rows: np.ndarray, version: int = 2) -> dict:
    inputs = {"pixels": rows}
    outputs = servable.predict("serving_default", inputs)
    recorder.record_predict("digits", version, "serving_default", inputs, outputs)
    return outputs


def _rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 16, size=(count, 64)).astype(np.float32)


def test_every_request_recorded_at_rate_one_with_what_tensorflow_answers(request_log, digits, digits_signature):
    request_log.set_sampling("digits", 1.0)
    sent = [_rows(1 + i % 3, seed=i) for i in range(25)]
    for rows in sent:
        _predict_and_record(request_log, digits, rows)
    assert request_log.flush()

    records = list(read_records(request_log.files("digits")))
    assert len(records) == len(sent) == request_log.written["digits"]
    before = time.time()
    for rows, record in zip(sent, records, strict=True):
        assert record.WhichOneof("log_type") == "predict_log"
        spec = record.log_metadata.model_spec
        assert (spec.name, spec.version.value, spec.signature_name) == ("digits", 2, "serving_default")
        assert before - 60 < record.log_metadata.timestamp_secs <= before
        request, response = record.predict_log.request, record.predict_log.response
        assert request.model_spec.version.value == response.model_spec.version.value == 2
        logged_rows = tf.make_ndarray(request.inputs["pixels"])
        np.testing.assert_array_equal(logged_rows, rows)
        expected = digits_signature(pixels=tf.constant(logged_rows))
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs["class"]), expected["class"].numpy())
        np.testing.assert_allclose(
            tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"].numpy(), rtol=1e-5, atol=1e-7
        )


def test_a_tenth_sampled_at_rate_point_one(request_log, digits):
    request_log.set_sampling("digits", 0.1)
    rows = _rows(1, seed=1)
    requests = 2000
    for _ in range(requests):
        _predict_and_record(request_log, digits, rows)
    assert request_log.flush()
    recorded = sum(1 for _ in read_records(request_log.files("digits")))
    # Binomial(2000, 0.1): mean 200, sd 13.4; +-6 sd never fails by chance.
    assert 120 <= recorded <= 280


def test_models_not_recorded_by_default_nor_after_turning_off(request_log, digits):
    _predict_and_record(request_log, digits, _rows(1, seed=2))
    request_log.set_sampling("digits", 1.0)
    _predict_and_record(request_log, digits, _rows(1, seed=3))
    request_log.set_sampling("digits", 0)
    _predict_and_record(request_log, digits, _rows(1, seed=4))
    assert request_log.flush()
    assert len(list(read_records(request_log.files("digits")))) == 1
    assert not request_log.recording("digits")
    with pytest.raises(ValueError):
        request_log.set_sampling("digits", 1.5)


def test_owner_only_files_and_folder(request_log, digits):
    request_log.set_sampling("digits", 1.0)
    _predict_and_record(request_log, digits, _rows(1, seed=5))
    assert request_log.flush()
    (path,) = request_log.files("digits")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(request_log.root.stat().st_mode) == 0o700


def test_ten_thousand_requests_stay_under_the_cap_and_keep_the_newest(tmp_path, digits):
    limits = Limits(max_bytes=256 << 10, file_bytes=32 << 10)
    recorder = RequestLog(tmp_path / "log", limits=limits, flush_interval=0.05)
    recorder.start()
    recorder.set_sampling("digits", 1.0)
    rows = _rows(1, seed=6)
    try:
        for i in range(10_000):
            _predict_and_record(recorder, digits, rows, version=i)  # the version numbers the requests
            if i % 500 == 0:
                assert recorder.flush()  # the writer keeps up, so no record is dropped
                assert recorder.bytes_on_disk("digits") <= limits.max_bytes
        assert recorder.flush()
    finally:
        recorder.stop()
    assert recorder.dropped.get("digits", 0) == 0
    assert recorder.written["digits"] == 10_000
    assert 0 < recorder.bytes_on_disk("digits") <= limits.max_bytes
    versions = [r.log_metadata.model_spec.version.value for r in read_records(recorder.files("digits"))]
    assert versions == sorted(versions) and versions[-1] == 9_999
    assert len(versions) > 100 and len(recorder.files("digits")) > 4  # rotated, oldest files removed


def test_files_past_the_age_limit_removed(tmp_path, digits):
    recorder = RequestLog(tmp_path / "log", limits=Limits(file_bytes=1, max_age_s=3600), flush_interval=0.05)
    recorder.start()
    recorder.set_sampling("digits", 1.0)
    try:
        _predict_and_record(recorder, digits, _rows(1, seed=7), version=1)
        assert recorder.flush()
        (old,) = recorder.files("digits")
        two_hours_ago = time.time() - 7200
        os.utime(old, (two_hours_ago, two_hours_ago))
        _predict_and_record(recorder, digits, _rows(1, seed=8), version=2)
        _predict_and_record(recorder, digits, _rows(1, seed=9), version=3)
        assert recorder.flush()
    finally:
        recorder.stop()
    assert old not in recorder.files("digits")
    assert [r.log_metadata.model_spec.version.value for r in read_records(recorder.files("digits"))] == [2, 3]


def test_delete_removes_a_models_records_and_recording_goes_on(request_log, digits):
    request_log.set_sampling("digits", 1.0)
    for seed in range(3):
        _predict_and_record(request_log, digits, _rows(1, seed=seed))
    assert request_log.flush()
    assert request_log.files("digits")
    assert request_log.delete("digits") >= 1
    assert request_log.files("digits") == [] and request_log.bytes_on_disk() == 0
    _predict_and_record(request_log, digits, _rows(1, seed=10))
    assert request_log.flush()
    assert len(list(read_records(request_log.files("digits")))) == 1


def test_records_still_queued_at_a_delete_are_not_written_after_it(request_log, digits):
    request_log.set_sampling("digits", 1.0)
    for seed in range(20):  # the writer takes its queue every 50 ms: most are still queued at the delete
        _predict_and_record(request_log, digits, _rows(1, seed=seed))
    request_log.delete("digits")
    assert request_log.flush()
    assert request_log.files("digits") == []


def test_torn_last_record_skipped_earlier_ones_read(request_log, digits, tmp_path):
    request_log.set_sampling("digits", 1.0)
    for seed in range(5):
        _predict_and_record(request_log, digits, _rows(2, seed=seed))
    assert request_log.flush()
    (path,) = request_log.files("digits")
    torn = tmp_path / "torn.tfrecord"
    data = path.read_bytes()
    torn.write_bytes(data[: len(data) - 100])  # a kill in the middle of writing the fifth record
    records = list(read_records([torn, path]))
    assert len(records) == 4 + 5
    np.testing.assert_array_equal(tf.make_ndarray(records[3].predict_log.request.inputs["pixels"]), _rows(2, seed=3))


def test_full_queue_drops_records_not_requests(tmp_path, digits):
    recorder = RequestLog(tmp_path / "log", limits=Limits(queue_records=1), flush_interval=0.05)
    recorder.start()
    recorder.set_sampling("digits", 1.0)
    blocked = threading.Event()
    written = recorder._write

    def slow_write(pending):  # a disk that stalls: the writer is stuck on the first record
        blocked.wait(30)
        written(pending)

    recorder._write = slow_write  # type: ignore[method-assign]
    try:
        _predict_and_record(recorder, digits, _rows(1, seed=11))
        assert wait_for(lambda: recorder._queued == 0, timeout=10)  # the writer holds the first one
        answers = [_predict_and_record(recorder, digits, _rows(1, seed=12)) for _ in range(10)]
        assert len(answers) == 10  # every request answered
        assert recorder.dropped["digits"] == 9  # one fits in the queue
        blocked.set()
        assert recorder.flush()
    finally:
        blocked.set()
        recorder.stop()
    assert recorder.written["digits"] == 2


def test_classify_and_regress_records_replay_as_a_warmup_file(request_log, tmp_path):
    iris = LocalTFRuntime("cpu").load(MODELS / "iris" / "2")
    request_log.set_sampling("iris", 1.0)
    rows = iris.classify("classify", None, [IRIS_EXAMPLE])
    request_log.record_examples("classify", "iris", 2, "classify", None, [IRIS_EXAMPLE], rows)
    regress_example = {k: v for k, v in IRIS_EXAMPLE.items() if k != "petal_width"}
    values = iris.regress("regress", None, [regress_example])
    request_log.record_examples("regress", "iris", 2, "regress", None, [regress_example], values)
    assert request_log.flush()

    classify, regress = read_records(request_log.files("iris"))
    got = [(c.label, c.score) for c in classify.classify_log.response.result.classifications[0].classes]
    assert [label for label, _ in got] == [label for label, _ in rows[0]]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in rows[0]], rtol=1e-6)
    assert regress.regress_log.response.result.regressions[0].value == pytest.approx(values[0], rel=1e-6)

    version = tmp_path / "iris" / "2"
    shutil.copytree(MODELS / "iris" / "2", version)
    (version / WARMUP_FILE).parent.mkdir(exist_ok=True)
    (version / WARMUP_FILE).write_bytes(b"".join(p.read_bytes() for p in request_log.files("iris")))
    assert warm_up(iris, version) == 2  # TF Serving's warm-up reader takes the records as they are


def test_expired_files_of_models_not_recorded_now_removed_at_start(tmp_path):
    root = tmp_path / "log"
    for model, age in (("old", 8 * 24 * 3600), ("recent", 3600)):
        path = root / model / f"requests-{model}.tfrecord"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        then = time.time() - age
        os.utime(path, (then, then))
    recorder = RequestLog(root)  # the default limits: a week
    recorder.start()
    try:
        assert wait_for(lambda: not recorder.files("old"), timeout=10)
    finally:
        recorder.stop()
    assert len(recorder.files("recent")) == 1
