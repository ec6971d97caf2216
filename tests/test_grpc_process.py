"""The gRPC API in real ``appliance`` processes: both addresses printed and answering, TF Serving's services through
its stubs, either API off, a busy gRPC port, the UNIX socket, a bad TLS config. (The discovery file's gRPC fields:
tests/test_desktop.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from .conftest import MODELS, REPO, ApplianceProcess, user_dirs_env

TIMEOUT = 30
SERVING = health_pb2.HealthCheckResponse.SERVING


def health(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=TIMEOUT).status


def becomes_serving(target: str, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health(target) == SERVING:
            return True
        time.sleep(0.1)
    return False


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def model_status(channel: grpc.Channel, name: str) -> list[tuple[int, str]]:
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=name))
    answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=TIMEOUT)
    return [
        (s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state)) for s in answer.model_version_status
    ]


def test_serve_prints_both_addresses_and_both_answer(bundled_server):
    assert bundled_server.url.startswith("http://127.0.0.1:")
    assert bundled_server.grpc_address.startswith("127.0.0.1:")
    assert requests.get(bundled_server.url + "/health", timeout=TIMEOUT).json()["status"] == "ready"
    assert becomes_serving(bundled_server.grpc_address)
    for name in ("ModelService", "PredictionService", "tensorflow.serving.PredictionService"):
        assert health(bundled_server.grpc_address, name) == SERVING  # the short names: TF Serving's
    with grpc.insecure_channel(bundled_server.grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT)
        for service in ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
            request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
            (described,) = stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT)
            assert described.WhichOneof("message_response") == "file_descriptor_response", service  # for grpcurl
        rest = requests.get(bundled_server.url + "/v1/models/digits", timeout=TIMEOUT).json()["model_version_status"]
        assert model_status(channel, "digits") == [(int(s["version"]), s["state"]) for s in rest]
    assert {service.name for service in answer.list_services_response.service} >= {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "tensorflow.serving.ModelService",
        "tensorflow.serving.PredictionService",
    }


def test_without_a_token_in_use_a_config_naming_folders_is_refused(tmp_path):
    """On loopback with no token, no local program may make the appliance serve folders it names."""
    server = ApplianceProcess("--models_dir", str(MODELS), home=tmp_path)
    try:
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.config.add(name="elsewhere", base_path=str(MODELS / "digits"))
        with grpc.insecure_channel(server.grpc_address) as channel:
            try:
                model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                    model_management_pb2.ReloadConfigRequest(config=config), timeout=TIMEOUT
                )
            except grpc.RpcError as refused:
                assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "--require_token_for_control" in refused.details()
            else:
                raise AssertionError("a config naming folders was applied with no token in use")
            assert model_status(channel, "iris"), "nothing was changed"
            try:
                model_status(channel, "elsewhere")
            except grpc.RpcError as unknown:
                assert unknown.code() == grpc.StatusCode.NOT_FOUND
            else:
                raise AssertionError("the refused config's model is served")
    finally:
        server.stop()


def test_require_token_for_control_guards_the_grpc_config_reload(tmp_path):
    served = tmp_path / "models.config"
    served.write_text(
        f'model_config_list {{ config {{ name: "digits" base_path: "{MODELS / "digits"}" }} '
        f'config {{ name: "iris" base_path: "{MODELS / "iris"}" }} }}'
    )
    server = ApplianceProcess("--require_token_for_control", "--model_config_file", str(served), home=tmp_path)
    try:
        token = (tmp_path / "config" / "appliance" / "token").read_text().strip()
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.config.add(name="digits", base_path=str(MODELS / "digits"))
        request = model_management_pb2.ReloadConfigRequest(config=config)
        with grpc.insecure_channel(server.grpc_address) as channel:
            reload = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest
            try:
                reload(request, timeout=TIMEOUT)
            except grpc.RpcError as refused:
                assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            else:
                raise AssertionError("reloaded without the token")
            assert model_status(channel, "iris"), "status needs no token; nothing was changed"
            reload(request, timeout=120, metadata=(("authorization", f"Bearer {token}"),))
            assert model_status(channel, "digits")
            try:
                model_status(channel, "iris")
            except grpc.RpcError as gone:
                assert gone.code() == grpc.StatusCode.NOT_FOUND
            else:
                raise AssertionError("iris is still served after a config without it")
    finally:
        assert server.stop() == 0


def test_with_the_grpc_api_off_only_rest_is_served():
    server = ApplianceProcess("--enable_grpc_api=false", wait_ready=False)
    try:
        assert server.grpc_address is None
        assert requests.get(server.url + "/health", timeout=TIMEOUT).status_code in (200, 503)
    finally:
        assert server.stop() == 0


def test_with_the_rest_api_off_only_grpc_is_served():
    server = ApplianceProcess("--enable_rest_api=false", wait_ready=False)
    try:
        assert server.url is None
        assert becomes_serving(server.grpc_address)
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.stderr


def test_both_apis_off_is_a_clear_error():
    result = run("-m", "appliance", "serve", "--enable_rest_api=false", "--enable_grpc_api=false")
    assert result.returncode == 2
    assert "leave nothing to serve" in result.stderr and "Traceback" not in result.stderr


def test_a_busy_grpc_port_is_a_one_line_error_said_before_tensorflow_is_imported(tmp_path):
    env = {**os.environ, **user_dirs_env(tmp_path)}
    env.pop("DISPLAY", None)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for command in (["serve"], []):  # no command: the desktop app
            result = run(
                "-X", "importtime", "-m", "appliance", *command, "--rest_api_port", "0", "--port", str(port), env=env
            )
            imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
            said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
            assert "appliance.grpc_server" in imported, "-X importtime lists the imports"
            assert not [name for name in imported if name.split(".")[0] == "tensorflow"], command
            assert result.returncode == 2, result.stderr
            assert said == [
                f"appliance: error: 127.0.0.1:{port} is already in use: stop the program listening there, "
                "or pass --port with another port (0 picks a free one)"
            ], command


def test_the_unix_socket_serves_and_is_removed_at_exit(tmp_path):
    path = tmp_path / "appliance.sock"
    server = ApplianceProcess("--grpc_socket_path", str(path), wait_ready=False)
    try:
        assert path.is_socket()
        assert becomes_serving(f"unix:{path}")
    finally:
        assert server.stop() == 0
    assert not path.exists()


def test_a_bad_ssl_config_file_is_a_clear_error_at_start(tmp_path):
    config = tmp_path / "ssl.config"
    config.write_text('server_key: "not a key"\nserver_cert: "not a certificate"\n')
    result = run("-m", "appliance", "serve", "--rest_api_port", "0", "--port", "0", "--ssl_config_file", str(config))
    assert result.returncode == 2, result.stderr
    assert f"appliance: error: gRPC refused the server_key and server_cert of --ssl_config_file {config}" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def run_in_process(saved_model: Path, inputs: dict[str, np.ndarray], signature: str = "serving_default") -> dict:
    """The SavedModel's outputs computed here, in TensorFlow directly: what the served answer must equal."""
    import tensorflow as tf

    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(saved_model))
        signature_def = meta_graph.signature_def[signature]
        feeds = {signature_def.inputs[name].name: value for name, value in inputs.items()}
        fetches = {name: tensor.name for name, tensor in signature_def.outputs.items()}
        return session.run(fetches, feeds)


def test_predict_through_tf_serving_stubs_on_the_printed_port(tfs_direct_server, tfs_testdata):
    """TF Serving's example client pattern (mnist_client.py), unchanged, against the printed gRPC address."""
    import tensorflow as tf

    x = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x, shape=list(x.shape)))
    with grpc.insecure_channel(tfs_direct_server.grpc_address) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=TIMEOUT)
    expected = run_in_process(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123", {"x": x})["y"]
    assert list(result.outputs["y"].float_val) == expected.ravel().tolist()
    assert result.model_spec.name == "default" and result.model_spec.version.value == 123
