"""Triton's clients, unchanged, against real ``appliance serve`` processes: the Open Inference Protocol (KServe v2).

``tritonclient.http`` and ``tritonclient.grpc``, sync and asyncio: health, server and model metadata, model
readiness, inference with JSON and with binary data (Triton's binary tensor data extension; gRPC's raw contents),
outputs asked for by name, versions, request ids, errors, the statistics and model repository extensions, and a
concurrent load through each client. One process serves the bundled models and one TF Serving's test models, each
started once for the module. Every answer is checked against the same model called another way: the same
process's TF Serving REST API (``POST /v1/models/<name>:predict``, ``GET /v1/models/<name>/metadata``),
TensorFlow itself on the SavedModel, or the digit a sample image shows (tests/v2_expected.py). (KServe's clients:
tests/test_v2_kserve_client.py.)

    PYTHONPATH=$PWD python -m pytest tests/test_v2_clients.py -q
"""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpclient_aio
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from .conftest import ApplianceProcess
from .test_tfserving_example_client import SAMPLES, label_of
from .v2_expected import (
    CONCURRENCY,
    ROUNDS,
    TIMEOUT,
    UNKNOWN,
    assert_metadata_matches,
    assert_rows,
    assert_same,
    available_versions,
    digit_pixels,
    load_multi_io,
    random_pixels,
    tfs_cases,
    tfs_predict,
    tfs_signature,
)

