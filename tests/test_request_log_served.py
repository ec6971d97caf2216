"""The request log in a real ``appliance serve``: every API's answered requests are recorded, and a kill -9 keeps
what was written readable.

digits is recorded through ``settings.toml`` (``request_log_sampling``), iris through ``models.config``'s TF Serving
``logging_config``; the records are read back from the per-user data folder and compared with what the clients
sent and were answered.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc, regression_pb2

from appliance.serving.request_log import model_dir, read_records

from .conftest import MODELS, ApplianceProcess, PredictLoad, wait_for

IRIS = {"sepal_length": 5.1, "sepal_width": 3.4, "petal_length": 1.5, "petal_width": 0.2}
MODELS_CONFIG = f"""
model_config_list {{
  config {{ name: "digits" base_path: "{MODELS / "digits"}" model_version_policy {{ all {{}} }} }}
  config {{
    name: "iris"
    base_path: "{MODELS / "iris"}"
    logging_config {{
      sampling_config {{ sampling_rate: 1.0 }}
      log_collector_config {{ type: "gcs" filename_prefix: "gs://bucket/iris" }}
    }}
  }}
}}
"""


def _start(home: Path) -> ApplianceProcess:
    (home / "config" / "appliance").mkdir(parents=True)
    (home / "config" / "appliance" / "settings.toml").write_text("request_log_sampling = { digits = 1.0 }\n")
    (home / "models.config").write_text(MODELS_CONFIG)
    return ApplianceProcess("--model_config_file", str(home / "models.config"), home=home)


def _records(home: Path, model: str) -> list:
    folder = model_dir(home / "data" / "appliance" / "request-log", model)
    return list(read_records(sorted(folder.glob("*.tfrecord"))))


def _rows(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 16, size=(1, 64)).astype(np.float32)


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_every_api_records_its_answered_requests(home):
    server = _start(home)
    try:
        sent, answered = {}, {}  # seed -> the rows sent, the class answered
        url, address = server.url, server.grpc_address

        sent[1] = _rows(1)
        body = {"instances": sent[1].tolist()}
        response = requests.post(f"{url}/v1/models/digits:predict", json=body, timeout=30)
        answered[1] = response.json()["predictions"][0]["class"]

        sent[2] = _rows(2)
        response = requests.post(f"{url}/predict", json={"model": "digits", "input": sent[2].tolist()}, timeout=30)
        answered[2] = response.json()["predictions"]["class"][0]

        sent[3] = _rows(3)
        with grpc.insecure_channel(address) as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "digits"
            request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(sent[3]))
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
            answered[3] = int(tf.make_ndarray(reply.outputs["class"])[0])

            regress = regression_pb2.RegressionRequest()
            regress.model_spec.name, regress.model_spec.signature_name = "iris", "regress"
            features = regress.input.example_list.examples.add().features.feature
            for name in ("sepal_length", "sepal_width", "petal_length"):
                features[name].float_list.value.append(IRIS[name])
            regressed = prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(regress, timeout=30)

        for seed, client in (
            (4, httpclient.InferenceServerClient(url.removeprefix("http://"))),
            (5, grpcclient.InferenceServerClient(address)),
        ):
            module = httpclient if seed == 4 else grpcclient
            sent[seed] = _rows(seed)
            infer_input = module.InferInput("pixels", [1, 64], "FP32")
            infer_input.set_data_from_numpy(sent[seed])
            answered[seed] = int(client.infer("digits", [infer_input]).as_numpy("class")[0])

        body = {"signature_name": "classify", "examples": [IRIS]}
        classified = requests.post(f"{url}/v1/models/iris:classify", json=body, timeout=30).json()["results"][0]
        refused = requests.post(f"{url}/predict", json={"model": "digits", "input": [[1.0, 2.0]]}, timeout=30)
        assert refused.status_code == 400 and "error" in refused.json()  # answered with an error: not recorded

        digits = wait_for(lambda: len(_records(home, "digits")) >= 5 and _records(home, "digits"), timeout=30)
        iris = wait_for(lambda: len(_records(home, "iris")) >= 2 and _records(home, "iris"), timeout=30)
        metrics = requests.get(f"{url}/monitoring/prometheus/metrics", timeout=30).text
    finally:
        server.stop()
    assert len(digits) == 5
    for seed, record in zip(sorted(sent), digits, strict=True):
        spec = record.log_metadata.model_spec
        assert (spec.name, spec.version.value, spec.signature_name) == ("digits", 2, "serving_default")
        np.testing.assert_array_equal(tf.make_ndarray(record.predict_log.request.inputs["pixels"]), sent[seed])
        assert tf.make_ndarray(record.predict_log.response.outputs["class"])[0] == answered[seed]

    classify_log, regress_log = sorted(iris, key=lambda r: r.WhichOneof("log_type"))
    assert regress_log.regress_log.response.result.regressions[0].value == pytest.approx(
        regressed.result.regressions[0].value
    )
    recorded = [(c.label, c.score) for c in classify_log.classify_log.response.result.classifications[0].classes]
    assert [label for label, _ in recorded] == [label for label, _ in classified]
    assert [score for _, score in recorded] == pytest.approx([score for _, score in classified])
    assert classify_log.log_metadata.model_spec.signature_name == "classify"

    assert 'appliance_request_log_records_total{model="digits"} 5.0' in metrics
    assert 'appliance_request_log_dropped_total{model="digits"} 0.0' in metrics
    assert "log_collector_config (type 'gcs'" in server.stderr and "only on this machine" in server.stderr


def test_kill_9_under_load_keeps_the_written_records_readable(home):
    server = _start(home)
    try:
        with PredictLoad(server.url, clients=4, body={"model": "digits", "input": [[3.0] * 64]}) as load:
            before_kill = wait_for(lambda: len(_records(home, "digits")) >= 200 and len(_records(home, "digits")))
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=30)
            time.sleep(0.5)  # the clients see the refused connections
        answered = len(load.versions)
    finally:
        server.stop()
    records = _records(home, "digits")  # a record torn by the kill is skipped, never an error
    assert before_kill <= len(records) <= answered
    assert all(r.log_metadata.model_spec.name == "digits" for r in records)
    np.testing.assert_array_equal(tf.make_ndarray(records[-1].predict_log.request.inputs["pixels"]), [[3.0] * 64])


def test_comparing_versions_on_the_recorded_requests_matches_running_both_directly(home):
    """Requests recorded from live traffic (two APIs, one and three rows) are replayed against digits v1 and v2;
    the agreement reported is the one TensorFlow gives on the same inputs, run directly on both versions."""
    rng = np.random.default_rng(20)
    batches = [rng.uniform(0, 16, (1 + 2 * (i % 4 == 0), 64)).astype(np.float32) for i in range(60)]
    server = _start(home)
    try:
        for i, rows in enumerate(batches):
            if i % 2:
                answer = requests.post(f"{server.url}/predict", json={"model": "digits", "input": rows.tolist()})
            else:
                answer = requests.post(f"{server.url}/v1/models/digits:predict", json={"instances": rows.tolist()})
            assert answer.status_code == 200, answer.text
        wait_for(lambda: len(_records(home, "digits")) == len(batches), timeout=30)

        compare = f"{server.url}/v1/appliance/models/digits/compare"
        started = requests.post(compare, json={"version": 1, "against": 2}, timeout=30)
        assert started.status_code == 202, started.text
        assert started.json()["total"] == len(batches)
        document = wait_for(
            lambda: (d := requests.get(compare, timeout=10).json())["state"] != "running" and d, timeout=120
        )
    finally:
        server.stop()

    classes = []
    for version in (1, 2):
        signature = tf.saved_model.load(str(MODELS / "digits" / str(version))).signatures["serving_default"]
        classes.append(np.concatenate([signature(pixels=tf.constant(b))["class"].numpy() for b in batches]))
    agreeing = int((classes[0] == classes[1]).sum())
    assert 0 < agreeing < len(classes[0]), "the two versions should disagree on some of these inputs"

    assert document["state"] == "done" and document["done"] == len(batches), document
    (output,) = [o for o in document["result"]["outputs"] if o["label"] == "class"]
    assert (output["agreeing"], output["predictions"]) == (agreeing, len(classes[0]))
    assert f"{100 * agreeing / len(classes[0]):.1f}%" in document["summary"]
