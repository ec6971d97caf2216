"""A remote TensorFlow Serving reached over gRPC (``--remote_url grpc://...``) in front of local models.

The remote is a second real appliance process serving TF Serving's gRPC API (digits v2 only, and iris v1, v2);
the front serves the bundled models and reaches the remote over real gRPC on loopback. REST requests to the
front are translated to gRPC and back; gRPC calls pass through. What the remote answers on its own, over
REST or gRPC, is what the front must answer; the remote's own metrics show that it, not the front's local
models, did the work.
"""

from __future__ import annotations

import json
import signal

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import inference_pb2, model_pb2, predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.apis.get_model_metadata_pb2 import GetModelMetadataRequest

from appliance.api.tensor_proto import from_array, to_array
from appliance.config import settings_from_sources
from appliance.errors import InvalidArgument
from appliance.serving.remote_grpc import channel_target

from .conftest import MODELS, ApplianceProcess, wait_for
from .test_grpc_server import pki, ssl_config  # noqa: F401  # pki is a fixture

PROBE_SECONDS = 0.2
TIMEOUT = 30
ROWS = [[float(i % 17) for i in range(64)], [float(i % 5) for i in range(64)]]
IRIS = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
TOKEN = "remote-s3cret"


def remote_settings(tmp_path, remote_address: str, scheme: str = "grpc", **extra: str) -> str:
    """A settings.toml naming ``remote_address`` as the gRPC remote; the path, as --settings_file takes it."""
    lines = [
        "[remote]",
        f'url = "{scheme}://{remote_address}"',
        f"probe_seconds = {PROBE_SECONDS}",
        "timeout_seconds = 5",
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    path = tmp_path / "settings.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def front(remote, tmp_path_factory):
    """The bundled models, and the remote over gRPC, where the model "handwriting" is called "digits"."""
    settings = remote_settings(
        tmp_path_factory.mktemp("front"), remote.grpc_address, model_names='{ handwriting = "digits" }'
    )
    server = ApplianceProcess("--settings_file", settings)
    assert wait_for(lambda: remote_state(server) == "up"), "the remote never came up"
    yield server
    server.stop()


def remote_state(front) -> str:
    return requests.get(front.url + "/health", timeout=TIMEOUT).json()["remote"]["state"]


def remote_serves_digits(front) -> bool:
    return bool(requests.get(front.url + "/health", timeout=TIMEOUT).json()["remote"]["versions"].get("digits"))


def grpc_calls(server, api: str = "grpc_predict") -> float:
    """How many gRPC calls of ``api`` ``server`` has answered (all models, versions and codes)."""
    text = requests.get(server.url + "/monitoring/prometheus/metrics", timeout=TIMEOUT).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("appliance_requests_total{") and f'api="{api}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def predict_request(model: str, version: int | None = None, rows=ROWS, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model, **spec))
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["pixels"].CopyFrom(from_array(np.array(rows, np.float32)))
    return request


def grpc_predict(target: str, request, **credentials) -> tuple[predict_pb2.PredictResponse, dict[str, str]]:
    """The answer to ``request`` at ``target``, and its trailing metadata."""
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response, call = stub.Predict.with_call(request, timeout=TIMEOUT, **credentials)
        return response, dict(call.trailing_metadata())


def grpc_error(target: str, request) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as caught:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=TIMEOUT)
    error = caught.value
    return error.code(), error.details(), dict(error.trailing_metadata())


def outputs(response: predict_pb2.PredictResponse) -> dict[str, np.ndarray]:
    return {alias: to_array(tensor) for alias, tensor in response.outputs.items()}


# -- REST clients, answered by the gRPC remote ---------------------------------------------------------------