# -- the servers ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """The bundled models (digits, iris), as ``appliance serve`` serves them by default."""
    server = ApplianceProcess(home=tmp_path_factory.mktemp("v2-bundled-home"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tfs(tfs_config, tmp_path_factory):
    """TF Serving's test models through tests/conftest.py's models.config (default, two_versions, matrix, ...)."""
    server = ApplianceProcess("--model_config_file", str(tfs_config), home=tmp_path_factory.mktemp("v2-tfs-home"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def multi_io(tfs_testdata):
    """generated/multi_io's serving_default signature, called with TensorFlow directly."""
    return load_multi_io(tfs_testdata)


def address(server: ApplianceProcess) -> str:
    """The REST address as tritonclient.http takes it: host:port, no scheme."""
    return server.url.removeprefix("http://")


def http_inputs(arrays: dict, binary: bool, module=httpclient) -> list:
    """tritonclient.http InferInputs (``module``: or .aio's) of arrays by name, each sent as binary data or JSON."""
    inputs = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def grpc_inputs(arrays: dict, module=grpcclient) -> list:
    """tritonclient.grpc InferInputs (``module``: or .aio's) of arrays by name, sent as raw contents."""
    inputs = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def assert_http_encoding(result, binary: bool) -> None:
    """Each output of a REST answer came the way it was asked for: raw bytes after the JSON, or JSON ``data``."""
    for output in result.get_response()["outputs"]:
        assert ("binary_data_size" in (output.get("parameters") or {})) == binary, output
        assert ("data" in output) != binary, output


# -- tritonclient.http ---------------------------------------------------------------------------------------------


def test_http_health_and_server_metadata(bundled):
    with httpclient.InferenceServerClient(address(bundled)) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        metadata = client.get_server_metadata()
        assert metadata["name"]
        assert metadata["version"]
        assert {"binary_tensor_data", "model_repository", "statistics"} <= set(metadata["extensions"])


@pytest.mark.parametrize(
    "served, model",
    [
        ("bundled", "digits"),
        ("bundled", "iris"),
        ("tfs", "default"),
        ("tfs", "two_versions"),
        ("tfs", "matrix"),
        ("tfs", "multi_io"),
    ],
)
def test_http_model_metadata_and_readiness(request, served, model):
    server = request.getfixturevalue(served)
    with httpclient.InferenceServerClient(address(server)) as client:
        metadata = client.get_model_metadata(model)
        tensors = [{t["name"]: (t["datatype"], t["shape"]) for t in metadata[key]} for key in ("inputs", "outputs")]
        assert_metadata_matches(server, model, metadata["name"], metadata["versions"], metadata["platform"], *tensors)
        assert client.is_model_ready(model)
        for version in available_versions(server, model):
            assert client.is_model_ready(model, version)
            assert client.get_model_metadata(model, version)["name"] == model
        assert not client.is_model_ready(model, "999")
        assert not client.is_model_ready(UNKNOWN)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_http_infer_digits(bundled, binary):
    """Each sample's digit, and the probabilities TF Serving's API gives for the same rows."""
    pixels, labels = digit_pixels()
    expected = tfs_predict(bundled, "digits", {"pixels": pixels})
    with httpclient.InferenceServerClient(address(bundled)) as client:
        outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "class")]
        result = client.infer("digits", http_inputs({"pixels": pixels}, binary), outputs=outputs, request_id="r-1")
    assert_http_encoding(result, binary)
    assert result.get_response()["model_name"] == "digits"
    assert result.get_response()["model_version"] in available_versions(bundled, "digits")
    assert result.get_response()["id"] == "r-1"
    assert result.as_numpy("class").tolist() == labels
    for name, value in expected.items():
        assert_same(name, result.as_numpy(name), value)


def test_http_infer_binary_by_default(bundled):
    """tritonclient's defaults (binary inputs, no outputs named: ``binary_data_output``) give binary outputs."""
    pixels = random_pixels(4)
    with httpclient.InferenceServerClient(address(bundled)) as client:
        inputs = [httpclient.InferInput("pixels", list(pixels.shape), "FP32")]
        inputs[0].set_data_from_numpy(pixels)
        result = client.infer("digits", inputs)
    assert_http_encoding(result, binary=True)
    for name, value in tfs_predict(bundled, "digits", {"pixels": pixels}).items():
        assert_same(name, result.as_numpy(name), value)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_http_outputs_by_name(bundled, binary):
    pixels = random_pixels(3)
    with httpclient.InferenceServerClient(address(bundled)) as client:
        outputs = [httpclient.InferRequestedOutput("class", binary_data=binary)]
        result = client.infer("digits", http_inputs({"pixels": pixels}, binary), outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["class"]
    assert result.as_numpy("probabilities") is None
    assert_same("class", result.as_numpy("class"), tfs_predict(bundled, "digits", {"pixels": pixels})["class"])


def test_http_bytes_input_through_another_signature(bundled):
    """The digits model's ``image`` signature (BYTES: PNG files), named by the ``signature_name`` parameter."""
    images = np.array([s.read_bytes() for s in SAMPLES], dtype=object)
    with httpclient.InferenceServerClient(address(bundled)) as client:
        inputs = [httpclient.InferInput("image_bytes", [len(images)], "BYTES")]
        inputs[0].set_data_from_numpy(images)
        result = client.infer("digits", inputs, parameters={"signature_name": "image"})
    assert result.as_numpy("class").tolist() == [label_of(s) for s in SAMPLES]
    b64 = [{"b64": base64.b64encode(image).decode()} for image in images]
    expected = tfs_predict(bundled, "digits", {"image_bytes": b64}, signature="image")
    for name, value in expected.items():
        assert_same(name, result.as_numpy(name), value)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_http_infer_tf_serving_models(tfs, multi_io, binary):
    """FP32 of several ranks, a TF1 model of unknown shapes, and INT32/BYTES inputs with INT64/BOOL/BYTES outputs."""
    with httpclient.InferenceServerClient(address(tfs)) as client:
        for model, inputs, expected in tfs_cases(tfs, multi_io):
            outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in expected]
            result = client.infer(model, http_inputs(inputs, binary), outputs=outputs)
            assert_http_encoding(result, binary)
            for name, value in expected.items():
                assert_same(f"{model}/{name}", result.as_numpy(name), value)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate", None])
def test_http_compressed_bodies(bundled, algorithm):
    """tritonclient's request_compression_algorithm (a gzip or deflate body) and response_compression_algorithm."""
    pixels = random_pixels(5, seed=3)
    with httpclient.InferenceServerClient(address(bundled)) as client:
        result = client.infer(
            "digits",
            http_inputs({"pixels": pixels}, True),
            request_compression_algorithm=algorithm,
            response_compression_algorithm="gzip",
        )
    for name, value in tfs_predict(bundled, "digits", {"pixels": pixels}).items():
        assert_same(name, result.as_numpy(name), value)


def test_http_concurrent_load_through_async_infer(bundled):
    """The sync client's own concurrency: ``async_infer`` on a pool of CONCURRENCY connections, ROUNDS times."""
    rows = random_pixels(CONCURRENCY * ROUNDS, seed=5)
    expected = tfs_predict(bundled, "digits", {"pixels": rows})
    with httpclient.InferenceServerClient(address(bundled), concurrency=CONCURRENCY) as client:
        for round_ in range(ROUNDS):
            first = round_ * CONCURRENCY
            pending = [
                client.async_infer("digits", http_inputs({"pixels": rows[i : i + 1]}, i % 2 == 0))
                for i in range(first, first + CONCURRENCY)
            ]
            assert_rows([p.get_result(timeout=TIMEOUT) for p in pending], expected, first)


def test_http_versions(tfs):
    x = np.array([[1.0], [4.0]], np.float32)
    with httpclient.InferenceServerClient(address(tfs)) as client:
        for version in ("123", "124"):
            result = client.infer("two_versions", http_inputs({"x": x}, True), model_version=version)
            assert result.get_response()["model_version"] == version
            assert_same("y", result.as_numpy("y"), tfs_predict(tfs, "two_versions", {"x": x})["y"])


def raised(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_http_errors_and_the_server_keeps_serving(bundled):
    pixels = random_pixels(2)
    with httpclient.InferenceServerClient(address(bundled)) as client:
        unknown = raised(lambda: client.infer(UNKNOWN, http_inputs({"pixels": pixels}, True)))
        assert unknown.status() == "404"
        assert UNKNOWN in unknown.message()
        assert raised(lambda: client.get_model_metadata(UNKNOWN)).status() == "404"
        wrong_type = raised(lambda: client.infer("digits", http_inputs({"pixels": pixels.astype(np.float64)}, True)))
        assert wrong_type.status() == "400"
        assert "pixels" in wrong_type.message()
        assert "FP32" in wrong_type.message()
        json_type = raised(lambda: client.infer("digits", http_inputs({"pixels": pixels.astype(np.int32)}, False)))
        assert json_type.status() == "400"
        assert "FP32" in json_type.message()
        missing = raised(lambda: client.infer("digits", http_inputs({"other": pixels}, True)))
        assert missing.status() == "400"
        assert "pixels" in missing.message()
        no_output = raised(
            lambda: client.infer(
                "digits", http_inputs({"pixels": pixels}, True), outputs=[httpclient.InferRequestedOutput("nope")]
            )
        )
        assert no_output.status() == "400"
        assert "nope" in no_output.message()
        version = raised(lambda: client.infer("digits", http_inputs({"pixels": pixels}, True), model_version="999"))
        assert version.status() == "404"
        result = client.infer("digits", http_inputs({"pixels": pixels}, True))
    assert_same("class", result.as_numpy("class"), tfs_predict(bundled, "digits", {"pixels": pixels})["class"])


def test_http_inference_statistics(bundled):
    """The statistics extension counts each successful request of one row (Triton's ``success.count``)."""
    with httpclient.InferenceServerClient(address(bundled)) as client:

        def iris_stats() -> dict:
            return {s["version"]: s for s in client.get_inference_statistics("iris")["model_stats"]}

        before = iris_stats()
        features = np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)
        answered = {
            client.infer("iris", http_inputs({"features": features}, True)).get_response()["model_version"]
            for _ in range(5)
        }
        after = iris_stats()
        everything = client.get_inference_statistics()
    (version,) = answered
    assert after[version]["name"] == "iris"
    assert after[version]["inference_count"] - before[version]["inference_count"] == 5
    success = after[version]["inference_stats"]["success"]
    assert success["count"] - before[version]["inference_stats"]["success"]["count"] == 5
    assert success["ns"] > before[version]["inference_stats"]["success"]["ns"]
    assert {s["name"] for s in everything["model_stats"]} >= {"digits", "iris"}


def assert_index_matches(server: ApplianceProcess, index: list[tuple[str, str, str]]) -> None:
    """A repository index, as (name, version, state), lists every model served, each available version READY
    (as /health says)."""
    models = requests.get(f"{server.url}/health", timeout=TIMEOUT).json()["models"]
    available = {(m["name"], str(v["version"])) for m in models for v in m["versions"] if v["state"] == "AVAILABLE"}
    assert {(name, version) for name, version, state in index if state == "READY"} == available
    assert {name for name, _, _ in index} == {m["name"] for m in models}


def test_http_model_repository_index(bundled, tfs):
    for server in (bundled, tfs):
        with httpclient.InferenceServerClient(address(server)) as client:
            index = client.get_model_repository_index()
        assert_index_matches(server, [(m["name"], m.get("version", ""), m["state"]) for m in index])


def test_http_unload_and_load_a_model(tfs):
    """The repository extension through tritonclient: unloaded, a model is not ready and its requests get 404;
    loaded again, it answers as before."""
    x = np.array([[1.0], [3.0]], np.float32)
    expected = tfs_predict(tfs, "mkl", {"x": x})
    with httpclient.InferenceServerClient(address(tfs)) as client:
        client.unload_model("mkl")
        assert not client.is_model_ready("mkl")
        gone = raised(lambda: client.infer("mkl", http_inputs({"x": x}, True)))
        assert gone.status() == "404"
        assert "mkl" in gone.message()
        assert ("mkl", "READY") not in {(m["name"], m["state"]) for m in client.get_model_repository_index()}
        client.load_model("mkl")
        assert client.is_model_ready("mkl")
        result = client.infer("mkl", http_inputs({"x": x}, True))
    for name, value in expected.items():
        assert_same(name, result.as_numpy(name), value)


def test_http_aio_client(bundled, tfs, multi_io):
    """tritonclient.http.aio: the same calls, then CONCURRENCY requests at once through asyncio.gather, ROUNDS
    times, each answer the one TF Serving's API gives for its rows."""
    pixels, labels = digit_pixels()
    rows = random_pixels(CONCURRENCY * ROUNDS)
    expected = tfs_predict(bundled, "digits", {"pixels": rows})
    cases = tfs_cases(tfs, multi_io)

    async def main() -> None:
        async with httpclient_aio.InferenceServerClient(address(bundled)) as client:
            assert await client.is_server_live()
            assert await client.is_server_ready()
            assert "binary_tensor_data" in (await client.get_server_metadata())["extensions"]
            metadata = await client.get_model_metadata("digits")
            tensors = [{t["name"]: (t["datatype"], t["shape"]) for t in metadata[key]} for key in ("inputs", "outputs")]
            assert_metadata_matches(
                bundled, "digits", metadata["name"], metadata["versions"], metadata["platform"], *tensors
            )
            assert await client.is_model_ready("digits")
            assert not await client.is_model_ready(UNKNOWN)
            for binary in (False, True):
                outputs = [httpclient_aio.InferRequestedOutput("class", binary_data=binary)]
                result = await client.infer(
                    "digits", http_inputs({"pixels": pixels}, binary, httpclient_aio), outputs=outputs
                )
                assert_http_encoding(result, binary)
                assert result.as_numpy("class").tolist() == labels
                assert result.as_numpy("probabilities") is None
            with pytest.raises(InferenceServerException) as unknown:
                await client.infer(UNKNOWN, http_inputs({"pixels": pixels}, True, httpclient_aio))
            assert unknown.value.status() == "404"
            with pytest.raises(InferenceServerException) as wrong_type:
                await client.infer("digits", http_inputs({"pixels": pixels.astype(np.float16)}, True, httpclient_aio))
            assert wrong_type.value.status() == "400"
            assert "FP32" in wrong_type.value.message()
            for round_ in range(ROUNDS):
                first = round_ * CONCURRENCY
                calls = [
                    client.infer("digits", http_inputs({"pixels": rows[i : i + 1]}, i % 2 == 0, httpclient_aio))
                    for i in range(first, first + CONCURRENCY)
                ]
                assert_rows(await asyncio.gather(*calls), expected, first)
        async with httpclient_aio.InferenceServerClient(address(tfs)) as client:
            for model, inputs, outputs in cases:
                result = await client.infer(model, http_inputs(inputs, True, httpclient_aio))
                for name, value in outputs.items():
                    assert_same(f"{model}/{name}", result.as_numpy(name), value)

    asyncio.run(main())


def triton_type(datatype: str) -> str:
    """A v2 datatype's name in Triton's model configuration (BYTES is TYPE_STRING there)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def assert_config_matches(server: ApplianceProcess, model: str, config: dict) -> None:
    """A Triton model configuration (what perf_analyzer reads) against the signature TF Serving's API describes:
    with a ``max_batch_size``, each tensor's first dimension is the batch and ``dims`` are the others."""
    assert config["name"] == model
    assert config["platform"] == "tensorflow_savedmodel"
    batched = int(config.get("max_batch_size", 0)) > 0
    for key, expected in zip(("input", "output"), tfs_signature(server, model)):
        got = {t["name"]: (t["data_type"], [int(d) for d in t.get("dims", [])]) for t in config[key]}
        assert set(got) == set(expected), key
        for name, (datatype, shape) in expected.items():
            if batched:
                assert shape[0] == -1, f"{name} has no batch dimension, yet max_batch_size is set"
            assert got[name] == (triton_type(datatype), shape[1:] if batched else shape), name


@pytest.mark.parametrize("served, model", [("bundled", "digits"), ("tfs", "multi_io"), ("tfs", "tf2")])
def test_model_config_over_both_wires(request, served, model):
    server = request.getfixturevalue(served)
    with httpclient.InferenceServerClient(address(server)) as client:
        assert_config_matches(server, model, client.get_model_config(model))
    with grpcclient.InferenceServerClient(server.grpc_address) as client:
        assert_config_matches(server, model, client.get_model_config(model, as_json=True)["config"])


# -- tritonclient.grpc ---------------------------------------------------------------------------------------------


def grpc_tensors(metadata) -> list[dict]:
    """A ModelMetadataResponse's inputs and outputs as name -> (datatype, shape)."""
    return [{t.name: (t.datatype, list(t.shape)) for t in tensors} for tensors in (metadata.inputs, metadata.outputs)]


def test_grpc_health_and_server_metadata(bundled):
    with grpcclient.InferenceServerClient(bundled.grpc_address) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        metadata = client.get_server_metadata()
        assert metadata.name
        assert metadata.version
        assert "binary_tensor_data" in metadata.extensions


@pytest.mark.parametrize(
    "served, model",
    [("bundled", "digits"), ("bundled", "iris"), ("tfs", "default"), ("tfs", "two_versions"), ("tfs", "multi_io")],
)
def test_grpc_model_metadata_and_readiness(request, served, model):
    server = request.getfixturevalue(served)
    with grpcclient.InferenceServerClient(server.grpc_address) as client:
        metadata = client.get_model_metadata(model)
        assert_metadata_matches(
            server, model, metadata.name, metadata.versions, metadata.platform, *grpc_tensors(metadata)
        )
        assert client.is_model_ready(model)
        for version in available_versions(server, model):
            assert client.is_model_ready(model, version)
            assert client.get_model_metadata(model, version).name == model
        assert not client.is_model_ready(model, "999")
        assert not client.is_model_ready(UNKNOWN)  # Triton's answer too: not ready, no error


def test_grpc_infer(bundled, tfs, multi_io):
    """Raw input and output contents: the digits samples, outputs by name, a BYTES signature, TF Serving's models,
    versions and the request id."""
    pixels, labels = digit_pixels()
    expected = tfs_predict(bundled, "digits", {"pixels": pixels})
    with grpcclient.InferenceServerClient(bundled.grpc_address) as client:
        result = client.infer("digits", grpc_inputs({"pixels": pixels}), request_id="g-1")
        response = result.get_response()
        assert (response.model_name, response.id) == ("digits", "g-1")
        assert response.model_version in available_versions(bundled, "digits")
        assert result.as_numpy("class").tolist() == labels
        for name, value in expected.items():
            assert_same(name, result.as_numpy(name), value)
        by_name = client.infer(
            "digits", grpc_inputs({"pixels": pixels}), outputs=[grpcclient.InferRequestedOutput("class")]
        )
        assert [o.name for o in by_name.get_response().outputs] == ["class"]
        assert by_name.as_numpy("class").tolist() == labels
        images = np.array([s.read_bytes() for s in SAMPLES], dtype=object)
        image = client.infer("digits", grpc_inputs({"image_bytes": images}), parameters={"signature_name": "image"})
        assert image.as_numpy("class").tolist() == labels
    with grpcclient.InferenceServerClient(tfs.grpc_address) as client:
        for model, inputs, outputs in tfs_cases(tfs, multi_io):
            result = client.infer(model, grpc_inputs(inputs))
            for name, value in outputs.items():
                assert_same(f"{model}/{name}", result.as_numpy(name), value)
        x = np.array([[1.0], [4.0]], np.float32)
        for version in ("123", "124"):
            result = client.infer("two_versions", grpc_inputs({"x": x}), model_version=version)
            assert result.get_response().model_version == version
            assert_same("y", result.as_numpy("y"), tfs_predict(tfs, "two_versions", {"x": x})["y"])


def test_grpc_errors_and_the_server_keeps_serving(bundled):
    pixels = random_pixels(2)
    with grpcclient.InferenceServerClient(bundled.grpc_address) as client:
        unknown = raised(lambda: client.infer(UNKNOWN, grpc_inputs({"pixels": pixels})))
        assert unknown.status() == "StatusCode.NOT_FOUND"
        assert UNKNOWN in unknown.message()
        assert raised(lambda: client.get_model_metadata(UNKNOWN)).status() == "StatusCode.NOT_FOUND"
        wrong_type = raised(lambda: client.infer("digits", grpc_inputs({"pixels": pixels.astype(np.float64)})))
        assert wrong_type.status() == "StatusCode.INVALID_ARGUMENT"
        assert "pixels" in wrong_type.message()
        assert "FP32" in wrong_type.message()
        no_output = raised(
            lambda: client.infer(
                "digits", grpc_inputs({"pixels": pixels}), outputs=[grpcclient.InferRequestedOutput("nope")]
            )
        )
        assert no_output.status() == "StatusCode.INVALID_ARGUMENT"
        assert "nope" in no_output.message()
        version = raised(lambda: client.infer("digits", grpc_inputs({"pixels": pixels}), model_version="999"))
        assert version.status() == "StatusCode.NOT_FOUND"
        result = client.infer("digits", grpc_inputs({"pixels": pixels}))
    assert_same("class", result.as_numpy("class"), tfs_predict(bundled, "digits", {"pixels": pixels})["class"])


def test_grpc_statistics_and_repository_index(bundled, tfs):
    with grpcclient.InferenceServerClient(bundled.grpc_address) as client:

        def iris_stats() -> dict:
            return {s.version: s for s in client.get_inference_statistics("iris").model_stats}

        before = iris_stats()
        features = np.array([[6.3, 3.3, 6.0, 2.5]], np.float32)
        answered = {
            client.infer("iris", grpc_inputs({"features": features})).get_response().model_version for _ in range(4)
        }
        after = iris_stats()
        names = {s.name for s in client.get_inference_statistics().model_stats}
        index = client.get_model_repository_index().models
    (version,) = answered
    assert after[version].inference_count - before[version].inference_count == 4
    success = after[version].inference_stats.success
    assert success.count - before[version].inference_stats.success.count == 4
    assert success.ns > before[version].inference_stats.success.ns
    assert names >= {"digits", "iris"}
    assert_index_matches(bundled, [(m.name, m.version, m.state) for m in index])
    with grpcclient.InferenceServerClient(tfs.grpc_address) as client:
        assert_index_matches(tfs, [(m.name, m.version, m.state) for m in client.get_model_repository_index().models])


def test_grpc_unload_and_load_a_model(tfs):
    x = np.array([2.0], np.float32)  # tf2's x: one number
    expected = tfs_predict(tfs, "tf2", {"x": x})
    with grpcclient.InferenceServerClient(tfs.grpc_address) as client:
        client.unload_model("tf2")
        assert not client.is_model_ready("tf2")
        gone = raised(lambda: client.infer("tf2", grpc_inputs({"x": x})))
        assert gone.status() == "StatusCode.NOT_FOUND"
        client.load_model("tf2")
        assert client.is_model_ready("tf2")
        result = client.infer("tf2", grpc_inputs({"x": x}))
    for name, value in expected.items():
        assert_same(name, result.as_numpy(name), value)


def test_grpc_concurrent_load_from_threads(bundled):
    """CONCURRENCY threads sharing one client, ROUNDS requests each: every answer is its row's."""
    rows = random_pixels(CONCURRENCY * ROUNDS, seed=11)
    expected = tfs_predict(bundled, "digits", {"pixels": rows})
    with grpcclient.InferenceServerClient(bundled.grpc_address) as client:

        def infer(i: int):
            return client.infer("digits", grpc_inputs({"pixels": rows[i : i + 1]}))

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(infer, range(len(rows))))
    assert_rows(results, expected, 0)


def test_grpc_aio_client(bundled, tfs, multi_io):
    """tritonclient.grpc.aio: the same calls, then CONCURRENCY requests at once through asyncio.gather, ROUNDS times."""
    pixels, labels = digit_pixels()
    rows = random_pixels(CONCURRENCY * ROUNDS, seed=13)
    expected = tfs_predict(bundled, "digits", {"pixels": rows})
    cases = tfs_cases(tfs, multi_io)

    async def main() -> None:
        async with grpcclient_aio.InferenceServerClient(bundled.grpc_address) as client:
            assert await client.is_server_live()
            assert await client.is_server_ready()
            assert "binary_tensor_data" in (await client.get_server_metadata()).extensions
            metadata = await client.get_model_metadata("digits")
            assert_metadata_matches(
                bundled, "digits", metadata.name, metadata.versions, metadata.platform, *grpc_tensors(metadata)
            )
            assert await client.is_model_ready("digits")
            assert not await client.is_model_ready(UNKNOWN)
            result = await client.infer(
                "digits",
                grpc_inputs({"pixels": pixels}, grpcclient_aio),
                outputs=[grpcclient_aio.InferRequestedOutput("class")],
            )
            assert result.as_numpy("class").tolist() == labels
            assert result.as_numpy("probabilities") is None
            with pytest.raises(InferenceServerException) as unknown:
                await client.infer(UNKNOWN, grpc_inputs({"pixels": pixels}, grpcclient_aio))
            assert unknown.value.status() == "StatusCode.NOT_FOUND"
            with pytest.raises(InferenceServerException) as wrong_type:
                await client.infer("digits", grpc_inputs({"pixels": pixels.astype(np.int64)}, grpcclient_aio))
            assert wrong_type.value.status() == "StatusCode.INVALID_ARGUMENT"
            for round_ in range(ROUNDS):
                first = round_ * CONCURRENCY
                calls = [
                    client.infer("digits", grpc_inputs({"pixels": rows[i : i + 1]}, grpcclient_aio))
                    for i in range(first, first + CONCURRENCY)
                ]
                assert_rows(await asyncio.gather(*calls), expected, first)
        async with grpcclient_aio.InferenceServerClient(tfs.grpc_address) as client:
            for model, inputs, outputs in cases:
                result = await client.infer(model, grpc_inputs(inputs, grpcclient_aio))
                for name, value in outputs.items():
                    assert_same(f"{model}/{name}", result.as_numpy(name), value)

    asyncio.run(main())
