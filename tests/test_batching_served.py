"""Batching and deadlines as a client sees them: real `appliance serve` processes over real HTTP.

The bundled models ship a ``batching_params.pbtxt``, so they are batched by
default; concurrent clients must each get the answer an unbatched call gives
for their own rows. A model call that outlives ``--rest_api_timeout_in_ms`` is
cancelled and answered 504, and its worker thread serves the next request.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families

from appliance.serving.runtime.local_tf import LocalTFRuntime
from tests.conftest import MODELS, ApplianceProcess


def test_concurrent_clients_of_a_batched_model_each_get_their_own_answer(bundled_server):
    rng = np.random.default_rng(7)
    rows = [rng.uniform(0, 16, (1 + i % 3, 64)).round(2).astype(np.float32) for i in range(16)]
    servable = LocalTFRuntime("cpu", warmup=False).load(MODELS / "digits" / "2")
    expected = [servable.predict("serving_default", {"pixels": r})["probabilities"] for r in rows]
    servable.close()
    wrong: list[str] = []
    start = threading.Barrier(16)

    def client(i: int) -> None:
        with requests.Session() as session:
            start.wait()
            for _ in range(25):
                response = session.post(
                    bundled_server.url + "/v1/models/digits/versions/2:predict",
                    json={"instances": rows[i].tolist()},
                    timeout=30,
                )
                if response.status_code != 200:
                    wrong.append(response.text)
                    continue
                got = np.array([p["probabilities"] for p in response.json()["predictions"]])
                # float32 sums run in another order in batches of other sizes (oneDNN picks kernels by shape)
                if not np.allclose(got, expected[i], rtol=1e-4, atol=1e-6):
                    wrong.append(f"client {i}: {got} != {expected[i]}")

    before = _batches(bundled_server.url)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client, range(16)))
    assert wrong == []
    batches, requests_in_batches = (a - b for a, b in zip(_batches(bundled_server.url), before))
    assert requests_in_batches == 16 * 25  # every request went through the batcher once...
    assert batches < requests_in_batches  # ...and some of them shared a model call


def _batches(url: str) -> tuple[float, float]:
    """Batched calls of digits v2's serving_default so far, and the requests they carried."""
    text = requests.get(url + "/monitoring/prometheus/metrics", timeout=30).text
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "appliance_batch_size_requests"
        for s in family.samples
        if s.labels.get("model") == "digits"
        and s.labels.get("version") == "2"
        and s.labels.get("signature") == "serving_default"
    }
    return samples.get("appliance_batch_size_requests_count", 0.0), samples.get(
        "appliance_batch_size_requests_sum", 0.0
    )


class _Spin(tf.Module):
    """Counts to n[0] in a graph loop: as slow as asked for, and cancellable between iterations."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def spin(self, n):
        (count,) = tf.while_loop(lambda i: i < n[0], lambda i: [i + 1], [tf.constant(0, tf.int64)])
        return {"count": tf.fill(tf.shape(n), count)}


@pytest.fixture(scope="module")
def spin_models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("spin-models")
    module = _Spin()
    tf.saved_model.save(module, str(root / "spin" / "1"), signatures={"serving_default": module.spin})
    return root


def test_a_model_call_past_the_deadline_gets_504_and_frees_its_worker(spin_models):
    server = ApplianceProcess(
        "--models_dir",
        str(spin_models),
        "--models_dir",
        str(MODELS),
        "--rest_api_timeout_in_ms",
        "300",
        "--threads",
        "2",
    )
    try:
        quick = requests.post(server.url + "/v1/models/spin:predict", json={"instances": [1000]}, timeout=30)
        assert quick.status_code == 200 and quick.json() == {"predictions": [1000]}
        with ThreadPoolExecutor(4) as pool:  # more endless calls than worker threads
            answers = list(
                pool.map(
                    lambda _: requests.post(
                        server.url + "/v1/models/spin:predict", json={"instances": [10**12]}, timeout=60
                    ),
                    range(4),
                )
            )
        for answer in answers:
            assert answer.status_code == 504
            assert answer.json()["error"].startswith("Deadline exceeded: the model ran longer than 300 ms")
        after = requests.post(server.url + "/predict", json={"model": "digits", "input": [[0.0] * 64]}, timeout=30)
        assert after.status_code == 200
        assert server.stop() == 0
    finally:
        if server.proc.poll() is None:
            server.stop()
