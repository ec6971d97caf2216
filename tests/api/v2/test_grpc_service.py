"""The Open Inference Protocol's gRPC service over a real manager: a real GrpcServer on loopback port 0, called
through tritonclient's sync and asyncio clients and, for what they cannot send, its stub with hand-built messages.

The manager serves the bundled models, TF Serving's multi_io test model (when present) and a tiny half precision
model (tests/half_models.py). Expected outputs come from TensorFlow running the same SavedModels in this process;
expected metadata from the SavedModels' signatures as TensorFlow reads them.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from concurrent import futures
from pathlib import Path

import grpc
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from appliance import __version__
from appliance.api.security import TOKEN_MISSING, AccessPolicy
from appliance.api.v2.grpc_service import SERVICE_NAME, add_inference_service
from appliance.api.v2.repository import ModelRepository
from appliance.api.v2.statistics import ModelStatistics
from appliance.config import ModelConfig
from appliance.errors import ServingError
from appliance.grpc_server import GrpcServer

from ...conftest import MODELS, TFSERVING_TESTDATA, wait_for
from ...grpc_testing import HoldUntilDeadline, counted, loaded_manager, requests_counted
from ...half_models import build_half_model

MULTI_IO = TFSERVING_TESTDATA / "generated" / "multi_io"
needs_multi_io = pytest.mark.skipif(not MULTI_IO.is_dir(), reason=f"TF Serving's test models are not in {MULTI_IO}")
RNG = np.random.default_rng(19)
TOKEN = "control-token-for-tests"


@pytest.fixture(scope="module")
def half_model(tmp_path_factory) -> Path:
    return build_half_model(tmp_path_factory.mktemp("half"))


@pytest.fixture(scope="module")
def served(half_model):
    """(manager, metrics) over the bundled models, TF Serving's multi_io (when present) and the half model."""
    configs = [ModelConfig("half", half_model)]
    if MULTI_IO.is_dir():
        configs.append(ModelConfig("multi_io", MULTI_IO))
    with loaded_manager(configs, [MODELS]) as served:
        yield served


def start_server(manager, metrics, access: AccessPolicy | None = None) -> GrpcServer:
    def register(grpc_server: grpc.Server) -> list[str]:
        add_inference_service(grpc_server, manager, metrics)
        return [SERVICE_NAME]

    server = GrpcServer("127.0.0.1", 0, max_threads=16, access=access or AccessPolicy())
    server.start(register)
    server.set_serving(True)
    return server


@pytest.fixture(scope="module")
def server(served):
    grpc_server = start_server(*served)
    yield grpc_server
    grpc_server.stop(0)


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.address) as connected:
        yield connected


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


_LOADED: dict[Path, object] = {}


def in_tf(path: Path, signature: str = "serving_default", **inputs) -> dict[str, np.ndarray]:
    """The SavedModel at ``path`` run by TensorFlow in this process."""
    if path not in _LOADED:
        _LOADED[path] = tf.saved_model.load(str(path))
    outputs = _LOADED[path].signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {alias: value.numpy() for alias, value in outputs.items()}


def infer_input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def pixels(rows: int) -> np.ndarray:
    return RNG.uniform(0, 16, (rows, 64)).astype(np.float32)


