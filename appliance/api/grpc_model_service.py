"""TF Serving's gRPC ModelService: GetModelStatus and HandleReloadConfigRequest.

Status reads the manager as the REST status does (every version newest first, or the one asked
for; a label lists every version, as in TF Serving); given ``route_status``, the PredictionService's
routing, a model the Router plans for a gRPC remote has its status asked of the remote, as the REST
status is, with the same ``x-appliance-backend`` trailing metadata. A reload hands the request's
``ModelServerConfig`` to ``apply_config``; a failure is the gRPC status of the error's code with
its message, as TF Serving answers it.

    server = grpc.server(ThreadPoolExecutor(8))
    add_model_service(server, manager, app.apply_config)
    ModelServiceStub(channel).GetModelStatus(GetModelStatusRequest(model_spec=ModelSpec(name="digits")))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from ..errors import InvalidArgument
from ..serving.manager import ModelManager, VersionStatus
from .grpc_calls import abort, serving_error

ApplyConfig = Callable[[model_server_config_pb2.ModelServerConfig], None]  # e.g. Application.apply_config
# request, context, the local answer -> the planned backends' answer: e.g. PredictionService.model_status
RouteStatus = Callable[[Any, grpc.ServicerContext, Callable[[Any], Any]], Any]


def _version_status(status: VersionStatus) -> get_model_status_pb2.ModelVersionStatus:
    proto = get_model_status_pb2.ModelVersionStatus
    answer = proto(version=status.version, state=proto.State.Value(status.state.value))
    if status.error is not None:
        answer.status.error_code = status.error.code.value
        answer.status.error_message = status.error.message
    return answer


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """The ModelService over one model manager; ``apply_config`` carries out a reload."""

    def __init__(self, manager: ModelManager, apply_config: ApplyConfig, route_status: RouteStatus | None = None):
        self._manager = manager
        self._apply_config = apply_config
        self._route_status = route_status

    def GetModelStatus(self, request, context):
        def status():
            if not request.HasField("model_spec"):
                raise InvalidArgument("Missing ModelSpec")
            if self._route_status is None:
                return self._local_status(request)
            return self._route_status(request, context, self._local_status)

        return _answer(status, context)

    def _local_status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        statuses = self._manager.status(spec.name, version)  # TF Serving ignores a label here
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=map(_version_status, statuses))

    def HandleReloadConfigRequest(self, request, context):
        def reload():
            if request.config.WhichOneof("config") != "model_config_list":
                raise InvalidArgument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported"
                )
            self._apply_config(request.config)
            return model_management_pb2.ReloadConfigResponse()  # status: error_code OK

        return _answer(reload, context)


def _answer(call: Callable, context: grpc.ServicerContext):
    """``call()``'s response; a ServingError becomes the gRPC status of the same name, anything else INTERNAL."""
    try:
        return call()
    except Exception as e:
        abort(context, serving_error(e, "ModelService"))


def add_model_service(
    server: grpc.Server, manager: ModelManager, apply_config: ApplyConfig, route_status: RouteStatus | None = None
) -> None:
    """Serve TF Serving's ModelService on ``server`` (before it starts); ``route_status``: see the module's doc."""
    service = ModelService(manager, apply_config, route_status)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(service, server)
