"""TF Serving's gRPC PredictionService over a real manager: a real grpc server on loopback, called through
``tensorflow-serving-api``'s stubs as TF Serving's example clients call it.

The manager serves the bundled models, TF Serving's own test models (y = 0.5x + 2, y2 = 0.5x + 3 from a
tf.Example's x) and a tiny half precision model (tests/half_models.py). Expected values come from the models run
in this process or from their documented arithmetic; expected errors are TF Serving's words.
"""

from __future__ import annotations

import time
from concurrent import futures
from pathlib import Path

import grpc
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from appliance.api.grpc_prediction import add_prediction_service
from appliance.config import ModelConfig, PolicyKind, RemoteSettings, Routing, VersionPolicy
from appliance.serving.remote import RemoteTFServing
from appliance.serving.routing import Router

from ..conftest import MODELS, TFSERVING_TESTDATA
from ..grpc_testing import HoldUntilDeadline, loaded_manager, requests_counted, samples
from ..half_models import build_half_model

RNG = np.random.default_rng(5)


class GrpcServer:
    """A grpc server on a free loopback port serving ``manager``; ``stub`` calls it."""

    def __init__(self, manager, metrics, *, interceptors=(), router=None, tensor_content=False):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
        add_prediction_service(self.server, manager, router=router, metrics=metrics, tensor_content=tensor_content)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def stop(self):
        self.channel.close()
        self.server.stop(None).wait()


@pytest.fixture(scope="module")
def half_model(tmp_path_factory) -> Path:
    return build_half_model(tmp_path_factory.mktemp("half"))


@pytest.fixture(scope="module")
def served(half_model):
    """(manager, metrics) over the bundled models, TF Serving's test models (when present) and the half model."""
    configs = [ModelConfig("half", half_model)]
    if TFSERVING_TESTDATA.is_dir():
        configs += [
            ModelConfig("default", TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu"),
            ModelConfig(
                "two_versions",
                TFSERVING_TESTDATA / "saved_model_half_plus_two_2_versions",
                VersionPolicy(PolicyKind.ALL),
                {"stable": 123, "canary": 124},
            ),
            ModelConfig("multi_io", TFSERVING_TESTDATA / "generated" / "multi_io"),
            ModelConfig("tf2", TFSERVING_TESTDATA / "saved_model_half_plus_two_tf2_cpu"),
        ]
    with loaded_manager(configs, [MODELS]) as served:
        yield served


@pytest.fixture(scope="module")
def server(served):
    grpc_server = GrpcServer(*served)
    yield grpc_server
    grpc_server.stop()


@pytest.fixture(scope="module")
def stub(server):
    return server.stub


def spec(name: str, *, version: int | None = None, label: str | None = None, signature_name: str = ""):
    model_spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    if version is not None:
        model_spec.version.value = version
    if label is not None:
        model_spec.version_label = label
    return model_spec


def predict_request(name: str, inputs: dict, output_filter=(), **spec_fields) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=spec(name, **spec_fields), output_filter=list(output_filter))
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(
            value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
        )
    return request


def rpc_error(method, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        method(request, timeout=60)
    return raised.value


def example(**features) -> example_pb2.Example:
    """A tf.train.Example of float features."""
    value = example_pb2.Example()
    for name, floats in features.items():
        value.features.feature[name].float_list.value.extend(np.atleast_1d(floats))
    return value


def in_process(path: Path, signature: str, **inputs) -> dict[str, np.ndarray]:
    """The SavedModel at ``path`` run in this process (TensorFlow's own loader and call)."""
    outputs = tf.saved_model.load(str(path)).signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {alias: value.numpy() for alias, value in outputs.items()}


def half_plus_two(x):
    return 0.5 * np.asarray(x, np.float32) + 2


@pytest.fixture
def tfs(tfs_testdata):
    """TF Serving's test models are served (skips with the reason when they are absent)."""
    return tfs_testdata


# -- Predict -----------------------------------------------------------------------------------------------------


def test_predict_digits_answers_as_the_model_run_in_process(stub):
    pixels = RNG.uniform(0, 16, (3, 64)).astype(np.float32)
    response = stub.Predict(predict_request("digits", {"pixels": pixels}), timeout=60)
    expected = in_process(MODELS / "digits" / "2", "serving_default", pixels=pixels)
    assert set(response.outputs) == set(expected) == {"class", "probabilities"}
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["class"]), expected["class"])
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"], rtol=1e-6)
    assert list(response.outputs["class"].int64_val) == expected["class"].tolist()  # typed fields, as TF Serving
    assert not response.outputs["probabilities"].tensor_content
    assert response.model_spec == spec("digits", version=2, signature_name="serving_default")