def refused(call, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as raised:
        call(*args, **kwargs)
    return raised.value


def rpc_error(method, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        method(request, timeout=60)
    return raised.value


def tensor_shape(signature, alias: str) -> list[int]:
    """A signature input's or output's shape as TensorFlow reads it, -1 for a dimension of any size."""
    spec = signature.structured_input_signature[1].get(alias) or signature.structured_outputs[alias]
    return [-1 if d is None else d for d in spec.shape.as_list()]


# -- health and metadata ---------------------------------------------------------------------------------------


def test_live_ready_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert (metadata.name, metadata.version) == ("appliance", __version__)
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(metadata.extensions)


def test_model_metadata_is_the_signature_tensorflow_reads(client, served):
    manager, _ = served
    metadata = client.get_model_metadata("digits")
    signature = tf.saved_model.load(str(MODELS / "digits" / "2")).signatures["serving_default"]
    assert metadata.name == "digits"
    assert metadata.platform == "tensorflow_savedmodel"
    assert metadata.versions == [str(s.version) for s in manager.status("digits")]  # every one AVAILABLE
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("pixels", "FP32", tensor_shape(signature, "pixels"))
    ]
    expected = {"probabilities": "FP32", "class": "INT64"}
    assert {t.name: (t.datatype, list(t.shape)) for t in metadata.outputs} == {
        name: (datatype, tensor_shape(signature, name)) for name, datatype in expected.items()
    }
    assert client.get_model_metadata("digits", "1").name == "digits"


def test_model_ready_for_the_chosen_a_named_and_an_unknown_version(client, served):
    manager, _ = served
    versions = [s.version for s in manager.status("digits")]
    assert client.is_model_ready("digits")
    for version in versions:
        assert client.is_model_ready("digits", str(version))
    assert not client.is_model_ready("digits", str(max(versions) + 1))
    assert not client.is_model_ready("no_such_model")  # as Triton says of a model it does not serve
    error = refused(client.is_model_ready, "digits", "two")
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "version number" in error.message()


def test_model_config_has_triton_types_and_the_batching_maximum(client):
    config = client.get_model_config("digits").config
    limit = re.search(r"max_batch_size\s*\{\s*value:\s*(\d+)", (MODELS / "digits/2/batching_params.pbtxt").read_text())
    assert (config.name, config.platform, config.max_batch_size) == ("digits", "tensorflow_savedmodel", int(limit[1]))
    # batched: the dims leave out the batch dimension, as Triton's configurations do
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("pixels", triton.model_config_pb2.TYPE_FP32, [64])
    ]
    assert {t.name: list(t.dims) for t in config.output} == {"probabilities": [10], "class": []}


@needs_multi_io
def test_model_config_of_an_unbatched_model_has_every_dimension(client):
    config = client.get_model_config("multi_io").config
    assert config.max_batch_size == 0
    types = {t.name: (triton.model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.input}
    assert types == {"a": ("TYPE_FP32", [-1, 2]), "b": ("TYPE_INT32", [-1]), "tag": ("TYPE_STRING", [-1])}


# -- inference -------------------------------------------------------------------------------------------------


def test_infer_with_raw_data_matches_tensorflow(client):
    batch = pixels(3)
    result = client.infer("digits", [infer_input("pixels", batch, "FP32")], request_id="req-7")
    expected = in_tf(MODELS / "digits" / "2", pixels=batch)
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("digits", "2", "req-7")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("class"), expected["class"])


def test_infer_a_named_version(client):
    batch = pixels(2)
    result = client.infer("digits", [infer_input("pixels", batch, "FP32")], model_version="1")
    assert result.get_response().model_version == "1"
    expected = in_tf(MODELS / "digits" / "1", pixels=batch)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-5)


def test_outputs_requested_by_name_are_the_only_ones_answered(client):
    batch = pixels(4)
    result = client.infer(
        "digits", [infer_input("pixels", batch, "FP32")], outputs=[triton.InferRequestedOutput("class")]
    )
    assert [output.name for output in result.get_response().outputs] == ["class"]
    np.testing.assert_array_equal(result.as_numpy("class"), in_tf(MODELS / "digits" / "2", pixels=batch)["class"])


def test_bytes_input_through_the_signature_name_parameter(client):
    """digits' "image" signature takes PNG bytes; each sample PNG is named by the digit it shows."""
    samples = sorted((MODELS / "digits" / "samples").glob("*.png"))
    images = np.array([path.read_bytes() for path in samples], dtype=np.object_)
    result = client.infer(
        "digits", [infer_input("image_bytes", images, "BYTES")], parameters={"signature_name": "image"}
    )
    assert list(result.as_numpy("class")) == [int(path.stem) for path in samples]
    expected = in_tf(MODELS / "digits" / "2", "image", image_bytes=list(images))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-5)


