"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` on the appliance's gRPC port.

    server = grpc.server(ThreadPoolExecutor(8))
    add_inference_service(server, manager, metrics)
    # a client: tritonclient.grpc.InferenceServerClient("127.0.0.1:8500").infer("digits", inputs)

The messages and the servicer base are ``tritonclient.grpc``'s generated code (Triton's grpc_service.proto: KServe's
grpc_predict_v2.proto with the same package, service and field numbers, plus the repository, statistics and
configuration calls Triton's tools make). The work is :mod:`.dataplane`'s; this module reads inputs from
``raw_input_contents`` (one per input, in order) or each input's typed ``contents``, and writes outputs as
``raw_output_contents``, as Triton does. Errors take the gRPC status of their code's name, as TF Serving's gRPC
API does. The local models answer every call: a remote TF Serving speaks no v2.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import grpc
import numpy as np
from google.protobuf import json_format

# tritonclient ships no type information (pyproject's mypy section lists the other such packages)
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from ...errors import InvalidArgument, NotFound, Unimplemented
from ...serving.manager import ModelManager
from ...serving.routing import LOCAL
from ..grpc_calls import abort, check_deadline, client_deadline, serving_error
from ..metrics import Metrics
from .dataplane import InferenceProtocol, InferRequest, version_number
from .datatypes import array_datatype, element_count, from_raw, numpy_dtype, to_raw
from .repository import ModelRepository
from .statistics import ModelStatistics

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# The "api" label of each call's requests in the appliance's metrics.
INFER, METADATA, READY, HEALTH = "grpc_v2_infer", "grpc_v2_metadata", "grpc_v2_ready", "grpc_v2_health"
REPOSITORY, STATS = "grpc_v2_repository", "grpc_v2_stats"

# The InferTensorContents field each datatype's values come in (FP16 and BF16 have none: raw contents only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_NO_PARAMETERS: Mapping[str, object] = {}


class _Call:
    """One RPC as its answer and the metrics need it: its deadline, and the model version that took it."""

    __slots__ = ("deadline", "model", "version")

    def __init__(self, deadline: float | None):
        self.deadline = deadline  # time.monotonic() at the client's deadline; None: the client set none
        self.model = ""
        self.version: int | None = None


def _parameters(parameters) -> Mapping[str, object]:
    """A request's parameters map (InferParameter or ModelRepositoryParameter values) as plain values."""
    if not parameters:
        return _NO_PARAMETERS
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param") for key, value in parameters.items()
    }


def _input_arrays(request) -> dict[str, np.ndarray]:
    """The request's inputs by name: from its raw_input_contents (one per input, in order), else their contents."""
    tensors = request.inputs
    raw = request.raw_input_contents
    if raw:
        if len(raw) != len(tensors):
            raise InvalidArgument(
                f"the request has {len(raw)} raw_input_contents for {len(tensors)} inputs: send one per input, in "
                "the inputs' order, or none and each input's contents"
            )
        inputs = {}
        for tensor, data in zip(tensors, raw):
            if tensor.HasField("contents"):
                raise InvalidArgument(
                    f"input {tensor.name!r} has contents, but the request sends raw_input_contents: send either"
                )
            inputs[tensor.name] = from_raw(data, tensor.datatype, tensor.shape, tensor.name)
    else:
        inputs = {tensor.name: _from_contents(tensor) for tensor in tensors}
    if len(inputs) != len(tensors):
        raise InvalidArgument("the request names an input more than once")
    return inputs


