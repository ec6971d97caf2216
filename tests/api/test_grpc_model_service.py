"""TF Serving's gRPC ModelService, called through tensorflow-serving-api's own stub.

A real grpc server on a loopback port 0 over a real manager, serving TF Serving's test models in
place; reloads go through the same conversion of a ``ModelServerConfig`` the appliance uses.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from appliance.api.grpc_model_service import add_model_service
from appliance.config import ModelConfig, PolicyKind, VersionPolicy, model_configs
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ..conftest import MODELS

State = get_model_status_pb2.ModelVersionStatus.State


class Served:
    """A manager serving ``configs`` and a gRPC server with only the ModelService, and a stub to it."""

    def __init__(self, configs):
        self.manager = ModelManager(Repository(configs), LocalTFRuntime("cpu", warmup=False), poll_seconds=0)
        self.manager.poll()
        self.server = grpc.server(ThreadPoolExecutor(4))
        add_model_service(self.server, self.manager, self.apply_config)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def apply_config(self, config) -> None:
        self.manager.reload_config(model_configs(config, Path.cwd()))

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None)
        self.manager.stop()


@pytest.fixture
def served(tfs_testdata):
    two = ModelConfig("two", tfs_testdata / "saved_model_half_plus_two_2_versions", VersionPolicy(PolicyKind.ALL))
    served = Served([two])
    yield served
    served.close()


def status(served: Served, name: str, version: int | None = None, label: str | None = None):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return served.stub.GetModelStatus(request, timeout=30)


def versions(response) -> list[tuple[int, int, int]]:
    return [(s.version, s.state, s.status.error_code) for s in response.model_version_status]


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def reload_request(*entries: tuple[str, Path], labels: dict | None = None):
    request = model_management_pb2.ReloadConfigRequest()
    listed = request.config.model_config_list
    listed.SetInParent()
    for name, base_path in entries:
        config = listed.config.add(name=name, base_path=str(base_path), model_platform="tensorflow")
        config.model_version_policy.all.SetInParent()
        config.version_labels.update(labels or {})
    return request


def test_status_of_every_version_one_version_and_by_label(served):
    both = [(124, State.AVAILABLE, 0), (123, State.AVAILABLE, 0)]
    assert versions(status(served, "two")) == both
    assert versions(status(served, "two", version=123)) == [(123, State.AVAILABLE, 0)]
    assert versions(status(served, "two", label="stable")) == both, "TF Serving's status ignores a label"


def test_status_errors_are_tf_servings(served):
    unknown = rpc_error(lambda: status(served, "nope"))
    assert unknown.code() is grpc.StatusCode.NOT_FOUND
    assert unknown.details().startswith("Could not find any versions of model nope")
    missing = rpc_error(lambda: status(served, "two", version=7))
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    assert missing.details().startswith("Could not find version 7 of model two")
    no_spec = rpc_error(lambda: served.stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(), timeout=30))
    assert (no_spec.code(), no_spec.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")


def test_status_of_a_version_that_failed_carries_its_error(served, tmp_path, tfs_testdata):
    broken = tmp_path / "broken"
    shutil.copytree(MODELS / "digits" / "1", broken / "1")
    (broken / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    reload_error = rpc_error(
        lambda: served.stub.HandleReloadConfigRequest(reload_request(("broken", broken)), timeout=120)
    )
    assert reload_error.code() is grpc.StatusCode.UNKNOWN
    assert reload_error.details().startswith("1 model(s) did not become available: {{{name: broken version: 1}")
    [failed] = status(served, "broken").model_version_status
    [error] = served.manager.status("broken")
    assert failed.state == State.END
    assert (failed.status.error_code, failed.status.error_message) == (error.error.code.value, error.error.message)


def test_reload_adds_and_removes_models(served, tfs_testdata):
    two = tfs_testdata / "saved_model_half_plus_two_2_versions"
    three = tfs_testdata / "saved_model_half_plus_three"
    response = served.stub.HandleReloadConfigRequest(reload_request(("two", two), ("three", three)), timeout=120)
    assert response.status.error_code == 0 and response.status.error_message == ""
    assert versions(status(served, "three")) == [(123, State.AVAILABLE, 0)]
    response = served.stub.HandleReloadConfigRequest(reload_request(("three", three)), timeout=120)
    assert response.status.error_code == 0
    gone = rpc_error(lambda: status(served, "two"))
    assert gone.code() is grpc.StatusCode.NOT_FOUND
    assert served.manager.model_names() == ["three"]


def test_reload_refusals_are_tf_servings_and_keep_the_models(served, tfs_testdata):
    two = tfs_testdata / "saved_model_half_plus_two_2_versions"
    duplicate = rpc_error(lambda: served.stub.HandleReloadConfigRequest(reload_request(("a", two), ("a", two))))
    assert duplicate.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert duplicate.details() == "Illegal to list model a multiple times in config list"
    empty = rpc_error(lambda: served.stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest()))
    assert empty.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert empty.details() == (
        "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported"
    )
    label = rpc_error(lambda: served.stub.HandleReloadConfigRequest(reload_request(("two", two), labels={"x": 9})))
    assert label.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert label.details() == (
        "Request to assign label to version 9 of model two, which is not currently available for inference"
    )
    assert served.manager.model_names() == ["two"] and served.manager.summary("two").labels == {}


def test_a_custom_model_config_is_not_supported(served):
    request = model_management_pb2.ReloadConfigRequest(
        config=model_server_config_pb2.ModelServerConfig(custom_model_config={})
    )
    refused = rpc_error(lambda: served.stub.HandleReloadConfigRequest(request))
    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT
