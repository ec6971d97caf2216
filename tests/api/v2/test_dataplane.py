"""The Open Inference Protocol's operations over a real manager (real TensorFlow and LiteRT, batching on): what
they answer is compared with the SavedModel's signature and the tf.Module run in TensorFlow directly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tensorflow as tf

from appliance.api.v2.dataplane import InferenceProtocol, InferRequest, version_number
from appliance.errors import InvalidArgument, NotFound
from appliance.serving.batching import BatchingPolicy, BatchingServable
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ...conftest import MODELS
from ...serving import tflite_models

ROWS = np.random.default_rng(5).uniform(0, 16, (3, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    """digits (versions 1 and 2) and lite (a .tflite file), every version batched."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "digits", root / "digits")
    (root / "lite" / "1").mkdir(parents=True)
    (root / "lite" / "1" / "model.tflite").write_bytes(tflite_models._convert(tflite_models.MODULES["dense"]))
    manager = ModelManager(
        Repository([], roots=[root]), LocalTFRuntime(device="cpu"), 0, batching=BatchingPolicy(enabled=True)
    )
    manager.start()
    assert manager.wait_until_ready(120)
    yield InferenceProtocol(manager)
    manager.stop()


def digits_signature(version: int = 2):
    return tf.saved_model.load(str(MODELS / "digits" / str(version))).signatures["serving_default"]


def test_health(protocol):
    assert protocol.live() and protocol.ready()
    assert protocol.server_metadata()["extensions"] == ["binary_tensor_data", "model_repository", "statistics"]


def test_model_metadata_is_the_signature_s_in_v2_terms(protocol):
    metadata = protocol.model_metadata("digits", None)
    signature = digits_signature()
    v2 = {tf.float32: "FP32", tf.int64: "INT64"}
    assert metadata["name"] == "digits" and metadata["versions"] == ["2", "1"]
    assert metadata["platform"] == "tensorflow_savedmodel"
    assert metadata["inputs"] == [
        {"name": name, "datatype": v2[spec.dtype], "shape": [-1 if d is None else d for d in spec.shape]}
        for name, spec in signature.structured_input_signature[1].items()
    ]
    assert sorted(metadata["outputs"], key=lambda o: o["name"]) == [
        {"name": name, "datatype": v2[spec.dtype], "shape": [-1 if d is None else d for d in spec.shape]}
        for name, spec in sorted(signature.structured_outputs.items())
    ]


def test_the_platform_of_a_tflite_model_survives_batching(protocol):
    with protocol.acquire("lite", None) as handle:
        assert isinstance(handle.servable, BatchingServable), "the wrapper is what the protocol sees"
    assert protocol.model_metadata("lite", "1")["platform"] == "tensorflow_lite"
    x = np.random.default_rng(1).uniform(-2, 2, (5, 4)).astype(np.float32)
    with protocol.acquire("lite", None) as handle:
        result = protocol.infer(handle, InferRequest({"x": x}, outputs=("total",)))
    assert list(result.outputs) == ["total"]
    expected = tflite_models.MODULES["dense"].serve(x=tf.constant(x))["total"].numpy()
    np.testing.assert_allclose(result.outputs["total"], expected, rtol=1e-5)


def test_infer_runs_the_chosen_or_the_named_version(protocol):
    for version, expected_version in ((None, 2), ("", 2), ("1", 1)):
        with protocol.acquire("digits", version) as handle:
            result = protocol.infer(handle, InferRequest({"pixels": ROWS}, id="r"))
        expected = digits_signature(expected_version)(pixels=tf.constant(ROWS))
        assert (result.model_name, result.model_version, result.id) == ("digits", expected_version, "r")
        np.testing.assert_array_equal(result.outputs["class"], expected["class"].numpy())
        np.testing.assert_allclose(result.outputs["probabilities"], expected["probabilities"].numpy(), rtol=1e-6)


def test_the_signature_name_parameter(protocol):
    png = (MODELS / "digits" / "samples" / "3.png").read_bytes()
    with protocol.acquire("digits", None) as handle:
        result = protocol.infer(
            handle,
            InferRequest({"image_bytes": np.array([png], dtype=object)}, parameters={"signature_name": "image"}),
        )
        with pytest.raises(NotFound, match='no signature "nope"; its signatures: classify, image, serving_default'):
            protocol.infer(handle, InferRequest({"pixels": ROWS}, parameters={"signature_name": "nope"}))
        with pytest.raises(InvalidArgument, match="'signature_name' must be a string"):
            protocol.infer(handle, InferRequest({"pixels": ROWS}, parameters={"signature_name": {}}))
    image = tf.saved_model.load(str(MODELS / "digits" / "2")).signatures["image"]
    expected = image(image_bytes=tf.constant([png]))
    np.testing.assert_allclose(result.outputs["probabilities"], expected["probabilities"].numpy(), rtol=1e-6)


def test_requests_off_the_signature_are_refused(protocol):
    with protocol.acquire("digits", None) as handle:
        with pytest.raises(
            InvalidArgument, match="'pixels' has datatype FP64, but model digits version 2 expects FP32"
        ):
            protocol.infer(handle, InferRequest({"pixels": ROWS.astype(np.float64)}))
        with pytest.raises(InvalidArgument, match="klass"):
            protocol.infer(handle, InferRequest({"pixels": ROWS}, outputs=("klass",)))


def test_versions_and_readiness(protocol):
    assert protocol.model_ready("digits", None) and protocol.model_ready("digits", "1")
    assert not protocol.model_ready("digits", "7")
    with pytest.raises(NotFound, match="nope"):
        protocol.model_ready("nope", None)
    with pytest.raises(NotFound, match="digits, 7"):
        protocol.acquire("digits", "7")
    with pytest.raises(InvalidArgument, match="the request names no model"):
        protocol.acquire("", None)
    assert version_number(None) is None and version_number("") is None and version_number("0012") == 12
    for bad in ("two", "-1", "1.0", "1" * 20):
        with pytest.raises(InvalidArgument, match="version number"):
            version_number(bad)


def test_model_config_of_a_batched_version_leaves_the_batch_dimension_out(protocol):
    own = (MODELS / "digits" / "2" / "batching_params.pbtxt").read_text()
    config = protocol.model_config("digits", "2")
    assert f"max_batch_size {{ value: {config['max_batch_size']} }}" in own
    assert (config["platform"], config["backend"]) == ("tensorflow_savedmodel", "tensorflow")
    assert config["input"] == [{"name": "pixels", "data_type": "TYPE_FP32", "dims": [64]}]
    assert {t["name"]: t["dims"] for t in config["output"]} == {"class": [], "probabilities": [10]}
    assert protocol.model_config("lite", None)["backend"] == "", "Triton has no backend for .tflite here"
