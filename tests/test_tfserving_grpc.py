"""TF Serving's gRPC integration tests (``tensorflow_model_server_test.py``), ported to pytest.

Each test names the upstream test it ports. They run against real ``appliance serve --port 0 --rest_api_port 0``
processes serving TF Serving's own test models in place (``../shared/testdata/tfserving``), through
``tensorflow-serving-api``'s stubs, twice: "direct" (the client calls that appliance) and "via_remote" (it calls a
front appliance with no models of its own and ``--remote_url grpc://<the first's gRPC address>``; the
``x-appliance-backend`` trailing metadata says which backend answered). Expected outputs come from running the
SavedModels in this process, versions from their folders' names.

    PYTHONPATH=$PWD python -m pytest tests/test_tfserving_grpc.py -q

Upstream tests not ported here:

- testClassifyREST, testRegressREST, testPredictREST, testPredictColumnarREST, testGetStatusREST,
  testGetModelMetadataREST, testPrometheusEndpoint: REST, ported in tests/api/test_tfserving.py.
- testPredictOnTfLite, testPredictWithSignatureDefOnTfLite: their models (saved_model_half_plus_two_tflite and
  saved_model_half_plus_two_tflite_with_sigdef) are not in the testdata.
- test_sequential_keras_saved_model_save, test_distrat_sequential_keras_saved_model_save: Keras 3 (with TF 2.21)
  saves the signature's input as ``inputs`` and its output as ``output_0``, not the layers' ``x`` and ``y`` the
  tests send and read, so they fail the same way against TF Serving itself.
- test_profiler_service_with_valid_trace_request: TF's profiler service, which the appliance does not serve.
- test_tf_text: its model (tf_text_regression) is not in the testdata, and needs tensorflow-text's ops.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from .conftest import REPO, ApplianceProcess

RPC_TIMEOUT = 30.0
RELOAD_TIMEOUT = 60.0
BACKEND_METADATA = "x-appliance-backend"
# Upstream's RunServer always adds grpc.so_reuseaddr=1 to the test's own channel arguments.
CHANNEL_ARGUMENTS = "grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb,grpc.so_reuseaddr=1"
ROUTES = ["direct", "via_remote"]

HALF_PLUS_TWO = "saved_model_half_plus_two_cpu"
HALF_PLUS_TWO_TF2 = "saved_model_half_plus_two_tf2_cpu"
HALF_PLUS_THREE = "saved_model_half_plus_three"


# -- what the processes serve -----------------------------------------------------------------------------------


def model_config_text(models: dict[str, Path]) -> str:
    """A models.config serving each ``name: base_path``, as upstream's good_model_config.txt writes it."""
    entries = "".join(
        f'  config: {{ name: "{name}", base_path: "{path}", model_platform: "tensorflow" }},\n'
        for name, path in models.items()
    )
    return f"model_config_list: {{\n{entries}}}\n"


def model_version(base_path: Path) -> int:
    """tensorflow_model_server_test_base._GetModelVersion: the one version folder's name."""
    (version,) = os.listdir(base_path)
    return int(version)


def version_folder(base_path: Path) -> Path:
    (folder,) = base_path.iterdir()
    return folder


def write_bad_half_plus_two(out: Path) -> tuple[Path, Path]:
    """Upstream's export_bad_half_plus_two.py, y = 0.5x + 2 exported without signatures, in two forms.

    Returns the base path of the export as upstream ships it (a meta graph and a checkpoint, no SavedModel, which
    TF Serving up-converted long ago and no longer loads) and that of its up-converted form (a SavedModel with
    no SignatureDef), which loads but has no signature for a Predict to run.
    """
    v1 = tf.compat.v1
    export, upconverted = out / "bad_half_plus_two", out / "bad_half_plus_two_upconverted"
    with tf.Graph().as_default(), v1.Session() as session:
        a, b = v1.Variable(0.5), v1.Variable(2.0)
        x = v1.placeholder(tf.float32)
        tf.add(tf.multiply(a, x), b)
        session.run(v1.global_variables_initializer())
        saver = v1.train.Saver()
        version = export / "00000123"
        version.mkdir(parents=True)
        saver.export_meta_graph(filename=str(version / "export.meta"))
        saver.save(session, str(version / "export"), write_meta_graph=False)
        builder = v1.saved_model.Builder(str(upconverted / "00000123"))
        builder.add_meta_graph_and_variables(session, ["serve"])
        builder.save()
    return export, upconverted


