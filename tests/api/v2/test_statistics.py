"""The statistics extension, from what a real server answered: TF Serving REST, /predict and gRPC requests to
copies of the bundled models, with batching off and on. Counts are compared as the difference of two reads."""

from __future__ import annotations

import shutil
import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from appliance.api.app import create_app
from appliance.api.grpc_prediction import add_prediction_service
from appliance.api.metrics import Metrics
from appliance.api.v2.statistics import ModelStatistics
from appliance.errors import InvalidArgument, NotFound
from appliance.server import Server
from appliance.serving.batching import BatchingPolicy
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ...conftest import MODELS

RNG = np.random.default_rng(19)


class Served:
    """A REST and a gRPC server over one manager of the bundled models, and the statistics of its metrics."""

    def __init__(self, root, batching: BatchingPolicy):
        self.metrics = Metrics()
        self.manager = ModelManager(
            Repository([], [root]),
            LocalTFRuntime(device="cpu"),
            poll_seconds=0,
            observer=self.metrics.observer,
            batching=batching,
        )
        self.manager.start()
        assert self.manager.wait_until_ready(120)
        self.server = Server(create_app(self.manager, max_request_bytes=1 << 20, metrics=self.metrics), "127.0.0.1", 0)
        self.server.start()
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        add_prediction_service(self.grpc, self.manager, metrics=self.metrics)
        port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.grpc.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.statistics = ModelStatistics(self.manager, self.metrics)

    def stats(self, name: str, version: int) -> dict:
        (stats,) = self.statistics.models(name, str(version))["model_stats"]
        return stats

    def rest_predict(self, version: int, rows: np.ndarray) -> np.ndarray:
        url = f"{self.server.url}/v1/models/digits/versions/{version}:predict"
        response = requests.post(url, json={"instances": rows.tolist()}, timeout=30)
        assert response.status_code == 200, response.text
        return np.array([p["probabilities"] for p in response.json()["predictions"]])

    def close(self):
        self.channel.close()
        self.grpc.stop(None).wait()
        self.server.stop()
        self.manager.stop()


def serve(tmp_path_factory, batching: BatchingPolicy):
    root = tmp_path_factory.mktemp("models")
    for model in ("digits", "iris"):
        shutil.copytree(MODELS / model, root / model)
    return Served(root, batching)


@pytest.fixture(scope="module")
def unbatched(tmp_path_factory):
    served = serve(tmp_path_factory, BatchingPolicy(enabled=False))
    yield served
    served.close()


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    served = serve(tmp_path_factory, BatchingPolicy(enabled=None))  # the bundled versions' own parameters
    yield served
    served.close()


def pixels(rows: int) -> np.ndarray:
    return RNG.random((rows, 64), dtype=np.float32)


def grpc_predict(stub, version: int, rows: np.ndarray):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.version.value = version
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(rows))
    return stub.Predict(request, timeout=30)


def counted(before: dict, after: dict) -> dict:
    """What grew between two statistics of one version: counts and inference_stats counts."""
    stats = {"inference_count", "execution_count"}
    grown = {key: after[key] - before[key] for key in stats}
    for kind in after["inference_stats"]:
        grown[kind] = after["inference_stats"][kind]["count"] - before["inference_stats"][kind]["count"]
    return grown