@needs_multi_io
def test_infer_with_typed_contents(stub):
    """Inputs in each input's contents (fp32, int, bytes), as clients without raw data send them."""
    a = np.array([[1.5, -2.0], [3.25, 0.5]], dtype=np.float32)
    b = np.array([4, -9], dtype=np.int32)
    tag = [b"first", "zwei \u00e9".encode()]
    request = service_pb2.ModelInferRequest(model_name="multi_io", id="typed")
    request.inputs.add(name="a", datatype="FP32", shape=a.shape).contents.fp32_contents.extend(a.ravel())
    request.inputs.add(name="b", datatype="INT32", shape=b.shape).contents.int_contents.extend(b)
    request.inputs.add(name="tag", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(tag)
    request.outputs.add(name="total")
    request.outputs.add(name="is_pos")
    request.outputs.add(name="tag_bytes")
    response = stub.ModelInfer(request, timeout=60)
    result = triton.InferResult(response)  # the client's own reading of raw_output_contents
    expected = in_tf(MULTI_IO / "1", a=a, b=b, tag=np.array(tag, dtype=object))
    assert response.id == "typed"
    assert [(o.name, o.datatype) for o in response.outputs] == [
        ("total", "FP32"),
        ("is_pos", "BOOL"),
        ("tag_bytes", "BYTES"),
    ]
    np.testing.assert_allclose(result.as_numpy("total"), expected["total"])
    np.testing.assert_array_equal(result.as_numpy("is_pos"), expected["is_pos"])
    assert list(result.as_numpy("tag_bytes")) == list(expected["tag_bytes"])


@needs_multi_io
def test_every_output_datatype_through_raw_data(client):
    a = RNG.normal(size=(3, 2)).astype(np.float32)
    b = np.array([-1, 0, 7], dtype=np.int32)
    tag = np.array([b"x", b"", b"long tag"], dtype=np.object_)
    inputs = [infer_input("a", a, "FP32"), infer_input("b", b, "INT32"), infer_input("tag", tag, "BYTES")]
    result = client.infer("multi_io", inputs)
    expected = in_tf(MULTI_IO / "1", a=a, b=b, tag=tag)
    datatypes = {o.name: o.datatype for o in result.get_response().outputs}
    assert datatypes == {
        "total": "FP32",
        "b_plus_one": "INT64",
        "is_pos": "BOOL",
        "tag_bytes": "BYTES",
        "tag_text": "BYTES",
    }
    for name, value in expected.items():
        np.testing.assert_array_equal(result.as_numpy(name), value, err_msg=name)


def test_fp16_and_bf16_inputs_in_raw_data(client):
    x = np.array([[0.5, -1.25], [3.0, 100.0]], dtype=np.float16)
    result = client.infer("half", [infer_input("x", x, "FP16")])
    assert result.get_response().outputs[0].datatype == "FP16"
    np.testing.assert_array_equal(result.as_numpy("y"), 2 * x + np.float16(1))  # y = 2x + 1, in float16
    b = np.array([1.5, -3.0, 0.25], dtype=ml_dtypes.bfloat16)
    result = client.infer("half", [infer_input("b", b, "BF16")], parameters={"signature_name": "bfloat16"})
    assert result.get_response().outputs[0].datatype == "BF16"
    np.testing.assert_array_equal(result.as_numpy("c"), (2 * b.astype(np.float32) + 1).astype(ml_dtypes.bfloat16))


def test_fp16_has_no_contents_field(stub):
    request = service_pb2.ModelInferRequest(model_name="half")
    request.inputs.add(name="x", datatype="FP16", shape=[1, 2]).contents.fp32_contents.extend([1.0, 2.0])
    error = rpc_error(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in error.details()


# -- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "version", "inputs", "outputs", "status", "words"),
    [
        ("no_such_model", "", [("pixels", pixels(1), "FP32")], None, "NOT_FOUND", "no_such_model"),
        ("digits", "seven", [("pixels", pixels(1), "FP32")], None, "INVALID_ARGUMENT", "version number"),
        ("digits", "99", [("pixels", pixels(1), "FP32")], None, "NOT_FOUND", "99"),
        ("digits", "", [("pixels", pixels(1).astype(np.float64), "FP64")], None, "INVALID_ARGUMENT", "expects FP32"),
        ("digits", "", [("pixels", pixels(1), "FP32")], ["no_such_output"], "INVALID_ARGUMENT", "no_such_output"),
        ("digits", "", [("pixels", pixels(1)[:, :10], "FP32")], None, "INVALID_ARGUMENT", "pixels"),
    ],
    ids=["unknown model", "bad version", "version not served", "datatype mismatch", "unknown output", "bad shape"],
)
def test_bad_requests_get_their_status_and_the_server_keeps_serving(
    client, model, version, inputs, outputs, status, words
):
    tensors = [infer_input(*spec) for spec in inputs]
    requested = [triton.InferRequestedOutput(name) for name in outputs or ()]
    error = refused(client.infer, model, tensors, model_version=version, outputs=requested or None)
    assert error.status() == f"StatusCode.{status}"
    assert words in error.message()
    assert "Traceback" not in error.message()
    assert client.infer("digits", [infer_input("pixels", pixels(1), "FP32")]).as_numpy("class").shape == (1,)


def raw_request(raw: list[bytes], *shapes: list[int]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="digits", raw_input_contents=raw)
    for shape in shapes:
        request.inputs.add(name="pixels", datatype="FP32", shape=shape)
    return request


@pytest.mark.parametrize(
    ("request_message", "words"),
    [
        (raw_request([b"\0" * 4 * 63], [1, 64]), "252 bytes"),
        (raw_request([b"\0" * 4 * 64, b"\0" * 4 * 64], [1, 64]), "2 raw_input_contents for 1 inputs"),
        (raw_request([], [1, 64]), "0 values in contents.fp32_contents"),
        (raw_request([b"\0" * 4 * 64, b"\0" * 4 * 64], [1, 64], [1, 64]), "more than once"),
        (raw_request([b"\0" * 4 * 64], [1, -64]), "cannot be negative"),
    ],
    ids=["wrong raw size", "more raw contents than inputs", "no data", "an input twice", "negative dimension"],
)
def test_malformed_inputs_are_invalid_arguments(stub, request_message, words):
    error = rpc_error(stub.ModelInfer, request_message)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.details()


def test_a_datatype_the_protocol_has_not_is_named(stub):
    request = service_pb2.ModelInferRequest(model_name="digits", raw_input_contents=[b"\0" * 4])
    request.inputs.add(name="pixels", datatype="FP8", shape=[1])
    error = rpc_error(stub.ModelInfer, request)
    assert (error.code(), "'FP8'" in error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, True)


def test_the_calls_not_served_say_so(client, stub):
    error = refused(client.get_system_shared_memory_status)
    assert (error.status(), "shared memory" in error.message()) == ("StatusCode.UNIMPLEMENTED", True)
    error = refused(client.get_cuda_shared_memory_status)
    assert error.status() == "StatusCode.UNIMPLEMENTED"
    error = rpc_error(stub.TraceSetting, service_pb2.TraceSettingRequest())
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    stream = stub.ModelStreamInfer(iter([service_pb2.ModelInferRequest(model_name="digits")]), timeout=60)
    with pytest.raises(grpc.RpcError) as raised:
        list(stream)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- the repository and statistics extensions -------------------------------------------------------------------


def in_process(call):
    """(the answer, None) of an extension called in this process, or (None, its error)."""
    try:
        return call(), None
    except ServingError as e:
        return None, e


def test_repository_index_is_the_repository_extensions(client, served):
    index, error = in_process(lambda: ModelRepository(served[0]).index())
    if error is not None:
        refusal = refused(client.get_model_repository_index)
        assert (refusal.status(), refusal.message()) == (f"StatusCode.{error.code.name}", error.message)
        return
    models = client.get_model_repository_index().models
    assert [(m.name, m.version, m.state, m.reason) for m in models] == [
        (m["name"], m["version"], m["state"], m["reason"]) for m in index
    ]


def test_statistics_are_the_statistics_extensions(client, served):
    client.infer("iris", [infer_input("features", RNG.uniform(0, 5, (1, 4)).astype(np.float32), "FP32")])
    document, error = in_process(lambda: ModelStatistics(*served).models("iris", None))
    if error is not None:
        refusal = refused(client.get_inference_statistics, "iris")
        assert (refusal.status(), refusal.message()) == (f"StatusCode.{error.code.name}", error.message)
        return
    stats = client.get_inference_statistics("iris").model_stats
    assert [(s.name, s.version) for s in stats] == [(s["name"], s["version"]) for s in document["model_stats"]]
    assert sum(s.inference_count for s in stats) >= 1


def test_load_and_unload_need_the_control_token(served):
    """With --require_token_for_control, a load or unload without the token is refused before it runs."""
    manager, metrics = served
    server = start_server(manager, metrics, AccessPolicy(control_token=TOKEN))
    repository = ModelRepository(manager)
    try:
        with triton.InferenceServerClient(server.address) as client:
            for call, change in (
                (client.load_model, repository.load),
                (client.unload_model, repository.unload),
            ):
                error = refused(call, "no_such_model")
                assert (error.status(), error.message()) == ("StatusCode.UNAUTHENTICATED", TOKEN_MISSING)
                assert client.is_server_live(), "the other calls need no token"
                _, expected = in_process(functools.partial(change, "no_such_model"))
                assert expected is not None, "no model of that name can be loaded or unloaded"
                error = refused(call, "no_such_model", headers={"authorization": f"Bearer {TOKEN}"})
                assert (error.status(), error.message()) == (f"StatusCode.{expected.code.name}", expected.message)
    finally:
        server.stop(0)


def test_unload_and_load_over_grpc():
    """A model unloaded by RepositoryModelUnload is not ready and not served until RepositoryModelLoad."""
    features = RNG.uniform(0, 5, (2, 4)).astype(np.float32)
    token = {"authorization": f"Bearer {TOKEN}"}
    with loaded_manager([ModelConfig("iris", MODELS / "iris")], [], batching=None) as (manager, metrics):
        server = start_server(manager, metrics, AccessPolicy(control_token=TOKEN))
        try:
            with triton.InferenceServerClient(server.address) as client:
                client.unload_model("iris", headers=token)
                assert not client.is_model_ready("iris")
                error = refused(client.infer, "iris", [infer_input("features", features, "FP32")])
                assert error.status() == "StatusCode.NOT_FOUND"
                client.load_model("iris", headers=token)
                assert client.is_model_ready("iris")
                result = client.infer("iris", [infer_input("features", features, "FP32")])
                expected = in_tf(MODELS / "iris" / "2", features=features)
                np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-5)
        finally:
            server.stop(0)


# -- metrics, concurrency and the asyncio client -----------------------------------------------------------------


def test_calls_are_counted_by_api_model_version_and_code(client, served):
    _, metrics = served
    answered = {"model": "iris", "version": "2", "api": "grpc_v2_infer", "code": "OK", "backend": "local"}
    unknown = {"api": "grpc_v2_infer", "code": "NOT_FOUND"}  # a name no model has is no label
    before = requests_counted(metrics, **answered), requests_counted(metrics, **unknown)
    client.infer("iris", [infer_input("features", RNG.uniform(0, 5, (2, 4)).astype(np.float32), "FP32")])
    refused(client.infer, "no_such_model", [infer_input("features", np.zeros((1, 4), np.float32), "FP32")])
    assert (requests_counted(metrics, **answered), requests_counted(metrics, **unknown)) == (
        before[0] + 1,
        before[1] + 1,
    )
    before_live = requests_counted(metrics, api="grpc_v2_health", code="OK")
    client.is_server_live()
    assert requests_counted(metrics, api="grpc_v2_health", code="OK") == before_live + 1


def test_a_call_past_its_deadline_is_refused_without_running_the_model(served):
    manager, metrics = served
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[HoldUntilDeadline("/ModelInfer")])
    add_inference_service(server, manager, metrics)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    batches = {"model": "digits", "signature": "serving_default", "version": "2"}
    ran_before = counted(metrics, "appliance_batch_size_requests_count", **batches)
    late = {"api": "grpc_v2_infer", "code": "DEADLINE_EXCEEDED"}
    refused_before = requests_counted(metrics, **late)
    try:
        with triton.InferenceServerClient(f"127.0.0.1:{port}") as client:
            error = refused(client.infer, "digits", [infer_input("pixels", pixels(1), "FP32")], client_timeout=0.3)
        assert error.status() == "StatusCode.DEADLINE_EXCEEDED"
        assert wait_for(lambda: requests_counted(metrics, **late) > refused_before), "the servicer never answered"
        assert counted(metrics, "appliance_batch_size_requests_count", **batches) == ran_before  # digits did not run
    finally:
        server.stop(None).wait()


