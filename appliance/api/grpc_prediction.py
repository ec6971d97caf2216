"""TensorFlow Serving's gRPC PredictionService over the model manager: Predict, Classify, Regress, MultiInference
and GetModelMetadata, with TF Serving's checks, messages and status codes.

    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    add_prediction_service(server, manager, router=router, metrics=metrics)
    server.add_insecure_port("127.0.0.1:8500")
    # a client: PredictionServiceStub(channel).Predict(request, timeout=5)

The work is the REST API's: the manager hands out the version (the chosen one, or by number or label), the
servable checks and runs the request (batching, warm-up and the checks of its inputs included); only the wire
format is this module's. Importing it imports TensorFlow, whose packages hold the request and response protos.

With a remote TF Serving reached over gRPC, the Router's plan decides, as for REST: a call the remote takes is
sent to it serialized again from the parsed request (a few µs for small tensors, ~40 µs for a 600 KB image:
the parse a raw-bytes handler would save is about as cheap), with a trailing metadata entry
``x-appliance-backend: remote`` (``local`` when the local models answer). A REST remote (http://) is not
asked by gRPC calls: they are answered locally.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from ..errors import Code, InvalidArgument, NotFound, ServingError, Unavailable, Unimplemented
from ..serving.manager import ModelManager, ServableHandle
from ..serving.remote_grpc import RemoteGrpcTFServing
from ..serving.routing import LOCAL, REMOTE, Router
from ..serving.runtime import DEFAULT_SIGNATURE, Features
from .grpc_calls import abort, check_deadline, client_deadline, serving_error
from .metrics import Metrics
from .tensor_proto import from_array, to_array

log = logging.getLogger(__name__)

T = TypeVar("T")

# The "api" label of each method's requests in the appliance's metrics (see docs/metrics.md).
PREDICT, CLASSIFY, REGRESS = "grpc_predict", "grpc_classify", "grpc_regress"
MULTI_INFERENCE, GET_MODEL_METADATA = "grpc_multi_inference", "grpc_get_model_metadata"

CLASSIFY_METHOD, REGRESS_METHOD = "tensorflow/serving/classify", "tensorflow/serving/regress"
SIGNATURE_DEF = "signature_def"
BACKEND_METADATA = "x-appliance-backend"  # trailing metadata: the backend that answered, "local" or "remote"
_FEATURE_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


class _Call:
    """One RPC as its answer and the metrics need it: its deadline, and the model version that took it."""

    __slots__ = ("backend", "deadline", "model", "version")

    def __init__(self, deadline: float | None):
        self.deadline = deadline  # time.monotonic() at the client's deadline; None: the client set none
        self.model, self.backend = "", ""  # as the metrics label a request no version took
        self.version: int | None = None

    def took(self, handle: ServableHandle) -> None:
        self.model, self.version, self.backend = handle.name, handle.version, LOCAL

    def sent_to_remote(self, model: str, version: int | None) -> None:
        self.model, self.version, self.backend = model, version, REMOTE


def _requested_spec(request) -> model_pb2.ModelSpec | None:
    """The model_spec a request names (a MultiInferenceRequest: its first task's); None without one."""
    if hasattr(request, "tasks"):
        tasks = request.tasks
        return tasks[0].model_spec if tasks and tasks[0].HasField("model_spec") else None
    return request.model_spec if request.HasField("model_spec") else None


def _model_spec(request) -> model_pb2.ModelSpec:
    if not request.HasField("model_spec"):
        raise InvalidArgument("Missing ModelSpec")
    return request.model_spec


def _fill_model_spec(spec: model_pb2.ModelSpec, name: str, signature_name: str | None, version: int) -> None:
    """TF Serving's MakeModelSpec: the model, the signature that ran (none for metadata) and the version."""
    spec.name = name
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE
    spec.version.value = version


def _features(example) -> Features:
    """A tf.train.Example as the servables take examples: {name: (kind, values)} (see codec.decode_examples)."""
    features = {}
    for name, feature in example.features.feature.items():
        field = feature.WhichOneof("kind")
        features[name] = (_FEATURE_KINDS[field], list(getattr(feature, field).value)) if field else (None, [])
    return features


def _examples(request_input) -> tuple[Features | None, list[Features]]:
    """The context (None without one) and the examples of a request's Input; InvalidArgument when it has none."""
    kind = request_input.WhichOneof("kind")
    context = None
    examples: Sequence = ()
    if kind == "example_list":
        examples = request_input.example_list.examples
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context, examples = _features(with_context.context), with_context.examples
    if not examples:
        raise InvalidArgument("Input is empty.")
    return context, [_features(example) for example in examples]


def _classification_result(result, rows: list[list[tuple[str, float]]]) -> None:
    for classes in rows:
        classifications = result.classifications.add()
        for label, score in classes:
            classifications.classes.add(label=label, score=score)


def _regression_result(result, values: list[float]) -> None:
    for value in values:
        result.regressions.add(value=value)


# Each request type's method, and the response type the remote answers it with.
_FORWARDED = {
    "PredictRequest": ("Predict", predict_pb2.PredictResponse),
    "ClassificationRequest": ("Classify", classification_pb2.ClassificationResponse),
    "RegressionRequest": ("Regress", regression_pb2.RegressionResponse),
    "MultiInferenceRequest": ("MultiInference", inference_pb2.MultiInferenceResponse),
    "GetModelMetadataRequest": ("GetModelMetadata", get_model_metadata_pb2.GetModelMetadataResponse),
    "GetModelStatusRequest": ("GetModelStatus", get_model_status_pb2.GetModelStatusResponse),  # ModelService's
}


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """The PredictionService methods over one model manager; register it with :func:`add_prediction_service`."""

    def __init__(self, manager: ModelManager, router: Router | None, metrics: Metrics, tensor_content: bool):
        self._manager = manager
        self._router = router
        self._requests = metrics.requests
        self._tensor_content = tensor_content

    def _answer(self, api: str, request, context: grpc.ServicerContext, answer: Callable[..., T]) -> T:
        """``answer(request, call)``, or the RPC ended with its error's status; either way recorded as ``api``."""
        started = time.perf_counter()
        call = _Call(client_deadline(context))
        try:
            check_deadline(call.deadline)
            response = self._from_backends(request, context, call, answer)
        except Exception as e:
            error = serving_error(e, api)
            self._record(api, call, error.code.name, started)
            abort(context, error)
        self._record(api, call, "OK", started)
        return response

    def _record(self, api: str, call: _Call, code: str, started: float) -> None:
        self._requests.record(call.model, call.version, api, code, call.backend, time.perf_counter() - started)

    def _from_backends(self, request, context: grpc.ServicerContext, call: _Call, local: Callable[..., T]) -> T:
        """The answer of the backends the Router plans, in order: the one place each call's backend is decided.

        ``local(request, call)`` answers from the local models; the remote (when it is reached over gRPC) gets
        the request as it came, but for the model's name there and the chosen version (Router.remote_version).
        """
        spec = _requested_spec(request)
        if self._router is None or spec is None or not spec.name:
            return local(request, call)  # its checks answer a request that names no model
        name = spec.name
        choice = spec.WhichOneof("version_choice")  # a oneof: a request cannot name both a version and a label
        version = spec.version.value if choice == "version" else None
        label = spec.version_label if choice == "version_label" else None
        remote = self._router.remote
        plan = self._router.plan(name, version, label)
        if not isinstance(remote, RemoteGrpcTFServing):
            plan = [backend for backend in plan if backend == LOCAL]
            if not plan:
                raise Unimplemented(
                    f"Model {name} is served by the remote TF Serving only, which is reached over REST: gRPC calls "
                    "are answered by the local models. Call it over REST, or give the remote's gRPC address "
                    "(--remote_url grpc://host:8500)."
                )
        failure: ServingError | None = None
        for position, backend in enumerate(plan, 1):
            context.set_trailing_metadata(((BACKEND_METADATA, backend),))
            if backend == REMOTE:
                assert isinstance(remote, RemoteGrpcTFServing), "only a gRPC remote is planned"
                try:
                    return self._forward(remote, request, call, name, version, label)
                except Unavailable as e:  # every method is pure: safe to answer locally
                    failure = e
                    continue
            try:
                return local(request, call)
            except NotFound:
                if position == len(plan):
                    raise
        assert failure is not None, "a plan names a backend"
        raise failure

    def _forward(self, remote: RemoteGrpcTFServing, request, call: _Call, name: str, version, label):
        """The remote's answer to ``request``; its verdicts raised as ServingErrors, Unavailable when it gave none."""
        assert self._router is not None, "a remote is planned by a router"
        method, response_type = _FORWARDED[type(request).__name__]
        # A status names no version to list every one: the chosen version is for calls that run a model.
        wanted = version if method == "GetModelStatus" else self._router.remote_version(name, version, label)
        timeout = None if call.deadline is None else max(call.deadline - time.monotonic(), 0.0)
        try:
            response = remote.call(
                method,
                request.SerializeToString(),
                timeout,
                model=name,
                version=wanted if wanted != version else None,
                response_type=response_type,
            )
        except ServingError as e:
            if not isinstance(e, Unavailable) and e.code is not Code.NOT_FOUND:  # no version took it: unlabelled
                call.sent_to_remote(name, version)
            raise
        call.sent_to_remote(name, version)
        if remote.settings.remote_name(name) != name:  # the client hears of the model by the name it asked for
            for spec in _answered_specs(method, response):
                spec.name = name
        return response

    def model_status(self, request, context: grpc.ServicerContext, local: Callable[[Any], T]) -> T:
        """ModelService's GetModelStatus from the backends the Router plans, as this service's calls are answered:
        ``local(request)`` answers from the local models (see grpc_model_service.add_model_service)."""
        return self._from_backends(
            request, context, _Call(client_deadline(context)), lambda request, call: local(request)
        )

    def _acquire(self, spec: model_pb2.ModelSpec, call: _Call) -> ServableHandle:
        """The local version that answers: the chosen one, or the one the spec names by number or label."""
        name = spec.name
        if not name:
            raise InvalidArgument("ModelSpec has no name specified.")
        choice = spec.WhichOneof("version_choice")  # a oneof: a request cannot name both a version and a label
        version = spec.version.value if choice == "version" else None
        label = spec.version_label if choice == "version_label" else None
        handle = self._manager.acquire(name, version, label)
        call.took(handle)
        return handle

    # -- the methods -----------------------------------------------------------------------------------------

    def Predict(self, request, context):
        return self._answer(PREDICT, request, context, self._predict)

    def Classify(self, request, context):
        return self._answer(CLASSIFY, request, context, self._classify)

    def Regress(self, request, context):
        return self._answer(REGRESS, request, context, self._regress)

    def MultiInference(self, request, context):
        return self._answer(MULTI_INFERENCE, request, context, self._multi_inference)

    def GetModelMetadata(self, request, context):
        return self._answer(GET_MODEL_METADATA, request, context, self._metadata)

    def _predict(self, request, call: _Call) -> predict_pb2.PredictResponse:
        spec = _model_spec(request)
        with self._acquire(spec, call) as handle:
            inputs = {alias: to_array(tensor, alias) for alias, tensor in request.inputs.items()}
            # The client's deadline bounds the wait for a batch; the run itself is bounded by
            # --rest_api_timeout_in_ms, fixed in each TF session callable, rather than by the deadline.
            outputs = handle.servable.predict(
                spec.signature_name, inputs, request.output_filter, deadline=call.deadline
            )
            handle.record_predict(spec.signature_name, inputs, outputs)
        response = predict_pb2.PredictResponse()
        _fill_model_spec(response.model_spec, spec.name, spec.signature_name, handle.version)
        tensors = response.outputs
        for alias, value in outputs.items():
            tensors[alias].CopyFrom(from_array(value, self._tensor_content))
        return response

    def _classify(self, request, call: _Call) -> classification_pb2.ClassificationResponse:
        spec = _model_spec(request)
        with self._acquire(spec, call) as handle:
            context, examples = _examples(request.input)
            rows = handle.servable.classify(spec.signature_name, context, examples)
            handle.record_examples("classify", spec.signature_name, context, examples, rows)
        response = classification_pb2.ClassificationResponse()
        _fill_model_spec(response.model_spec, spec.name, spec.signature_name, handle.version)
        _classification_result(response.result, rows)
        return response

    def _regress(self, request, call: _Call) -> regression_pb2.RegressionResponse:
        spec = _model_spec(request)
        with self._acquire(spec, call) as handle:
            context, examples = _examples(request.input)
            values = handle.servable.regress(spec.signature_name, context, examples)
            handle.record_examples("regress", spec.signature_name, context, examples, values)
        response = regression_pb2.RegressionResponse()
        _fill_model_spec(response.model_spec, spec.name, spec.signature_name, handle.version)
        _regression_result(response.result, values)
        return response

    def _multi_inference(self, request, call: _Call) -> inference_pb2.MultiInferenceResponse:
        """TF Serving's MultiInference: every task (classify or regress) on one model's version, one input."""
        tasks = request.tasks
        spec = tasks[0].model_spec if tasks and tasks[0].HasField("model_spec") else model_pb2.ModelSpec()
        response = inference_pb2.MultiInferenceResponse()
        with self._acquire(spec, call) as handle:
            servable = handle.servable
            _check_tasks(tasks, servable.signatures)
            context, examples = _examples(request.input)
            for task in tasks:
                result = response.results.add()
                signature_name = task.model_spec.signature_name
                if task.method_name == CLASSIFY_METHOD:
                    rows = servable.classify(signature_name, context, examples)
                    handle.record_examples("classify", signature_name, context, examples, rows)
                    _classification_result(result.classification_result, rows)
                else:
                    values = servable.regress(signature_name, context, examples)
                    handle.record_examples("regress", signature_name, context, examples, values)
                    _regression_result(result.regression_result, values)
                _fill_model_spec(result.model_spec, task.model_spec.name, signature_name, handle.version)
        return response

    def _metadata(self, request, call: _Call) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = _model_spec(request)
        if not request.metadata_field:
            raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF:
                raise InvalidArgument(f"Metadata field {field} is not supported")
        with self._acquire(spec, call) as handle:
            signature_defs = handle.servable.signature_defs_json()
        # The servables describe their SignatureDefs as proto3 JSON (the REST metadata), which reads back exactly.
        signature_def_map = json_format.ParseDict(
            {SIGNATURE_DEF: signature_defs}, get_model_metadata_pb2.SignatureDefMap()
        )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_model_spec(response.model_spec, handle.name, None, handle.version)
        response.metadata[SIGNATURE_DEF].Pack(signature_def_map)
        return response


def _answered_specs(method: str, response) -> list[model_pb2.ModelSpec]:
    """The model_specs of a remote's answer to ``method`` (a status names none)."""
    if method == "MultiInference":
        return [result.model_spec for result in response.results]
    return [] if method == "GetModelStatus" else [response.model_spec]


def _check_tasks(tasks, signatures) -> None:
    """TF Serving's checks of a MultiInferenceRequest's tasks, in its order and words, before any runs."""
    model_name = ""
    seen: set[str] = set()
    for task in tasks:
        name = task.model_spec.name
        if not name:
            raise InvalidArgument("Found ModelSpec with an empty model name.")
        if model_name and name != model_name:
            raise InvalidArgument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        model_name = name
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen:
            raise InvalidArgument(f"Duplicate evaluation of signature: {signature_name}")
        seen.add(signature_name)
        if signature_name not in signatures:
            raise InvalidArgument(f"Requested signature not found in model graph: {signature_name}")
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")


def add_prediction_service(
    server: grpc.Server,
    manager: ModelManager,
    *,
    router: Router | None = None,
    metrics: Metrics | None = None,
    tensor_content: bool = False,
) -> PredictionService:
    """Serve TF Serving's PredictionService for ``manager``'s models on ``server``; returns the service.

    Every call is counted and timed in ``metrics`` (by default, metrics of its own); ``tensor_content`` writes
    output tensors as raw bytes (``--enable_serialization_as_tensor_content``) rather than typed fields.
    """
    service = PredictionService(manager, router, metrics or Metrics(), tensor_content)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    return service