def test_requests_of_every_api_are_counted_per_version(unbatched):
    served = unbatched
    before = {v: served.stats("digits", v) for v in (1, 2)}
    started = time.time()
    rows = pixels(2)
    signature = tf.saved_model.load(str(MODELS / "digits" / "2")).signatures["serving_default"]
    expected = signature(pixels=tf.constant(rows))["probabilities"].numpy()
    for _ in range(3):
        np.testing.assert_allclose(served.rest_predict(2, rows), expected, rtol=1e-5, atol=1e-6)
    grpc_predict(served.stub, 2, pixels(1))
    body = {"model": "digits", "version": 1, "input": pixels(1).tolist()}
    for _ in range(2):
        assert requests.post(f"{served.server.url}/predict", json=body, timeout=30).status_code == 200
    bad = requests.post(
        f"{served.server.url}/v1/models/digits/versions/2:predict", json={"instances": [[1.0, 2.0]]}, timeout=30
    )
    assert bad.status_code == 400
    with pytest.raises(grpc.RpcError) as refused:
        grpc_predict(served.stub, 2, pixels(1)[:, :10])
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # Not inferences: metadata and status of the version.
    assert requests.get(f"{served.server.url}/v1/models/digits/versions/2/metadata", timeout=30).status_code == 200
    assert requests.get(f"{served.server.url}/v1/models/digits/versions/2", timeout=30).status_code == 200
    finished = time.time()
    after = {v: served.stats("digits", v) for v in (1, 2)}

    zero = {"queue": 0, "compute_input": 0, "compute_infer": 0, "compute_output": 0}
    assert counted(before[2], after[2]) == {
        "inference_count": 4,  # unbatched: requests, not rows
        "execution_count": 4,
        "success": 4,
        "fail": 2,
        **zero,
    }
    assert counted(before[1], after[1]) == {"inference_count": 2, "execution_count": 2, "success": 2, "fail": 0, **zero}
    for version in (1, 2):
        stats = after[version]
        assert stats["name"] == "digits" and stats["version"] == str(version)
        assert started * 1000 - 1 <= stats["last_inference"] <= finished * 1000 + 1
        for kind in ("success", "fail"):
            grown = stats["inference_stats"][kind]["ns"] - before[version]["inference_stats"][kind]["ns"]
            assert (grown > 0) == (kind == "success" or version == 2)
            assert grown < (finished - started) * 1e9
        assert stats["batch_stats"] == []


def test_every_model_or_one_model_or_one_version(unbatched):
    statistics = unbatched.statistics
    everything = statistics.models(None, None)["model_stats"]
    assert [(s["name"], s["version"]) for s in everything] == [
        ("digits", "1"),
        ("digits", "2"),
        ("iris", "1"),
        ("iris", "2"),
    ]
    digits = statistics.models("digits", None)["model_stats"]
    assert [(s["name"], s["version"]) for s in digits] == [("digits", "1"), ("digits", "2")]
    assert statistics.models("digits", "")["model_stats"] == digits
    iris = statistics.models("iris", "1")["model_stats"][0]
    if iris["inference_stats"]["success"]["count"] == 0:
        assert iris["last_inference"] == 0 and iris["inference_count"] == 0
    with pytest.raises(NotFound, match="nope"):
        statistics.models("nope", None)
    with pytest.raises(NotFound, match="version 9 of model digits"):
        statistics.models("digits", "9")
    with pytest.raises(InvalidArgument, match="version number"):
        statistics.models("digits", "latest")


def test_an_unloaded_model_has_no_statistics_until_loaded(unbatched):
    unbatched.manager.unload_model("iris")
    try:
        with pytest.raises(NotFound, match="model iris is not served"):
            unbatched.statistics.models("iris", None)
        assert {s["name"] for s in unbatched.statistics.models(None, None)["model_stats"]} == {"digits"}
    finally:
        unbatched.manager.load_model("iris")
    assert len(unbatched.statistics.models("iris", None)["model_stats"]) == 2


def test_batched_versions_count_rows_and_batches_of_each_size(batched):
    before = batched.stats("digits", 2)
    for rows in (2, 2, 3):  # one at a time: each runs alone, a batch of its own rows
        batched.rest_predict(2, pixels(rows))
    grpc_predict(batched.stub, 2, pixels(3))
    after = batched.stats("digits", 2)
    assert counted(before, after) == {
        "inference_count": 10,
        "execution_count": 4,
        "success": 4,
        "fail": 0,
        "queue": 0,
        "compute_input": 0,
        "compute_infer": 0,
        "compute_output": 0,
    }
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    earlier = {b["batch_size"]: b["compute_infer"]["count"] for b in before["batch_stats"]}
    assert {size: count - earlier.get(size, 0) for size, count in sizes.items() if count != earlier.get(size, 0)} == {
        2: 2,
        3: 2,
    }


def test_concurrent_requests_merged_into_batches_count_every_row(batched):
    before = batched.stats("digits", 1)
    requests_sent, rows_each = 48, 1
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda _: batched.rest_predict(1, pixels(rows_each)), range(requests_sent)))
    after = batched.stats("digits", 1)
    grown = counted(before, after)
    assert grown["success"] == requests_sent
    assert grown["inference_count"] == requests_sent * rows_each  # no allowed_batch_sizes: no padding
    assert 1 <= grown["execution_count"] <= requests_sent
    batches = sum(b["compute_infer"]["count"] for b in after["batch_stats"]) - sum(
        b["compute_infer"]["count"] for b in before["batch_stats"]
    )
    assert batches == grown["execution_count"]
