"""TF Serving's REST API answered by a remote TF Serving that speaks gRPC: JSON to the gRPC request and back.

    rest = GrpcRemoteREST(remote)                       # remote: a RemoteGrpcTFServing
    rest.answer(target, version, body)                  # -> the bottle.HTTPResponse TF Serving's REST would give

Predict decodes the JSON with the REST API's codec, to the dtypes of the remote's signature (GetModelMetadata,
kept per model, version and label until the remote's versions change), sends a PredictRequest and writes its
outputs in the request's format (row or columnar). Classify and regress send the examples as tf.train.Examples;
status and metadata come from GetModelStatus and GetModelMetadata, written as for the local models. The remote's
verdicts are answered with their HTTP status (responses.HTTP_STATUS); Unavailable is raised, for the caller's
fallback. Importing this module imports TensorFlow's protos (see :mod:`.tensor_proto`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import bottle
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from ..errors import Code, InvalidArgument, ServingError, Unavailable
from ..serving.manager import State, VersionStatus
from ..serving.remote_grpc import RemoteGrpcTFServing
from ..serving.runtime import DEFAULT_SIGNATURE, Features
from . import codec
from .responses import dumps, error_response, json_response
from .tensor_proto import from_array, to_array
from .tfserving import ModelPath, metadata_document, status_document

SIGNATURE_DEF = "signature_def"
MAX_CACHED = 256  # models, versions and labels whose signatures are kept
_FEATURE_LISTS = {"bytes": "bytes_list", "float": "float_list", "int64": "int64_list"}


class _Signatures:
    """What a remote model version's metadata says: the version that answered and each signature's input dtypes."""

    def __init__(self, response: get_model_metadata_pb2.GetModelMetadataResponse):
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF].Unpack(signature_defs)
        self.version = response.model_spec.version.value
        self.defs = signature_defs.signature_def
        self.input_dtypes = {
            name: {alias: types_pb2.DataType.Name(info.dtype) for alias, info in signature.inputs.items()}
            for name, signature in self.defs.items()
        }

    def json(self) -> dict:
        """Every SignatureDef as the local servables describe theirs (proto3 JSON, every field written)."""
        return {
            name: json_format.MessageToDict(
                signature, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for name, signature in self.defs.items()
        }


def _example(features: Features) -> example_pb2.Example:
    """A tf.train.Example of the codec's features ({name: (kind, values)}; kind None: an empty feature)."""
    example = example_pb2.Example()
    feature_map = example.features.feature
    for name, (kind, values) in features.items():
        feature = feature_map[name]  # created empty when it has no kind
        if kind is not None:
            getattr(feature, _FEATURE_LISTS[kind]).value.extend(values)
    return example


def _fill_input(request_input, context: Features | None, examples: Sequence[Features]) -> None:
    if context is None:
        request_input.example_list.examples.extend(map(_example, examples))
    else:
        request_input.example_list_with_context.context.CopyFrom(_example(context))
        request_input.example_list_with_context.examples.extend(map(_example, examples))


def _version_status(proto: get_model_status_pb2.ModelVersionStatus) -> VersionStatus:
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name(proto.state)
    state = State[state_name] if state_name in State.__members__ else State.START
    error = None
    if proto.status.error_code:
        code = Code(proto.status.error_code) if proto.status.error_code in Code._value2member_map_ else Code.UNKNOWN
        error = ServingError(proto.status.error_message, code)
    return VersionStatus(proto.version, state, error)