@pytest.mark.parametrize("body", [{"instances": ROWS}, {"inputs": {"pixels": ROWS}}], ids=["row", "columnar"])
def test_rest_predict_is_answered_by_the_remote_over_grpc(front, remote, body):
    before = grpc_calls(remote)
    answer = requests.post(front.url + "/v1/models/digits:predict", json=body, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Appliance-Backend"] == "remote"
    assert grpc_calls(remote) == before + 1
    direct = requests.post(remote.url + "/v1/models/digits/versions/2:predict", json=body, timeout=TIMEOUT)
    assert answer.json() == direct.json()
    assert ("predictions" if "instances" in body else "outputs") in answer.json()


@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_rest_classify_and_regress_are_answered_by_the_remote(front, remote, verb):
    body = (MODELS / "iris" / "samples" / f"{verb}.json").read_bytes()
    before = grpc_calls(remote, f"grpc_{verb}")
    answer = requests.post(front.url + f"/v1/models/iris:{verb}", data=body, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Appliance-Backend"] == "remote"
    assert grpc_calls(remote, f"grpc_{verb}") == before + 1
    direct = requests.post(remote.url + f"/v1/models/iris/versions/2:{verb}", data=body, timeout=TIMEOUT)
    assert answer.json() == direct.json() and answer.json()["results"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/iris/versions/1",
        "/v1/models/digits",
        "/v1/models/iris/versions/1/metadata",
        "/v1/models/digits/metadata",
    ],
)
def test_rest_status_and_metadata_come_from_the_remote(front, remote, path):
    answer = requests.get(front.url + path, timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Appliance-Backend"] == "remote"
    assert answer.json() == requests.get(remote.url + path, timeout=TIMEOUT).json()


def test_a_version_the_remote_lacks_is_answered_locally(front):
    answer = requests.post(front.url + "/v1/models/digits/versions/1:predict", json={"instances": ROWS}, timeout=30)
    assert answer.status_code == 200 and answer.headers["X-Appliance-Backend"] == "local"


def test_the_remotes_verdict_is_passed_back_not_answered_locally(front, remote):
    bad = {"instances": [row[:63] for row in ROWS]}  # the right dtype, the wrong shape: only the model can tell
    answer = requests.post(front.url + "/v1/models/digits:predict", json=bad, timeout=TIMEOUT)
    assert answer.status_code == 400 and answer.headers["X-Appliance-Backend"] == "remote"
    code, details, _ = grpc_error(remote.grpc_address, predict_request("digits", rows=bad["instances"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert answer.json() == {"error": details}
    assert remote_state(front) == "up", "a verdict is an answer, not a failure"


def test_model_names_map_to_the_remotes_names(front, remote):
    answer = requests.post(front.url + "/v1/models/handwriting:predict", json={"instances": ROWS}, timeout=30)
    assert answer.status_code == 200 and answer.headers["X-Appliance-Backend"] == "remote"
    direct = requests.post(remote.url + "/v1/models/digits:predict", json={"instances": ROWS}, timeout=TIMEOUT)
    assert answer.json() == direct.json()
    metadata = requests.get(front.url + "/v1/models/handwriting/metadata", timeout=TIMEOUT).json()
    assert metadata["model_spec"]["name"] == "handwriting"
    response, trailing = grpc_predict(front.grpc_address, predict_request("handwriting"))
    assert trailing["x-appliance-backend"] == "remote"
    assert response.model_spec.name == "handwriting", "the client hears the name it asked for"


# -- gRPC clients, passed through ------------------------------------------------------------------------------


def test_grpc_predict_passes_through_to_the_remote(front, remote):
    before = grpc_calls(remote)
    response, trailing = grpc_predict(front.grpc_address, predict_request("digits"))
    assert trailing["x-appliance-backend"] == "remote"
    assert grpc_calls(remote) == before + 1
    direct, _ = grpc_predict(remote.grpc_address, predict_request("digits"))
    assert response == direct
    local, trailing = grpc_predict(front.grpc_address, predict_request("digits", version=1))
    assert trailing["x-appliance-backend"] == "local" and local.model_spec.version.value == 1


def test_grpc_metadata_and_the_remotes_verdicts_pass_through(front, remote):
    request = GetModelMetadataRequest(model_spec=model_pb2.ModelSpec(name="iris"), metadata_field=["signature_def"])
    with grpc.insecure_channel(front.grpc_address) as channel:
        through, call = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata.with_call(
            request, timeout=TIMEOUT
        )
    with grpc.insecure_channel(remote.grpc_address) as channel:
        direct = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=TIMEOUT)
    assert dict(call.trailing_metadata())["x-appliance-backend"] == "remote" and through == direct
    bad = predict_request("digits", rows=[row[:63] for row in ROWS])
    code, details, trailing = grpc_error(front.grpc_address, bad)
    assert (code, details) == grpc_error(remote.grpc_address, bad)[:2]
    assert code == grpc.StatusCode.INVALID_ARGUMENT and trailing["x-appliance-backend"] == "remote"


def test_grpc_multi_inference_passes_through_with_each_task_retargeted(front, remote):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify", "tensorflow/serving/classify"), ("regress", "tensorflow/serving/regress")):
        task = request.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "iris", signature
    for row in IRIS["instances"]:
        example = request.input.example_list.examples.add()
        for name, value in zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], row, strict=True):
            example.features.feature[name].float_list.value.append(value)
    before = grpc_calls(remote, "grpc_multi_inference")
    with grpc.insecure_channel(front.grpc_address) as channel:
        through, call = prediction_service_pb2_grpc.PredictionServiceStub(channel).MultiInference.with_call(
            request, timeout=TIMEOUT
        )
    assert dict(call.trailing_metadata())["x-appliance-backend"] == "remote"
    assert grpc_calls(remote, "grpc_multi_inference") == before + 1
    with grpc.insecure_channel(remote.grpc_address) as channel:
        direct = prediction_service_pb2_grpc.PredictionServiceStub(channel).MultiInference(request, timeout=TIMEOUT)
    assert through == direct and len(through.results) == 2


# -- the remote going away and coming back ---------------------------------------------------------------------


def test_a_killed_remote_falls_back_to_local_and_traffic_returns_when_it_is_back(tmp_path):
    victim = ApplianceProcess()
    front = ApplianceProcess("--settings_file", remote_settings(tmp_path, victim.grpc_address))
    revived = None
    try:
        assert wait_for(lambda: remote_state(front) == "up")
        victim.stop(signal.SIGKILL)
        for _ in range(5):
            answer = requests.post(front.url + "/v1/models/digits:predict", json={"instances": ROWS}, timeout=30)
            assert answer.status_code == 200 and answer.headers["X-Appliance-Backend"] == "local"
            assert grpc_predict(front.grpc_address, predict_request("digits"))[1]["x-appliance-backend"] == "local"
        assert wait_for(lambda: remote_state(front) == "down"), "the breaker opens"
        revived = ApplianceProcess("--port", victim.grpc_address.rsplit(":", 1)[1])
        assert wait_for(lambda: remote_state(front) == "up"), "a probe closes it again"
        assert wait_for(
            lambda: (
                requests.post(front.url + "/v1/models/digits:predict", json={"instances": ROWS}, timeout=30).headers[
                    "X-Appliance-Backend"
                ]
                == "remote"
            )
        )
        assert grpc_predict(front.grpc_address, predict_request("digits"))[1]["x-appliance-backend"] == "remote"
    finally:
        front.stop()
        victim.stop()
        if revived is not None:
            revived.stop()


# -- credentials -----------------------------------------------------------------------------------------------


def test_the_token_goes_to_the_remote_as_bearer_metadata(tmp_path):
    guarded = ApplianceProcess("--token", TOKEN, wait_ready=False)  # /health too needs the token
    with_token = ApplianceProcess(
        "--settings_file", remote_settings(tmp_path, guarded.grpc_address, token=json.dumps(TOKEN))
    )
    try:
        assert wait_for(lambda: remote_serves_digits(with_token))
        answer = requests.post(with_token.url + "/v1/models/digits:predict", json={"instances": ROWS}, timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Appliance-Backend"] == "remote"
        code, _, _ = grpc_error(guarded.grpc_address, predict_request("digits"))
        assert code == grpc.StatusCode.UNAUTHENTICATED, "the remote does ask for the token"
    finally:
        with_token.stop()
        guarded.stop()


def test_grpcs_with_a_private_ca_and_a_client_certificate(tmp_path, pki):  # noqa: F811  # pki is a fixture
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text(pki[name])
    config = ssl_config(tmp_path, pki, custom_ca=pki["ca.pem"], client_verify=True)
    secured = ApplianceProcess("--ssl_config_file", str(config))
    port = secured.grpc_address.rsplit(":", 1)[1]
    files = {"ssl_ca_file": "ca.pem", "ssl_cert_file": "client.pem", "ssl_key_file": "client.key"}
    pem = {key: json.dumps(str(tmp_path / name)) for key, name in files.items()}
    settings = remote_settings(tmp_path, f"localhost:{port}", scheme="grpcs", **pem)
    front = ApplianceProcess("--settings_file", settings)
    try:
        assert wait_for(lambda: remote_serves_digits(front))
        answer = requests.post(front.url + "/v1/models/digits:predict", json={"instances": ROWS}, timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Appliance-Backend"] == "remote"
    finally:
        front.stop()
        secured.stop()


# -- a REST remote, and the settings ----------------------------------------------------------------------------


def test_grpc_calls_are_answered_locally_when_the_remote_speaks_rest(remote):
    front = ApplianceProcess("--remote_url", remote.url, "--remote_probe_seconds", str(PROBE_SECONDS))
    try:
        assert wait_for(lambda: remote_state(front) == "up")
        rest = requests.post(front.url + "/v1/models/digits:predict", json={"instances": ROWS}, timeout=30)
        assert rest.headers["X-Appliance-Backend"] == "remote"
        _, trailing = grpc_predict(front.grpc_address, predict_request("digits"))
        assert trailing["x-appliance-backend"] == "local"
    finally:
        front.stop()


def test_grpc_remote_settings():
    settings = settings_from_sources({"remote.url": "grpcs://gpu-box:8500"}, {}, "test")
    assert settings.remote is not None and settings.remote.grpc
    assert channel_target("grpc://gpu-box") == "gpu-box:8500" and channel_target("grpcs://[::1]:9") == "[::1]:9"
    with pytest.raises(InvalidArgument, match="go together"):
        settings_from_sources({}, {"remote": {"url": "grpcs://h:1", "ssl_cert_file": "c.pem"}}, "test")
    with pytest.raises(InvalidArgument, match="grpc:// or grpcs://"):
        settings_from_sources({}, {"remote": {"url": "h:8500"}}, "test")
    with pytest.raises(InvalidArgument, match="grpc://host:port"):
        channel_target("grpc://gpu-box:8500/v1/models")