def test_predict_half_plus_two_as_tf_servings_client(stub, tfs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [2.0], [5.0]], dtype=tf.float32))
    result = stub.Predict(request, timeout=60)
    assert list(result.outputs["y"].float_val) == [2.5, 3.0, 4.5]
    assert [d.size for d in result.outputs["y"].tensor_shape.dim] == [3, 1]
    assert result.model_spec == spec("default", version=123, signature_name="serving_default")


@pytest.mark.parametrize(
    ("choice", "version"),
    [({"version": 123}, 123), ({"version": 124}, 124), ({"label": "stable"}, 123), ({"label": "canary"}, 124)],
)
def test_predict_by_version_and_by_label(stub, tfs, choice, version):
    x = np.array([[3.0]], np.float32)
    response = stub.Predict(predict_request("two_versions", {"x": x}, **choice), timeout=60)
    assert response.model_spec.version.value == version
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), half_plus_two(x))


def test_typed_fields_and_tensor_content_inputs_answer_alike(stub, tfs):
    typed = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 7.0])
    typed.tensor_shape.dim.add(size=2)
    typed.tensor_shape.dim.add(size=1)
    content = tf.make_tensor_proto(np.array([[1.0], [7.0]], np.float32))
    assert content.tensor_content and not typed.tensor_content
    answers = [stub.Predict(predict_request("default", {"x": t}), timeout=60).outputs["y"] for t in (typed, content)]
    assert answers[0] == answers[1]
    assert list(answers[0].float_val) == half_plus_two([1.0, 7.0]).tolist()


def test_one_typed_value_fills_the_whole_shape(stub, tfs):
    filled = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[4.0])
    filled.tensor_shape.dim.add(size=3)
    filled.tensor_shape.dim.add(size=1)
    response = stub.Predict(predict_request("default", {"x": filled}), timeout=60)
    assert list(response.outputs["y"].float_val) == [4.0] * 3


def test_output_filter_returns_only_the_outputs_named(stub, tfs):
    inputs = {
        "a": np.array([[1.0, 2.0], [-3.0, 0.5]], np.float32),
        "b": np.array([4, -9], np.int32),
        "tag": np.array([b"x", "é".encode()], object),
    }
    everything = stub.Predict(predict_request("multi_io", inputs), timeout=60).outputs
    assert set(everything) == {"total", "b_plus_one", "is_pos", "tag_bytes", "tag_text"}
    filtered = stub.Predict(predict_request("multi_io", inputs, output_filter=["total", "is_pos"]), timeout=60)
    assert set(filtered.outputs) == {"total", "is_pos"}
    assert list(filtered.outputs["total"].float_val) == [7.0, -11.5]  # a0 + a1 + b
    assert list(filtered.outputs["is_pos"].bool_val) == list(everything["is_pos"].bool_val)


def test_tensor_content_responses(served, tfs):
    server = GrpcServer(*served, tensor_content=True)
    try:
        x = np.array([[1.0], [2.0]], np.float32)
        y = server.stub.Predict(predict_request("default", {"x": x}), timeout=60).outputs["y"]
    finally:
        server.stop()
    assert y.tensor_content and not y.float_val
    np.testing.assert_array_equal(tf.make_ndarray(y), half_plus_two(x))