class GrpcRemoteREST:
    """The /v1 handlers over a remote TF Serving's gRPC API."""

    def __init__(self, remote: RemoteGrpcTFServing):
        self._remote = remote
        self._signatures: dict[tuple, tuple[frozenset[int], _Signatures]] = {}
        self._lock = threading.Lock()
        self._verbs = {"predict": self._predict, "classify": self._classify, "regress": self._regress}

    def answer(self, target: ModelPath, version: int | None, body: bytes | None) -> bottle.HTTPResponse:
        """The answer to ``target`` (``body`` for predict, classify and regress) from the remote's ``version``
        (None: the request's label, or the remote's latest); its verdicts as TF Serving's REST error answers."""
        spec = model_pb2.ModelSpec(name=self._remote.settings.remote_name(target.name))
        if version is not None:
            spec.version.value = version
        elif target.label:
            spec.version_label = target.label
        try:
            if target.action in self._verbs:
                assert body is not None, "predict, classify and regress have a body"
                return self._verbs[target.action](target, spec, body)
            if target.action == "metadata":
                signatures = self._metadata(spec)
                return json_response(metadata_document(target.name, signatures.version, signatures.json()))
            return self._status(spec)
        except Unavailable:
            raise
        except ServingError as e:
            return error_response(e)

    # -- predict -------------------------------------------------------------

    def _predict(self, target: ModelPath, spec: model_pb2.ModelSpec, body: bytes) -> bottle.HTTPResponse:
        document = codec.parse_predict_document(body)
        signature_name = codec.signature_name(document)
        signatures = self._cached_metadata(target.name, spec)
        name = signature_name or DEFAULT_SIGNATURE
        input_dtypes = signatures.input_dtypes.get(name)
        if input_dtypes is None:
            listed = ", ".join(sorted(n for n in signatures.defs if not n.startswith("__"))) or "none"
            raise InvalidArgument(
                f'Serving signature name: "{name}" not found in signature def. Model {target.name} version '
                f"{signatures.version} has signatures: {listed}."
            )
        inputs, request_format = codec.decode_predict_inputs(document, input_dtypes)
        request = predict_pb2.PredictRequest(model_spec=spec)
        request.model_spec.signature_name = signature_name
        tensors = request.inputs
        for alias, array in inputs.items():
            tensors[alias].CopyFrom(from_array(array, tensor_content=True))
        response = self._call("Predict", request, predict_pb2.PredictResponse)
        outputs = {alias: to_array(tensor, alias) for alias, tensor in response.outputs.items()}
        return json_response(codec.encode_predict_response(outputs, request_format))

    def _cached_metadata(self, model: str, spec: model_pb2.ModelSpec) -> _Signatures:
        """The remote's metadata for ``spec``, fetched again once the remote's versions of ``model`` changed."""
        key = (model, spec.WhichOneof("version_choice"), spec.version.value, spec.version_label)
        versions = self._remote.versions(model)
        found = self._signatures.get(key)
        if found is not None and found[0] == versions:
            return found[1]
        signatures = self._metadata(spec)
        with self._lock:
            if len(self._signatures) >= MAX_CACHED:
                self._signatures.clear()
            self._signatures[key] = (versions, signatures)
        return signatures

    # -- classify and regress ------------------------------------------------

    def _examples_request(self, request, spec: model_pb2.ModelSpec, body: bytes):
        document = codec.parse_document(body)
        request.model_spec.CopyFrom(spec)
        request.model_spec.signature_name = codec.signature_name(document)
        _fill_input(request.input, *codec.decode_examples(document))
        return request

    def _classify(self, target: ModelPath, spec: model_pb2.ModelSpec, body: bytes) -> bottle.HTTPResponse:
        request = self._examples_request(classification_pb2.ClassificationRequest(), spec, body)
        result = self._call("Classify", request, classification_pb2.ClassificationResponse).result
        rows = [[(c.label, c.score) for c in row.classes] for row in result.classifications]
        return json_response(codec.encode_classify_response(rows))

    def _regress(self, target: ModelPath, spec: model_pb2.ModelSpec, body: bytes) -> bottle.HTTPResponse:
        request = self._examples_request(regression_pb2.RegressionRequest(), spec, body)
        result = self._call("Regress", request, regression_pb2.RegressionResponse).result
        return json_response(codec.encode_regress_response([r.value for r in result.regressions]))

    # -- status and metadata -------------------------------------------------

    def _status(self, spec: model_pb2.ModelSpec) -> bottle.HTTPResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = spec.name
        if spec.HasField("version"):  # TF Serving ignores a label here
            request.model_spec.version.value = spec.version.value
        response = self._call("GetModelStatus", request, get_model_status_pb2.GetModelStatusResponse)
        return json_response(dumps(status_document(map(_version_status, response.model_version_status))))

    def _metadata(self, spec: model_pb2.ModelSpec) -> _Signatures:
        request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec, metadata_field=[SIGNATURE_DEF])
        return _Signatures(self._call("GetModelMetadata", request, get_model_metadata_pb2.GetModelMetadataResponse))

    def _call(self, method: str, request, response_type):
        return self._remote.call(method, request.SerializeToString(), response_type=response_type)