def _from_contents(tensor) -> np.ndarray:
    """An input's typed ``contents`` as an array of its datatype and shape."""
    name, datatype = tensor.name, tensor.datatype
    dtype = numpy_dtype(datatype)  # InvalidArgument for a datatype the protocol has not
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise InvalidArgument(
            f"input {name!r} is {datatype}, which has no contents field: send it in raw_input_contents"
        )
    values = getattr(tensor.contents, field)
    count = element_count(tensor.shape, name)
    if len(values) != count:
        raise InvalidArgument(
            f"input {name!r} has {len(values)} values in contents.{field}, but its shape {list(tensor.shape)} takes "
            f"{count}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(tensor.shape)
    try:
        return np.array(values, dtype=dtype).reshape(tensor.shape)
    except OverflowError:
        raise InvalidArgument(f"input {name!r} has a value out of the range of {datatype}") from None


def _tensor_metadata(tensors: list[dict]) -> list:
    TensorMetadata = service_pb2.ModelMetadataResponse.TensorMetadata
    return [TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in tensors]


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The Open Inference Protocol's gRPC calls over one model manager; see :func:`add_inference_service`."""

    def __init__(self, manager: ModelManager, metrics: Metrics):
        self._protocol = InferenceProtocol(manager)
        self._repository = ModelRepository(manager)
        self._statistics = ModelStatistics(manager, metrics)
        self._requests = metrics.requests

    def _answer(self, api: str, context: grpc.ServicerContext, answer: Callable[[_Call], T]) -> T:
        """``answer(call)``, or the RPC ended with its error's status; either way recorded as ``api``.

        ``answer`` labels the call with the model it found: a name no model has is not a label, as the number of
        labels must not grow with what clients send.
        """
        started = time.perf_counter()
        call = _Call(client_deadline(context))
        try:
            check_deadline(call.deadline)
            response = answer(call)
        except Exception as e:
            error = serving_error(e, api)
            self._record(api, call, error.code.name, started)
            abort(context, error)
        self._record(api, call, "OK", started)
        return response

    def _record(self, api: str, call: _Call, code: str, started: float) -> None:
        backend = LOCAL if call.model else ""  # as a call no model took is labelled
        self._requests.record(call.model, call.version, api, code, backend, time.perf_counter() - started)

    # -- health and metadata ---------------------------------------------------------------------------------

    def ServerLive(self, request, context):
        return self._answer(HEALTH, context, lambda call: service_pb2.ServerLiveResponse(live=self._protocol.live()))

    def ServerReady(self, request, context):
        return self._answer(HEALTH, context, lambda call: service_pb2.ServerReadyResponse(ready=self._protocol.ready()))

    def ModelReady(self, request, context):
        def ready(call: _Call) -> service_pb2.ModelReadyResponse:
            try:
                answer = self._protocol.model_ready(request.name, request.version)
            except NotFound:  # as Triton answers: a model it does not serve is not ready
                return service_pb2.ModelReadyResponse(ready=False)
            call.model = request.name
            return service_pb2.ModelReadyResponse(ready=answer)

        return self._answer(READY, context, ready)

    def ServerMetadata(self, request, context):
        def metadata(call: _Call) -> service_pb2.ServerMetadataResponse:
            return service_pb2.ServerMetadataResponse(**self._protocol.server_metadata())

        return self._answer(METADATA, context, metadata)

    def ModelMetadata(self, request, context):
        def metadata(call: _Call) -> service_pb2.ModelMetadataResponse:
            answer = self._protocol.model_metadata(request.name, request.version)
            call.model = request.name
            return service_pb2.ModelMetadataResponse(
                name=answer["name"],
                versions=answer["versions"],
                platform=answer["platform"],
                inputs=_tensor_metadata(answer["inputs"]),
                outputs=_tensor_metadata(answer["outputs"]),
            )

        return self._answer(METADATA, context, metadata)

    def ModelConfig(self, request, context):
        """Triton's model configuration as far as a SavedModel has one: what perf_analyzer and model-analyzer read."""

        def config(call: _Call) -> service_pb2.ModelConfigResponse:
            document = self._protocol.model_config(request.name, request.version)
            call.model, call.version = request.name, version_number(request.version)
            return service_pb2.ModelConfigResponse(
                config=json_format.ParseDict(document, model_config_pb2.ModelConfig())
            )

        return self._answer(METADATA, context, config)

    # -- inference -------------------------------------------------------------------------------------------

    def ModelInfer(self, request, context):
        return self._answer(INFER, context, lambda call: self._infer(request, call))

    def _infer(self, request, call: _Call) -> service_pb2.ModelInferResponse:
        outputs = tuple(_requested_output(output) for output in request.outputs)
        with self._protocol.acquire(request.model_name, request.model_version) as handle:
            call.model, call.version = handle.name, handle.version
            inputs = _input_arrays(request)
            parameters = _parameters(request.parameters)
            result = self._protocol.infer(handle, InferRequest(inputs, outputs, request.id, parameters, call.deadline))
        response = service_pb2.ModelInferResponse(
            model_name=result.model_name, model_version=str(result.model_version), id=request.id
        )
        add_output = response.outputs.add
        raw = []
        for name, array in result.outputs.items():
            add_output(name=name, datatype=array_datatype(array), shape=array.shape)
            raw.append(to_raw(array))
        response.raw_output_contents.extend(raw)
        return response

    def ModelStreamInfer(self, request_iterator, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "ModelStreamInfer (decoupled models, streaming) is not served: call ModelInfer for each request",
        )

    # -- the repository and statistics extensions ------------------------------------------------------------

    def ModelStatistics(self, request, context):
        def statistics(call: _Call) -> service_pb2.ModelStatisticsResponse:
            document = self._statistics.models(request.name or None, request.version or None)
            call.model = request.name
            return json_format.ParseDict(document, service_pb2.ModelStatisticsResponse(), ignore_unknown_fields=True)

        return self._answer(STATS, context, statistics)

    def RepositoryIndex(self, request, context):
        def index(call: _Call) -> service_pb2.RepositoryIndexResponse:
            _one_repository(request.repository_name)
            ModelIndex = service_pb2.RepositoryIndexResponse.ModelIndex
            models = self._repository.index(ready_only=request.ready)
            return service_pb2.RepositoryIndexResponse(models=[ModelIndex(**model) for model in models])

        return self._answer(REPOSITORY, context, index)

    def RepositoryModelLoad(self, request, context):
        def load(call: _Call) -> service_pb2.RepositoryModelLoadResponse:
            _one_repository(request.repository_name)
            self._repository.load(request.model_name, _parameters(request.parameters))
            call.model = request.model_name
            return service_pb2.RepositoryModelLoadResponse()

        return self._answer(REPOSITORY, context, load)

    def RepositoryModelUnload(self, request, context):
        def unload(call: _Call) -> service_pb2.RepositoryModelUnloadResponse:
            _one_repository(request.repository_name)
            self._repository.unload(request.model_name, _parameters(request.parameters))
            call.model = request.model_name
            return service_pb2.RepositoryModelUnloadResponse()

        return self._answer(REPOSITORY, context, unload)

    # -- Triton's calls the appliance has no use for ---------------------------------------------------------

    def SystemSharedMemoryStatus(self, request, context):
        _not_served(context, "the system shared memory extension")

    SystemSharedMemoryRegister = SystemSharedMemoryUnregister = SystemSharedMemoryStatus

    def CudaSharedMemoryStatus(self, request, context):
        _not_served(context, "the CUDA shared memory extension")

    CudaSharedMemoryRegister = CudaSharedMemoryUnregister = CudaSharedMemoryStatus

    def TraceSetting(self, request, context):
        _not_served(context, "the trace extension")

    def LogSettings(self, request, context):
        _not_served(context, "the logging extension (see the appliance's --log_level)")


def _requested_output(output) -> str:
    """The name of an output a request asks for; Triton's classification extension is refused."""
    if "classification" in output.parameters:
        raise Unimplemented(
            f"output {output.name!r} asks for the classification extension, which is not served: ask for the "
            "output itself"
        )
    return output.name


def _one_repository(name: str) -> None:
    if name:
        raise Unimplemented(f"repository_name {name!r}: the appliance has one model repository; leave it empty")


def _not_served(context: grpc.ServicerContext, what: str) -> None:
    context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{what} is not served by the appliance")


def add_inference_service(
    server: grpc.Server, manager: ModelManager, metrics: Metrics | None = None
) -> InferenceService:
    """Serve ``inference.GRPCInferenceService`` for ``manager``'s models on ``server`` (before it starts).

    Every call is counted and timed in ``metrics`` (by default, metrics of its own); returns the service.
    """
    service = InferenceService(manager, metrics or Metrics())
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    return service