@pytest.mark.parametrize("form", ["tensor_content", "half_val"])
def test_half_inputs(stub, half_model, form):
    x = np.array([[0.5, -1.25], [3.0, 1024.0]], np.float16)
    tensor = tf.make_tensor_proto(x)
    if form == "half_val":  # the typed field: each half's 16 bits in an int32
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_HALF, tensor_shape=tensor.tensor_shape)
        tensor.half_val.extend(x.view(np.uint16).ravel().tolist())
    assert tensor.dtype == types_pb2.DT_HALF
    y = stub.Predict(predict_request("half", {"x": tensor}), timeout=60).outputs["y"]
    assert y.dtype == types_pb2.DT_HALF
    np.testing.assert_array_equal(tf.make_ndarray(y), in_process(half_model / "1", "serving_default", x=x)["y"])


def test_bfloat16_inputs(stub, half_model):
    b = np.array([0.5, -3.0, 100.0], ml_dtypes.bfloat16)
    request = predict_request("half", {"b": tf.make_tensor_proto(b)}, signature_name="bfloat16")
    assert request.inputs["b"].dtype == types_pb2.DT_BFLOAT16
    response = stub.Predict(request, timeout=60)
    assert response.outputs["c"].dtype == types_pb2.DT_BFLOAT16
    expected = in_process(half_model / "1", "bfloat16", b=b)["c"]
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["c"]), expected)
    assert response.model_spec.signature_name == "bfloat16"


# -- Predict's errors ----------------------------------------------------------------------------------------------

X = np.array([[1.0]], np.float32)


@pytest.mark.parametrize(
    ("request_fields", "code", "message"),
    [
        ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)."),
        (
            {"name": "default", "version": 999},
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(default, 999).",
        ),
        (
            {"name": "two_versions", "label": "nope"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope.",
        ),
        (
            {"name": "default", "signature_name": "nope"},
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ],
)
def test_unknown_model_version_label_signature(stub, tfs, request_fields, code, message):
    fields = dict(request_fields)
    error = rpc_error(stub.Predict, predict_request(fields.pop("name"), {"x": X}, **fields))
    assert error.code() is code
    assert error.details().startswith(message), error.details()


def test_a_request_without_model_spec(stub):
    error = rpc_error(stub.Predict, predict_pb2.PredictRequest())
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_a_version_and_a_label_cannot_both_reach_the_server(server, tfs):
    """ModelSpec's version and version_label are a oneof: of a request that carries both on the wire, the last
    one read is the request's, as TF Serving's parser takes it too (REST's "Both ..." error cannot arise)."""
    versioned = predict_request("two_versions", {"x": X}, version=124).SerializeToString()
    labelled = predict_pb2.PredictRequest(model_spec=spec("two_versions", label="stable")).SerializeToString()
    predict = server.channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=lambda raw: raw,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    assert predict(versioned + labelled, timeout=60).model_spec.version.value == 123
    assert predict(labelled + versioned, timeout=60).model_spec.version.value == 124


@pytest.mark.parametrize(
    ("output_filter", "message"),
    [
        (["nope"], "output tensor alias not found in signature: nope Outputs expected to be in the set {y}."),
        (["y", "y"], "duplicate output tensor alias: y"),
    ],
)
def test_bad_output_filters(stub, tfs, output_filter, message):
    error = rpc_error(stub.Predict, predict_request("default", {"x": X}, output_filter=output_filter))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"pixels": np.zeros((1, 64), np.float64)}, 'input "pixels" expects float32 [-1, 64]; got float64 [1, 64]'),
        ({"pixels": np.zeros((1, 3), np.float32)}, 'input "pixels" expects float32 [-1, 64]; got float32 [1, 3]'),
        ({"pixels": np.zeros((64,), np.float32)}, 'input "pixels" expects float32 [-1, 64]; got float32 [64]'),
        (
            {"nope": np.zeros((1, 64), np.float32)},
            "input tensor alias not found in signature: nope. Inputs expected to be in the set {pixels}.",
        ),
        (
            {},
            "input size does not match signature: 0!=1 len({}) != len({pixels}). Sent extra: {}. "
            "Missing but required: {pixels}.",
        ),
    ],
)
def test_inputs_off_the_signature_are_refused_as_rest_refuses_them(stub, inputs, message):
    error = rpc_error(stub.Predict, predict_request("digits", inputs))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_a_tensor_that_cannot_be_read_names_its_input(stub):
    broken = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\x00" * 7)
    broken.tensor_shape.dim.add(size=1)
    broken.tensor_shape.dim.add(size=64)
    error = rpc_error(stub.Predict, predict_request("digits", {"pixels": broken}))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "pixels" in error.details()


# -- Classify, Regress, MultiInference ---------------------------------------------------------------------------


def classification_request(name, signature_name, examples, context=None, **choice):
    request = classification_pb2.ClassificationRequest(model_spec=spec(name, signature_name=signature_name, **choice))
    fill_input(request.input, examples, context)
    return request


def regression_request(name, signature_name, examples, context=None, **choice):
    request = regression_pb2.RegressionRequest(model_spec=spec(name, signature_name=signature_name, **choice))
    fill_input(request.input, examples, context)
    return request


def fill_input(request_input, examples, context):
    if context is None:
        request_input.example_list.examples.extend(examples)
    else:
        request_input.example_list_with_context.context.CopyFrom(context)
        request_input.example_list_with_context.examples.extend(examples)


def test_classify_half_plus_two(stub, tfs):
    response = stub.Classify(classification_request("default", "classify_x_to_y", [example(x=2.0), example(x=-4.0)]))
    scores = [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]
    assert scores == [[("", float(half_plus_two(2.0)))], [("", float(half_plus_two(-4.0)))]]
    assert response.model_spec == spec("default", version=123, signature_name="classify_x_to_y")


def test_classify_digits_labels_as_the_model_run_in_process(stub):
    pixels = RNG.uniform(0, 16, (2, 64)).astype(np.float32)
    examples = [example(pixels=row) for row in pixels]
    response = stub.Classify(classification_request("digits", "classify", examples), timeout=60)
    serialized = np.array([e.SerializeToString() for e in examples], object)
    expected = in_process(MODELS / "digits" / "2", "classify", inputs=serialized)
    for row, classes, scores in zip(response.result.classifications, expected["classes"], expected["scores"]):
        assert [c.label for c in row.classes] == [c.decode() for c in classes]
        np.testing.assert_allclose([c.score for c in row.classes], scores, rtol=1e-6)


def test_regress_half_plus_two_with_a_context(stub, tfs):
    response = stub.Regress(regression_request("default", "regress_x_to_y", [example(x=2.0), example(x=6.0)]))
    assert [r.value for r in response.result.regressions] == half_plus_two([2.0, 6.0]).tolist()
    assert response.model_spec == spec("default", version=123, signature_name="regress_x_to_y")
    # The context's features are every example's, unless the example has its own (y2 = 0.5x + 3).
    with_context = regression_request("default", "regress_x_to_y2", [example(), example(x=4.0)], context=example(x=2.0))
    assert [r.value for r in stub.Regress(with_context).result.regressions] == [4.0, 5.0]


def test_every_feature_kind_reaches_the_model_as_sent(stub, tfs):
    extra = example(x=2.0)
    extra.features.feature["note"].bytes_list.value.append(b"\xff not UTF-8")
    extra.features.feature["count"].int64_list.value.extend([2**62, -1])
    response = stub.Regress(regression_request("default", "regress_x_to_y", [extra]), timeout=60)
    assert [r.value for r in response.result.regressions] == [3.0]  # features the model does not parse are left
    wrong_kind = example_pb2.Example()
    wrong_kind.features.feature["x"].int64_list.value.append(2)
    error = rpc_error(stub.Regress, regression_request("default", "regress_x_to_y", [wrong_kind]))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "Data types don't match. Data type: int64 but expected type: float" in error.details()