def test_concurrent_infers_from_threads_are_each_answered_right(server):
    """8 threads, 25 infers each, through the sync client: each answer is its own request's (batched or not: a
    batch's rows differ from a lone row's in the last bits)."""
    batches = [pixels(1 + i % 3) for i in range(8 * 25)]
    expected = [in_tf(MODELS / "digits" / "2", pixels=batch) for batch in batches]
    wrong: list[int] = []

    def run(worker: int) -> None:
        with triton.InferenceServerClient(server.address) as client:
            for index in range(worker, len(batches), 8):
                result = client.infer("digits", [infer_input("pixels", batches[index], "FP32")], request_id=str(index))
                if result.get_response().id != str(index) or not np.allclose(
                    result.as_numpy("probabilities"), expected[index]["probabilities"], atol=1e-5
                ):
                    wrong.append(index)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []


def test_the_asyncio_client(server):
    batches = [pixels(2) for _ in range(32)]
    expected = [in_tf(MODELS / "digits" / "2", pixels=batch)["class"] for batch in batches]

    async def calls():
        async with triton_aio.InferenceServerClient(server.address) as client:
            assert await client.is_server_live()
            assert await client.is_server_ready()
            assert (await client.get_server_metadata()).name == "appliance"
            assert (await client.get_model_metadata("iris")).inputs[0].name == "features"
            assert await client.is_model_ready("iris", "1")
            assert not await client.is_model_ready("no_such_model")
            with pytest.raises(InferenceServerException) as raised:
                await client.infer("no_such_model", [infer_input("pixels", batches[0], "FP32")])
            assert raised.value.status() == "StatusCode.NOT_FOUND"
            results = await asyncio.gather(
                *(client.infer("digits", [infer_input("pixels", batch, "FP32")]) for batch in batches)
            )
            return [result.as_numpy("class") for result in results]

    answers = asyncio.run(calls())
    for answer, want in zip(answers, expected, strict=True):
        np.testing.assert_array_equal(answer, want)


# -- in the application ----------------------------------------------------------------------------------------


def test_the_appliance_process_serves_it_beside_tf_serving(bundled_server):
    """`appliance serve` answers v2 calls on its gRPC port; the health service and reflection name the service."""
    with triton.InferenceServerClient(bundled_server.grpc_address) as client:
        assert client.is_server_live()
        batch = pixels(2)
        result = client.infer("digits", [infer_input("pixels", batch, "FP32")])
        np.testing.assert_array_equal(result.as_numpy("class"), in_tf(MODELS / "digits" / "2", pixels=batch)["class"])
    with grpc.insecure_channel(bundled_server.grpc_address) as channel:
        for name in (SERVICE_NAME, "GRPCInferenceService"):  # the full name, and the short one as TF Serving's
            request = health_pb2.HealthCheckRequest(service=name)
            status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=60).status
            assert status == health_pb2.HealthCheckResponse.SERVING, name
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (listed,) = stub.ServerReflectionInfo(iter([request]), timeout=60)
        assert SERVICE_NAME in {service.name for service in listed.list_services_response.service}
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
        (described,) = stub.ServerReflectionInfo(iter([request]), timeout=60)
        assert described.WhichOneof("message_response") == "file_descriptor_response"
