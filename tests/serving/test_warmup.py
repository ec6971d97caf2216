"""Warm-up at load time: TF Serving's warm-up records are replayed, else each signature gets a synthetic request.

A version's signatures run once before ``load`` returns (and so before the
manager makes it AVAILABLE): the callables the first real requests need exist.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from appliance.errors import Code, FailedPrecondition, ServingError
from appliance.serving.runtime.local_tf import LocalTFRuntime
from appliance.serving.runtime.warmup import WARMUP_FILE, synthetic_inputs, warm_up
from tests.own_models import sample_rows, save_trap, save_trap_module, tiny_model

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def runtime():
    return LocalTFRuntime("cpu")


@pytest.fixture(scope="module")
def cold_runtime():
    return LocalTFRuntime("cpu", warmup=False)


def _records(path: Path) -> list:
    return [
        prediction_log_pb2.PredictionLog.FromString(r)
        for r in tf.compat.v1.io.tf_record_iterator(str(path / WARMUP_FILE))
    ]


@pytest.mark.parametrize("model", ["digits/1", "digits/2", "iris/1", "iris/2"])
def test_bundled_versions_replay_their_warmup_records_one_per_signature(runtime, cold_runtime, model):
    path = MODELS / model
    records = _records(path)
    signatures = {getattr(r, r.WhichOneof("log_type")).request.model_spec.signature_name for r in records}
    cold = cold_runtime.load(path)
    try:
        assert signatures == set(cold.signatures) - {"__saved_model_init_op"}
        assert not cold._callables  # nothing has run yet
        assert warm_up(cold, path) == len(records)
        assert len(cold._callables) == len(signatures)
    finally:
        cold.close()
    warm = runtime.load(path)
    try:
        assert len(warm._callables) == len(signatures)
    finally:
        warm.close()


def test_a_model_without_records_gets_a_synthetic_request_per_signature(cold_runtime, tfs_testdata):
    path = tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123"
    assert not (path / WARMUP_FILE).exists()
    servable = cold_runtime.load(path)
    try:
        ran = warm_up(servable, path)
        assert ran >= 1 and len(servable._callables) >= ran
        x = synthetic_inputs(servable.signatures["serving_default"])
        assert {a: (v.dtype, v.shape) for a, v in x.items()} == {"x": (np.float32, (1, 1))}  # x: float [-1, 1]
    finally:
        servable.close()


def _copy_with_records(source: Path, target: Path, records: bytes | list) -> Path:
    shutil.copytree(source, target)
    if isinstance(records, bytes):
        (target / WARMUP_FILE).write_bytes(records)
    else:
        with tf.io.TFRecordWriter(str(target / WARMUP_FILE)) as writer:
            for record in records:
                writer.write(record.SerializeToString())
    return target


def test_corrupt_records_fail_the_load_with_a_clear_error(runtime, tmp_path):
    path = _copy_with_records(MODELS / "digits" / "2", tmp_path / "2", b"\x00garbage, not a TFRecord")
    with pytest.raises(ServingError, match=r"Failed to warm up model from .*tf_serving_warmup_requests"):
        runtime.load(path)


def test_a_record_the_model_refuses_fails_the_load_naming_the_problem(runtime, tmp_path):
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.signature_name = "no_such_signature"
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 64), np.float32)))
    path = _copy_with_records(MODELS / "digits" / "2", tmp_path / "2", [log])
    with pytest.raises(ServingError, match="no_such_signature"):
        runtime.load(path)


# -- no model reported AVAILABLE that cannot answer ----------------------------


@pytest.mark.parametrize("save", [save_trap, save_trap_module], ids=["tf.saved_model.save", "inside a tf.Module"])
def test_a_keras_3_model_saved_with_tf_saved_model_save_fails_the_load_with_the_fix(runtime, tmp_path, save):
    save(tiny_model(), tmp_path / "1")
    with pytest.raises(FailedPrecondition) as raised:
        runtime.load(tmp_path / "1")
    message = raised.value.message
    assert "Could not find variable" in message and "re-export it with model.export(path)" in message
    assert "\n" not in message and "function_node" not in message


def test_records_that_hit_the_trap_fail_the_load_with_the_fix(runtime, tmp_path):
    save_trap(tiny_model(), tmp_path / "trap")
    (tmp_path / "trap" / WARMUP_FILE.parent).mkdir()
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(sample_rows(1)))
    path = _copy_with_records(tmp_path / "trap", tmp_path / "1", [log])
    with pytest.raises(ServingError, match=r"Failed to warm up model from .*model\.export\(path\)") as raised:
        runtime.load(path)
    assert raised.value.code is Code.FAILED_PRECONDITION


class PngSize(tf.Module):
    """The size of a PNG image: made-up input (an empty string) is no PNG, real requests are."""

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="png")])
    def serve(self, png):
        return {"size": tf.shape(tf.io.decode_png(png))}


def test_a_model_refusing_made_up_input_is_available_and_says_so(runtime, tmp_path, caplog):
    module = PngSize()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.serve})
    caplog.set_level(logging.INFO, logger="appliance.serving.runtime.warmup")
    servable = runtime.load(tmp_path / "1")
    try:
        (refused,) = [r for r in caplog.records if "made-up input" in r.getMessage()]
        assert refused.levelname == "INFO" and "serving_default" in refused.getMessage()
        png = tf.io.encode_png(np.zeros((3, 5, 1), np.uint8)).numpy()
        assert servable.predict("serving_default", {"png": np.array(png, dtype=object)})["size"].tolist() == [3, 5, 1]
    finally:
        servable.close()


class _Counter(tf.Module):
    """Counts its calls: ``calls`` answers how many calls there have been, this one included."""

    def __init__(self):
        super().__init__()
        self.count = tf.Variable(0.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def calls(self, x):
        return {"calls": self.count.assign_add(1.0) + 0.0 * tf.reduce_sum(x)}


@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_each_record_runs_num_request_iterations_for_warmup_times(tmp_path, iterations):
    counter = _Counter()
    version = tmp_path / str(iterations) / "1"
    tf.saved_model.save(counter, str(version), signatures={"serving_default": counter.calls})
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.zeros(1, np.float32)))
    (version / WARMUP_FILE).parent.mkdir()
    with tf.io.TFRecordWriter(str(version / WARMUP_FILE)) as writer:
        for _ in range(2):
            writer.write(log.SerializeToString())
    servable = LocalTFRuntime("cpu", warmup_iterations=iterations).load(version)
    try:
        first_request = servable.predict("serving_default", {"x": np.zeros(1, np.float32)})
    finally:
        servable.close()
    warmup_calls = 2 * max(iterations, 1)  # TF Serving runs each record once unless the flag is above 0
    assert first_request["calls"] == warmup_calls + 1
