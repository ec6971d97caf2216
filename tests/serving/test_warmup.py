"""Warm-up at load time: TF Serving's warm-up records are replayed, else each signature gets a synthetic request.

A version's signatures run once before ``load`` returns (and so before the
manager makes it AVAILABLE): the callables the first real requests need exist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from appliance.errors import ServingError
from appliance.serving.runtime.local_tf import LocalTFRuntime
from appliance.serving.runtime.warmup import WARMUP_FILE, synthetic_inputs, warm_up

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