def write_saved_model_save_models(out: Path) -> tuple[Path, Path]:
    """The models of test_tf_saved_model_save and test_tf_saved_model_save_multiple_signatures.

    Saved as those tests save them: y = v1 * v2 * x (3 * 2 * x) from a checkpoint's function, and one with two
    signatures answering the constants 1 (serving_default) and 2 (custom_signature_key).
    """
    product = out / "tf_saved_model_save"
    root = tf.train.Checkpoint()
    root.v1, root.v2 = tf.Variable(3.0), tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(root, str(product / "00000123"), root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))

    signatures = out / "tf_saved_model_save_multiple_signatures"
    root = tf.train.Checkpoint()
    spec = [tf.TensorSpec(None, tf.float32)]
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=spec)
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=spec)
    tf.saved_model.save(
        root, str(signatures / "00000123"), signatures={"serving_default": root.f, "custom_signature_key": root.g}
    )
    return product, signatures


@dataclass
class Served:
    """Where a test's client calls: an appliance serving the models, or a front forwarding to it over gRPC.

    ``backend`` serves the models; the client calls ``target`` (the front's address via the remote); ``socket`` is
    the UNIX socket the called process serves too, ``config`` the backend's models.config.
    """

    backend: ApplianceProcess
    front: ApplianceProcess | None
    socket: Path | None = None
    config: Path | None = None

    @property
    def target(self) -> str:
        return (self.front or self.backend).grpc_address

    @property
    def answering(self) -> str:
        return "remote" if self.front else "local"

    def call(self, method: str, request, target: str | None = None):
        """The answer of PredictionService's ``method``, checked to come from the backend that serves the models."""
        with grpc.insecure_channel(target or self.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response, call = getattr(stub, method).with_call(request, timeout=RPC_TIMEOUT)
        assert dict(call.trailing_metadata()).get(BACKEND_METADATA) == self.answering
        return response

    def model_status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
        """ModelService's GetModelStatus, checked to come from the backend that serves the models."""
        with grpc.insecure_channel(self.target) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            response, call = stub.GetModelStatus.with_call(request, timeout=RPC_TIMEOUT)
        assert dict(call.trailing_metadata()).get(BACKEND_METADATA) == self.answering
        return response

    def error(self, method: str, request) -> grpc.RpcError:
        """The error PredictionService's ``method`` ends with, checked to come from the backend serving the models."""
        with grpc.insecure_channel(self.target) as channel, pytest.raises(grpc.RpcError) as raised:
            getattr(prediction_service_pb2_grpc.PredictionServiceStub(channel), method)(request, timeout=RPC_TIMEOUT)
        assert dict(raised.value.trailing_metadata()).get(BACKEND_METADATA) == self.answering
        return raised.value


def start_front(backend: ApplianceProcess, folder: Path, *args: str) -> ApplianceProcess:
    """An appliance with no models of its own, forwarding every gRPC call to ``backend``'s gRPC port."""
    models = folder / "no-models"
    models.mkdir()
    return ApplianceProcess("--remote_url", f"grpc://{backend.grpc_address}", "--models_dir", str(models), *args)


@pytest.fixture(scope="module", params=ROUTES)
def route(request) -> str:
    return request.param


# The main model set: upstream's "default" (half_plus_two, TF1), its TF2 twin, good_model_config.txt's two models,
# the bad model in both forms, and the models test_tf_saved_model_save* write. Backend and front serve gRPC on a
# UNIX socket too, and take upstream's channel arguments.


@pytest.fixture(scope="module")
def main_models(tfs_testdata, tmp_path_factory) -> dict[str, Path]:
    written = tmp_path_factory.mktemp("written")
    bad_export, bad_upconverted = write_bad_half_plus_two(written)
    product, signatures = write_saved_model_save_models(written)
    return {
        "default": tfs_testdata / HALF_PLUS_TWO,
        "default_tf2": tfs_testdata / HALF_PLUS_TWO_TF2,
        "half_plus_two": tfs_testdata / HALF_PLUS_TWO,
        "half_plus_three": tfs_testdata / HALF_PLUS_THREE,
        "bad_half_plus_two": bad_export,
        "bad_half_plus_two_upconverted": bad_upconverted,
        "tf_saved_model_save": product,
        "tf_saved_model_save_multiple_signatures": signatures,
    }


@pytest.fixture(scope="module")
def main_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("main")


@pytest.fixture(scope="module")
def main_backend(main_models, main_folder):
    config = main_folder / "models.config"
    config.write_text(model_config_text(main_models))
    socket = str(main_folder / "backend.sock")
    server = ApplianceProcess(
        "--model_config_file", str(config), "--grpc_socket_path", socket, "--grpc_channel_arguments", CHANNEL_ARGUMENTS
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def main_front(main_backend, main_folder):
    socket = str(main_folder / "front.sock")
    server = start_front(
        main_backend, main_folder, "--grpc_socket_path", socket, "--grpc_channel_arguments", CHANNEL_ARGUMENTS
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(route, main_backend, main_folder, request) -> Served:
    if route == "direct":
        return Served(main_backend, None, main_folder / "backend.sock")
    return Served(main_backend, request.getfixturevalue("main_front"), main_folder / "front.sock")


# -- upstream's helpers ---------------------------------------------------------------------------------------


def run_saved_model(base_path: Path, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The signature's outputs for ``inputs``, run here with TensorFlow's TF1 loader (which loads every test model).

    Each input is reshaped to its tensor's rank in the graph (x [2.0] to [[2.0]] for a (-1, 1) tensor): TF Serving
    feeds a tensor whatever its static shape, where a Python session checks it first.
    """
    path = version_folder(base_path)
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        signature_def = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path)).signature_def[signature]
        feeds = {}
        for name, value in inputs.items():
            tensor = session.graph.get_tensor_by_name(signature_def.inputs[name].name)
            if tensor.shape.rank is not None and tensor.shape.rank != value.ndim:
                value = value.reshape([-1 if d is None else d for d in tensor.shape.as_list()])
            feeds[tensor] = value
        fetches = {name: info.name for name, info in signature_def.outputs.items()}
        return session.run(fetches, feeds)


def expected_y(base_path: Path, x: np.ndarray, signature: str = "serving_default") -> float:
    """The model's ``y`` for ``x`` (one value), run here in TensorFlow."""
    return float(np.asarray(run_saved_model(base_path, signature, {"x": x})["y"]).ravel()[0])


def tf_example(**features: float) -> bytes:
    example = example_pb2.Example()
    for name, value in features.items():
        example.features.feature[name].float_list.value.append(value)
    return example.SerializeToString()


def expected_from_examples(base_path: Path, signature: str, output: str, examples: list[bytes]) -> list[float]:
    """A classify or regress signature's ``output`` for serialized tf.Examples, run here in TensorFlow."""
    outputs = run_saved_model(base_path, signature, {"inputs": np.array(examples, dtype=object)})
    return np.asarray(outputs[output], np.float32).ravel().tolist()


def verify_model_spec(spec, name: str, signature_name: str, version: int) -> None:
    """tensorflow_model_server_test_base._VerifyModelSpec."""
    assert (spec.name, spec.signature_name, spec.version.value) == (name, signature_name, version)


def verify_predict_request(
    served: Served,
    base_path: Path,
    model_name: str = "default",
    specify_output: bool = True,
    batch_input: bool = False,
    signature_name: str = "serving_default",
    target: str | None = None,
) -> None:
    """tensorflow_model_server_test_base.VerifyPredictRequest: x = [2.0] in typed fields, y checked."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    result = served.call("Predict", request, target)
    x = np.array([[2.0]] if batch_input else [2.0], np.float32)
    expected = expected_y(base_path, x, signature_name)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1
    assert result.outputs["y"].float_val[0] == expected
    verify_model_spec(result.model_spec, model_name, signature_name, model_version(base_path))


def test_predict(served, main_models):
    """Ported from tensorflow_model_server_test.py::testPredictSavedModel (tensorflow_model_server_test_base.py's
    _TestPredict): Predict with and without an output_filter."""
    verify_predict_request(served, main_models["default"])
    verify_predict_request(served, main_models["default"], specify_output=False)


def test_predict_tf2(served, main_models):
    """Ported from tensorflow_model_server_test.py::testPredictSavedModel, on half_plus_two_tf2 (upstream's
    _TestPredict on the TF2 model, as its *Tf2 tests serve it)."""
    verify_predict_request(served, main_models["default_tf2"], "default_tf2")
    verify_predict_request(served, main_models["default_tf2"], "default_tf2", specify_output=False)


# -- ModelService and metadata --------------------------------------------------------------------------------


def test_get_model_status(served, main_models):
    """Ported from tensorflow_model_server_test.py::testGetModelStatus."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = served.model_status(request)
    assert len(result.model_version_status) == 1
    (status,) = result.model_version_status
    assert status.version == model_version(main_models["default"])
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0  # OK


def signature_defs_on_disk(base_path: Path) -> dict:
    """The SignatureDefs of the version's saved_model.pb, read here with TensorFlow's protos."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((version_folder(base_path) / "saved_model.pb").read_bytes())
    (meta_graph,) = saved_model.meta_graphs
    return dict(meta_graph.signature_def)


@pytest.mark.parametrize("name", ["default", "default_tf2"])
def test_get_model_metadata(served, main_models, name):
    """Ported from tensorflow_model_server_test.py::testGetModelMetadata (also on the TF2 model): the metadata is
    the SavedModel's own SignatureDefs."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = name
    request.metadata_field.append("signature_def")
    result = served.call("GetModelMetadata", request)
    assert result.model_spec.name == name
    assert result.model_spec.version.value == model_version(main_models[name])
    assert len(result.metadata) == 1
    assert "signature_def" in result.metadata
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert result.metadata["signature_def"].Unpack(signature_defs)
    assert dict(signature_defs.signature_def) == signature_defs_on_disk(main_models[name])


# -- Classify, Regress, MultiInference ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "default_tf2"], ids=["testClassify", "testClassifyTf2"])
def test_classify(served, main_models, name):
    """Ported from tensorflow_model_server_test.py::testClassify and ::testClassifyTf2 (_TestClassify)."""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "classify_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = served.call("Classify", request)
    expected = expected_from_examples(main_models[name], "classify_x_to_y", "scores", [tf_example(x=2.0)])
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == expected[0]
    verify_model_spec(result.model_spec, name, "classify_x_to_y", model_version(main_models[name]))


@pytest.mark.parametrize("name", ["default", "default_tf2"], ids=["testRegress", "testRegressTf2"])
def test_regress(served, main_models, name):
    """Ported from tensorflow_model_server_test.py::testRegress and ::testRegressTf2 (_TestRegress)."""
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "regress_x_to_y"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = served.call("Regress", request)
    expected = expected_from_examples(main_models[name], "regress_x_to_y", "outputs", [tf_example(x=2.0)])
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == expected[0]
    verify_model_spec(result.model_spec, name, "regress_x_to_y", model_version(main_models[name]))


@pytest.mark.parametrize("name", ["default", "default_tf2"], ids=["testMultiInference", "testMultiInferenceTf2"])
def test_multi_inference(served, main_models, name):
    """Ported from tensorflow_model_server_test.py::testMultiInference and ::testMultiInferenceTf2."""
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = name
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = name
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([2.0])
    result = served.call("MultiInference", request)
    examples = [tf_example(x=2.0)]
    regressed = expected_from_examples(main_models[name], "regress_x_to_y", "outputs", examples)
    classified = expected_from_examples(main_models[name], "classify_x_to_y", "scores", examples)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == regressed[0]
    assert result.results[1].classification_result.classifications[0].classes[0].score == classified[0]
    for task, task_result in zip(request.tasks, result.results):
        verify_model_spec(
            task_result.model_spec,
            task.model_spec.name,
            task.model_spec.signature_name,
            model_version(main_models[name]),
        )


# -- models written by the test, bad models -------------------------------------------------------------------


def test_tf_saved_model_save(served, main_models):
    """Ported from tensorflow_model_server_test.py::test_tf_saved_model_save."""
    verify_predict_request(served, main_models["tf_saved_model_save"], "tf_saved_model_save", specify_output=False)


def test_tf_saved_model_save_multiple_signatures(served, main_models):
    """Ported from tensorflow_model_server_test.py::test_tf_saved_model_save_multiple_signatures."""
    name = "tf_saved_model_save_multiple_signatures"
    verify_predict_request(served, main_models[name], name, signature_name="custom_signature_key")
    verify_predict_request(served, main_models[name], name)


def bad_model_request(name: str) -> predict_pb2.PredictRequest:
    """VerifyPredictRequest's request with signature_name "", as _TestBadModel sends it."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.output_filter.append("y")
    return request


def test_bad_model(served):
    """Ported from tensorflow_model_server_test.py::_TestBadModel (and _TestBadModelUpconvertedSavedModel), which
    upstream no longer runs: the model without signatures, up-converted to a SavedModel as TF Serving once did,
    loads, and a Predict on it fails FAILED_PRECONDITION, as upstream expects."""
    error = served.error("Predict", bad_model_request("bad_half_plus_two_upconverted"))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details().startswith('Serving signature key "serving_default" not found.')


def test_bad_model_as_exported(served):
    """Ported from tensorflow_model_server_test.py::_TestBadModel, with the export as upstream ships it (a meta
    graph and a checkpoint, no SavedModel): it cannot load, so no version serves and Predict fails NOT_FOUND, as
    it does in TF Serving 2.x, which no longer up-converts such exports (upstream's FAILED_PRECONDITION needed
    the up-conversion: see test_bad_model)."""
    error = served.error("Predict", bad_model_request("bad_half_plus_two"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details().startswith("Servable not found for request: Latest(bad_half_plus_two)")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "bad_half_plus_two"
    result = served.model_status(request)
    (status,) = result.model_version_status
    assert status.state == get_model_status_pb2.ModelVersionStatus.END
    assert status.status.error_code != 0


# -- bad model name, version, label, signature ----------------------------------------------------------------

NOT_FOUND, INVALID_ARGUMENT = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
# TF Serving's status and the start of its message for each fault, by method (the appliance may add a hint after
# TF Serving's words): basic_manager.cc and manager.h (name, version), server_core.cc (label), predict_util.cc,
# classifier.cc and regressor.cc (signature), get_model_metadata_impl.cc (metadata field).
LOOKUP_FAULTS = {
    "bad_name": ({"name": "missing"}, NOT_FOUND, "Servable not found for request: Latest(missing)"),
    "bad_version": ({"version": 999}, NOT_FOUND, "Servable not found for request: Specific(default, 999)"),
    "bad_label": ({"version_label": "nope"}, INVALID_ARGUMENT, "Unrecognized servable version label: nope"),
}
SIGNATURE_FAULTS = {
    "Predict": (FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    "Classify": (INVALID_ARGUMENT, "No signature was found with the name: nope"),
    "Regress": (INVALID_ARGUMENT, "No signature was found with the name: nope"),
}


def request_of(method: str, signature_name: str = "", **spec):
    """A request of ``method`` to model "default" that would succeed, with ``spec`` changing its model_spec."""
    if method == "GetModelMetadata":
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.metadata_field.append("signature_def")
    elif method == "Predict":
        request = bad_model_request("default")
    else:
        request = (
            classification_pb2.ClassificationRequest if method == "Classify" else regression_pb2.RegressionRequest
        )()
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
        signature_name = signature_name or ("classify_x_to_y" if method == "Classify" else "regress_x_to_y")
    request.model_spec.name = spec.pop("name", "default")
    if signature_name:
        request.model_spec.signature_name = signature_name
    for field, value in spec.items():
        if field == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, field, value)
    return request


@pytest.mark.parametrize("fault", LOOKUP_FAULTS)
@pytest.mark.parametrize("method", ["Predict", "Classify", "Regress", "GetModelMetadata"])
def test_bad_model_name_version_and_label(served, method, fault):
    """A request for a model, version or label not served fails with TF Serving's status and message (the
    errors upstream's tests meet through WaitForServerReady and server_core_test.cc)."""
    spec, code, message = LOOKUP_FAULTS[fault]
    error = served.error(method, request_of(method, **spec))
    assert error.code() is code
    assert error.details().startswith(message), error.details()


@pytest.mark.parametrize("method", SIGNATURE_FAULTS)
def test_bad_signature(served, method):
    """A signature the model does not have fails with TF Serving's status and message for each method."""
    code, message = SIGNATURE_FAULTS[method]
    error = served.error(method, request_of(method, signature_name="nope"))
    assert error.code() is code
    assert error.details().startswith(message), error.details()


def test_bad_metadata_field(served):
    """GetModelMetadata takes no signature; a metadata field it does not know fails as TF Serving fails it."""
    request = request_of("GetModelMetadata")
    request.metadata_field[:] = ["nope"]
    error = served.error("GetModelMetadata", request)
    assert error.code() is INVALID_ARGUMENT
    assert error.details().startswith("Metadata field nope is not supported")


# -- models.config, server flags ------------------------------------------------------------------------------


def test_good_model_config(served, main_models):
    """Ported from tensorflow_model_server_test.py::testGoodModelConfig: half_plus_two and the TF1-only
    half_plus_three, served from a models.config written as good_model_config.txt is."""
    for name in ("half_plus_two", "half_plus_three"):
        verify_predict_request(served, main_models[name], name)
        verify_predict_request(served, main_models[name], name, specify_output=False)


def test_bad_model_config(tmp_path):
    """Ported from tensorflow_model_server_test.py::testBadModelConfig: the process exits non-zero and says why.

    TF Serving says "Error parsing text-format tensorflow.serving.ModelServerConfig"; the appliance names the file,
    the message type and where the text-format parser stopped."""
    config = tmp_path / "bad_model_config.txt"
    config.write_text("improperly formatted file\n")  # upstream's bad_model_config.txt
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "serve",
            *("--port", "0", "--rest_api_port", "0"),
            "--model_config_file",
            str(config),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert f"model config file {config} is not a valid ModelServerConfig" in result.stderr
    assert "tensorflow.serving.ModelServerConfig" in result.stderr
    assert "Traceback" not in result.stderr


def test_good_grpc_channel_args(served, main_models):
    """Ported from tensorflow_model_server_test.py::testGoodGrpcChannelArgs: the appliance answers, started with
    --grpc_channel_arguments grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb (and so_reuseaddr)."""
    verify_predict_request(served, main_models["default"], specify_output=False)


def test_predict_uds(served, main_models):
    """Ported from tensorflow_model_server_test.py::testPredictUDS: Predict over --grpc_socket_path."""
    assert served.socket is not None and served.socket.is_socket()
    verify_predict_request(served, main_models["default"], specify_output=False, target=f"unix:{served.socket}")


# -- config reload ---------------------------------------------------------------------------------------------


def answers(served: Served, name: str) -> bool:
    """Whether a Predict on model ``name`` is answered (False while it is NOT_FOUND)."""
    try:
        served.call("Predict", bad_model_request(name))
    except grpc.RpcError as e:
        if e.code() is not grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True


def eventually(condition, timeout: float = RELOAD_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def config_backend(folder: Path, models: dict[str, Path], poll_seconds: str) -> ApplianceProcess:
    """An appliance serving ``models`` from ``folder``/model_config.txt, re-read every ``poll_seconds`` (0: never)."""
    config = folder / "model_config.txt"
    config.write_text(model_config_text(models))
    return ApplianceProcess(
        "--model_config_file",
        str(config),
        "--model_config_file_poll_wait_seconds",
        poll_seconds,
        "--require_token_for_control",  # the appliance reloads a config sent over gRPC only from the token's holder
    )


def served_config(route: str, backend: ApplianceProcess, folder: Path):
    """``backend`` as ``route`` reaches it (a front started for it via the remote), with its models.config."""
    if route == "direct":
        yield Served(backend, None, config=folder / "model_config.txt")
        return
    front = start_front(backend, folder)
    yield Served(backend, front, config=folder / "model_config.txt")
    front.stop()


@pytest.fixture(scope="module")
def polled_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("polled")


@pytest.fixture(scope="module")
def polled_backend(tfs_testdata, polled_folder):
    """An appliance re-reading its models.config every second (--model_config_file_poll_wait_seconds 1)."""
    server = config_backend(polled_folder, {"half_plus_two": tfs_testdata / HALF_PLUS_TWO}, "1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def polled(route, polled_backend, polled_folder):
    yield from served_config(route, polled_backend, polled_folder)


def test_model_config_reload(polled, tfs_testdata):
    """Ported from tensorflow_model_server_test.py::testModelConfigReload: rewrite the models.config from
    half_plus_two to half_plus_three, and half_plus_three answers (upstream sleeps 10 s; this waits until it
    does). Also: half_plus_two, no longer in the file, is unloaded, as TF Serving unloads it."""
    config = polled.config
    half_plus_two, half_plus_three = tfs_testdata / HALF_PLUS_TWO, tfs_testdata / HALF_PLUS_THREE
    config.write_text(model_config_text({"half_plus_two": half_plus_two}))  # as it started (rewritten by a rerun)
    assert eventually(lambda: answers(polled, "half_plus_two"))
    verify_predict_request(polled, half_plus_two, "half_plus_two", specify_output=False)

    config.write_text(model_config_text({"half_plus_three": half_plus_three}))
    assert eventually(lambda: answers(polled, "half_plus_three")), "the rewritten models.config was not applied"
    verify_predict_request(polled, half_plus_three, "half_plus_three", specify_output=False)
    assert eventually(lambda: not answers(polled, "half_plus_two"))


@pytest.fixture(scope="module")
def unpolled_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("unpolled")


@pytest.fixture(scope="module")
def unpolled_backend(tfs_testdata, unpolled_folder):
    """An appliance that reads its models.config only at start (--model_config_file_poll_wait_seconds 0)."""
    server = config_backend(unpolled_folder, {"half_plus_two": tfs_testdata / HALF_PLUS_TWO}, "0")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def unpolled(route, unpolled_backend, unpolled_folder):
    yield from served_config(route, unpolled_backend, unpolled_folder)


def reload_config(served: Served, models: dict[str, Path]) -> None:
    """ModelService.HandleReloadConfigRequest with a config serving ``models``; it must succeed.

    It is sent to the backend, via the remote too: a reload changes the models of the server it is sent to (a
    front's own), so it is not forwarded."""
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(model_config_text(models), request.config)
    assert isinstance(request.config, model_server_config_pb2.ModelServerConfig)
    token = (served.backend.home / "config" / "appliance" / "token").read_text().strip()
    with grpc.insecure_channel(served.backend.grpc_address) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            request, timeout=RELOAD_TIMEOUT, metadata=(("authorization", f"Bearer {token}"),)
        )
    assert response.status.error_code == 0, response.status.error_message


def test_model_config_reload_with_zero_poll_period(unpolled, tfs_testdata):
    """Ported from tensorflow_model_server_test.py::testModelConfigReloadWithZeroPollPeriod: with a poll period
    of 0 the rewritten file is not applied (upstream waits poll period + 1 s, as this does); then the new config
    is applied through ModelService.HandleReloadConfigRequest, and half_plus_three answers instead."""
    config = unpolled.config
    half_plus_two, half_plus_three = tfs_testdata / HALF_PLUS_TWO, tfs_testdata / HALF_PLUS_THREE
    try:
        verify_predict_request(unpolled, half_plus_two, "half_plus_two", specify_output=False)
        config.write_text(model_config_text({"half_plus_three": half_plus_three}))
        time.sleep(0 + 1)  # upstream's poll_period + 1: time to apply the file, should it (wrongly) poll
        verify_predict_request(unpolled, half_plus_two, "half_plus_two", specify_output=False)
        assert not answers(unpolled, "half_plus_three")

        reload_config(unpolled, {"half_plus_three": half_plus_three})
        verify_predict_request(unpolled, half_plus_three, "half_plus_three", specify_output=False)
        assert not answers(unpolled, "half_plus_two")
    finally:  # as it started, for the other route
        config.write_text(model_config_text({"half_plus_two": half_plus_two}))
        reload_config(unpolled, {"half_plus_two": half_plus_two})