def test_regress_by_label(stub, tfs):
    request = regression_request("two_versions", "regress_x_to_y", [example(x=1.0)], label="canary")
    response = stub.Regress(request, timeout=60)
    assert response.model_spec.version.value == 124 and response.result.regressions[0].value == 2.5


@pytest.mark.parametrize(
    ("method", "request_fields", "code", "message"),
    [
        ("Classify", {"examples": []}, grpc.StatusCode.INVALID_ARGUMENT, "Input is empty."),
        ("Regress", {"examples": []}, grpc.StatusCode.INVALID_ARGUMENT, "Input is empty."),
        (
            "Classify",
            {"signature_name": "serving_default"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "No classification inputs found in SignatureDef: serving_default",
        ),
        (
            "Regress",
            {"signature_name": "nope"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "No signature was found with the name: nope",
        ),
        ("Regress", {"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ],
)
def test_classify_and_regress_errors(stub, tfs, method, request_fields, code, message):
    fields = {"name": "default", "signature_name": "regress_x_to_y", "examples": [example(x=1.0)]} | request_fields
    make = classification_request if method == "Classify" else regression_request
    error = rpc_error(getattr(stub, method), make(fields["name"], fields["signature_name"], fields["examples"]))
    assert error.code() is code
    assert error.details().startswith(message), error.details()


def multi_inference_request(tasks, examples):
    request = inference_pb2.MultiInferenceRequest()
    for model, signature_name, method in tasks:
        request.tasks.add(model_spec=spec(model, signature_name=signature_name), method_name=method)
    fill_input(request.input, examples, None)
    return request


CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"


def test_multi_inference_runs_every_task_on_one_input(stub, tfs):
    tasks = [("default", "classify_x_to_y", CLASSIFY), ("default", "regress_x_to_y2", REGRESS)]
    response = stub.MultiInference(multi_inference_request(tasks, [example(x=2.0), example(x=8.0)]), timeout=60)
    classify, regress = response.results
    assert [row.classes[0].score for row in classify.classification_result.classifications] == [3.0, 6.0]
    assert [r.value for r in regress.regression_result.regressions] == [4.0, 7.0]  # y2 = 0.5x + 3
    assert classify.model_spec == spec("default", version=123, signature_name="classify_x_to_y")
    assert regress.model_spec == spec("default", version=123, signature_name="regress_x_to_y2")


@pytest.mark.parametrize(
    ("tasks", "code", "message"),
    [
        (
            [("default", "regress_x_to_y", REGRESS), ("two_versions", "regress_x_to_y2", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
        ),
        (
            [("default", "regress_x_to_y", REGRESS), ("default", "regress_x_to_y", CLASSIFY)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            [("default", "nope", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Requested signature not found in model graph: nope",
        ),
        (
            [("default", "regress_x_to_y", "tensorflow/serving/predict")],
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        ([], grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    ],
)
def test_multi_inference_checks_every_task(stub, tfs, tasks, code, message):
    error = rpc_error(stub.MultiInference, multi_inference_request(tasks, [example(x=1.0)]))
    assert (error.code(), error.details()) == (code, message)


# -- GetModelMetadata --------------------------------------------------------------------------------------------


def saved_signature_defs(path: Path):
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    return saved_model.meta_graphs[0].signature_def


@pytest.mark.parametrize(
    ("name", "version", "path"),
    [
        ("digits", 2, MODELS / "digits" / "2"),
        ("default", 123, TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"),
        ("tf2", 123, TFSERVING_TESTDATA / "saved_model_half_plus_two_tf2_cpu" / "00000123"),  # a default input
    ],
)
def test_metadata_is_the_saved_models_signature_defs(stub, request, name, version, path):
    if name != "digits":
        request.getfixturevalue("tfs")
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec(name), metadata_field=["signature_def"]
    )
    response = stub.GetModelMetadata(metadata_request, timeout=60)
    assert response.model_spec == model_pb2.ModelSpec(name=name, version={"value": version})
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_defs)
    assert dict(signature_defs.signature_def) == dict(saved_signature_defs(path))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["signature_def", "nope"], "Metadata field nope is not supported"),
        ([], "GetModelMetadataRequest must specify at least one metadata_field"),
    ],
)
def test_metadata_fields_other_than_signature_def(stub, fields, message):
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec("digits"), metadata_field=fields)
    error = rpc_error(stub.GetModelMetadata, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


# -- deadlines and metrics -----------------------------------------------------------------------------------------


def test_a_request_past_its_deadline_is_refused_without_running_the_model(served):
    manager, metrics = served
    server = GrpcServer(manager, metrics, interceptors=[HoldUntilDeadline("/Predict")])
    batches = (
        "appliance_batch_size_requests_count",
        (("model", "digits"), ("signature", "serving_default"), ("version", "2")),
    )
    try:
        ran_before = samples(metrics).get(batches, 0.0)
        refused_before = requests_counted(metrics, api="grpc_predict", code="DEADLINE_EXCEEDED")
        request = predict_request("digits", {"pixels": np.zeros((1, 64), np.float32)})
        with pytest.raises(grpc.RpcError) as late:
            server.stub.Predict(request, timeout=0.3)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 30
        while requests_counted(metrics, api="grpc_predict", code="DEADLINE_EXCEEDED") == refused_before:
            assert time.monotonic() < deadline, "the servicer never answered the late request"
            time.sleep(0.05)
        assert samples(metrics).get(batches, 0.0) == ran_before  # digits did not run
    finally:
        server.stop()


def test_calls_are_counted_under_the_appliances_and_tf_servings_names(stub, served, tfs):
    _, metrics = served
    before = samples(metrics)
    stub.Predict(predict_request("default", {"x": X}), timeout=60)
    rpc_error(stub.Predict, predict_request("nope", {"x": X}))
    stub.Regress(regression_request("default", "regress_x_to_y", [example(x=1.0)]), timeout=60)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec("default"), metadata_field=["signature_def"]
    )
    stub.GetModelMetadata(metadata, timeout=60)
    after = samples(metrics)

    def added(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    served_labels = {"model": "default", "version": "123", "backend": "local"}
    assert added("appliance_requests_total", api="grpc_predict", code="OK", **served_labels) == 1
    assert (
        added("appliance_requests_total", api="grpc_predict", code="NOT_FOUND", model="", version="", backend="") == 1
    )
    assert added("appliance_requests_total", api="grpc_regress", code="OK", **served_labels) == 1
    assert added("appliance_requests_total", api="grpc_get_model_metadata", code="OK", **served_labels) == 1
    # TF Serving counts Predict, Classify and Regress (entrypoint GRPC), not GetModelMetadata.
    assert added(":tensorflow:serving:request_count", model_name="default", status="OK") == 2
    assert added(":tensorflow:serving:request_count", model_name="", status="NOT_FOUND") == 1
    for api in ("Predict", "Regress"):
        assert added(":tensorflow:serving:request_latency_count", model_name="default", API=api, entrypoint="GRPC") == 1


def test_a_model_only_the_remote_serves_is_unimplemented_until_grpc_forwards_there(served):
    manager, metrics = served
    settings = RemoteSettings(url="http://127.0.0.1:9", routing={"iris": Routing.REMOTE_ONLY})
    server = GrpcServer(manager, metrics, router=Router(manager, RemoteTFServing(settings, ["digits", "iris"])))
    try:
        pixels = {"pixels": np.zeros((1, 64), np.float32)}
        assert server.stub.Predict(predict_request("digits", pixels), timeout=60).model_spec.version.value == 2
        for name in ("iris", "elsewhere"):  # routed to the remote only; not served here at all
            error = rpc_error(server.stub.Predict, predict_request(name, {"features": np.zeros((1, 4), np.float32)}))
            assert error.code() is grpc.StatusCode.UNIMPLEMENTED
            assert error.details().startswith(f"Model {name} is served by the remote TF Serving only")
    finally:
        server.stop()
