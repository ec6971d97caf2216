"""TensorFlow Serving's REST API, wire-compatible: predict, classify, regress, status and metadata.

URLs are matched with TF Serving's own two regular expressions (case-insensitive,
as in ``http_rest_api_util.cc``) and every outcome follows its handler: the body
is parsed before the model is looked up, errors carry TF Serving's messages and
status codes, and anything else under ``/v1/`` is ``400 Malformed request``.

    POST /v1/models/digits/versions/2:predict   {"instances": [[0, 0, 5, ...]]}
    GET  /v1/models/digits/labels/stable/metadata
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

import bottle

from ..errors import InvalidArgument, NotFound, ServingError, Unavailable
from ..serving.manager import ModelManager, VersionStatus
from ..serving.remote import RemoteTFServing
from ..serving.remote_grpc import RemoteGrpcTFServing
from ..serving.routing import LOCAL, REMOTE, Router
from ..serving.runtime import DEFAULT_SIGNATURE, Servable, signature_list
from . import codec
from .metrics import answered_by, for_api, served
from .responses import answer_error, dumps, json_response

_NAME = r"([^/:]+)"
_VERSION_OR_LABEL = r"(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
PREDICTION_PATH = re.compile(rf"/v1/models/{_NAME}{_VERSION_OR_LABEL}:(classify|regress|predict)", re.I)
STATUS_PATH = re.compile(rf"/v1/models(?:/{_NAME})?{_VERSION_OR_LABEL}(?:/(metadata))?", re.I)
INT64_MAX = 2**63 - 1
BACKEND_HEADER = "X-Appliance-Backend"


@dataclasses.dataclass(frozen=True)
class ModelPath:
    """What a /v1 URL names: a model, optionally a version or a label, and the verb or sub-resource."""

    name: str
    version: int | None
    label: str | None
    action: str  # "predict" | "classify" | "regress" | "metadata" | "" (status), as written in the URL


def parse_model_path(http_method: str, path: str) -> ModelPath | None:
    """TF Serving's ParseModelInfo: None when the path does not match the method's pattern."""
    pattern = {"POST": PREDICTION_PATH, "GET": STATUS_PATH}.get(http_method)
    match = pattern.fullmatch(path) if pattern else None
    if match is None:
        return None
    name, version, label, action = match.groups()
    if version is not None:
        if int(version) > INT64_MAX:
            raise InvalidArgument(f"Failed to convert version: {version} to numeric.")
        version = int(version)
    return ModelPath(unquote(name or ""), version, unquote(label) if label else None, action or "")


def status_document(statuses: Iterable[VersionStatus]) -> dict:
    """The status answer's document: each version's state and error."""
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state.value,
                "status": {
                    "error_code": s.error.code.name if s.error else "OK",
                    "error_message": s.error.message if s.error else "",
                },
            }
            for s in statuses
        ]
    }


def metadata_document(model: str, version: int, signature_defs: dict) -> str:
    """The metadata answer's body: the model version and its SignatureDefs (as proto3 JSON)."""
    document = {
        "model_spec": {"name": model, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": signature_defs}},
    }
    return dumps(document)


class TFServingAPI:
    """The /v1 handlers over one model manager, and over a remote TF Serving when one is configured."""

    def __init__(self, manager: ModelManager, router: Router | None = None):
        self._manager = manager
        self._router = router
        self._verbs = {"predict": self.predict, "classify": self.classify, "regress": self.regress}

    def handle(self, http_method: str, path: str, read_body) -> bottle.HTTPResponse:
        """Answer one /v1 request; ``read_body`` returns the request body as bytes.

        The answers of the handlers, errors included, are labelled with the API called and the model version
        that answered (see :mod:`.metrics`); a request no handler takes raises its ServingError.
        """
        if http_method == "OPTIONS":
            return self._preflight()
        target = parse_model_path(http_method, path)
        if target is not None:
            if http_method == "POST" and target.action in self._verbs:
                return self._route(target, "POST", read_body(), self._verbs[target.action])
            if http_method == "GET":
                local = self.metadata if target.action == "metadata" else self.status
                return self._route(target, "GET", None, lambda target, body: local(target))
        raise InvalidArgument(f"Malformed request: {http_method} {path}")

    def _route(self, target: ModelPath, http_method: str, body: bytes | None, local) -> bottle.HTTPResponse:
        """The answer of the backends the router plans, or the error that ends the plan, labelled with the API."""
        try:
            if self._router is None or not target.name:
                response = local(target, body)
            else:
                response = self._from_backends(self._router, target, http_method, body, local)
        except Exception as e:
            response = answer_error(e)
        return for_api(response, target.action.lower() or "status")

    def _from_backends(
        self, router: Router, target: ModelPath, http_method: str, body: bytes | None, local
    ) -> bottle.HTTPResponse:
        """Answer from the backends ``router`` plans, in order; the response names the one that answered."""
        plan = router.plan(target.name, target.version, target.label)
        failure: ServingError | None = None
        for position, backend in enumerate(plan, 1):
            if backend == REMOTE:
                try:
                    response = self._remote_answer(router, target, http_method, body)
                except Unavailable as e:  # predict, classify and regress are pure: safe to answer locally
                    failure = e
                    continue
                response.set_header(BACKEND_HEADER, REMOTE)
                if response.status_code == 404:  # no version took it
                    return response
                return served(response, target.name, target.version, REMOTE)
            try:
                response = local(target, body)
            except NotFound:
                if position == len(plan):
                    raise
                continue
            response.set_header(BACKEND_HEADER, LOCAL)
            return response
        assert failure is not None, "a plan names a backend"
        raise failure

    def _remote_answer(
        self, router: Router, target: ModelPath, http_method: str, body: bytes | None
    ) -> bottle.HTTPResponse:
        """The remote's answer, its verdicts included; Unavailable when it gave none."""
        remote = router.remote
        assert remote is not None, "the router plans the remote only when there is one"
        if isinstance(remote, RemoteGrpcTFServing):
            return self._grpc_remote_rest.answer(
                target, router.remote_version(target.name, target.version, target.label), body
            )
        assert isinstance(remote, RemoteTFServing)
        answer = remote.forward(http_method, target.name, self._remote_suffix(router, target), body)
        return bottle.HTTPResponse(
            body=answer.body, status=answer.status, headers={"Content-Type": answer.content_type}
        )

    @functools.cached_property
    def _grpc_remote_rest(self):
        from .remote_rest import GrpcRemoteREST  # TensorFlow's protos: imported once a gRPC remote is asked

        assert self._router is not None and isinstance(self._router.remote, RemoteGrpcTFServing)
        return GrpcRemoteREST(self._router.remote)

    def _remote_suffix(self, router: Router, target: ModelPath) -> str:
        version = router.remote_version(target.name, target.version, target.label)
        if version is not None:
            where = f"/versions/{version}"
        else:
            where = f"/labels/{quote(target.label, safe='')}" if target.label else ""
        if target.action in self._verbs:
            return f"{where}:{target.action}"
        return where + ("/metadata" if target.action == "metadata" else "")

    @staticmethod
    def _preflight() -> bottle.HTTPResponse:
        origin = bottle.request.get_header("Origin", "")
        if not re.search(r"https?://", origin):
            raise InvalidArgument("Origin header is missing in CORS preflight")
        return json_response(b"")

    # The handlers of one backend, the local one: once a version took the request, what fails is raised as
    # an error response labelled with that version (see _route), and the answer is labelled with it too.

    def predict(self, target: ModelPath, body: bytes) -> bottle.HTTPResponse:
        document = codec.parse_predict_document(body)
        signature_name = codec.signature_name(document)
        name = signature_name or DEFAULT_SIGNATURE

        def run(servable: Servable):
            signature = servable.signatures.get(name)
            if signature is None:
                raise InvalidArgument(
                    f'Serving signature name: "{name}" not found in signature def. Model {target.name} version '
                    f"{handle.version} has signatures: {signature_list(servable.signatures)}."
                )
            if not signature.inputs:
                raise InvalidArgument(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
            try:
                inputs, request_format = codec.decode_predict_inputs(document, signature.input_dtypes)
            except InvalidArgument as e:
                raise InvalidArgument(
                    f'{e.message.rstrip(".")}. Signature "{name}" of model {target.name} version {handle.version}: '
                    f"{signature.input_check.expected}."
                ) from None
            outputs = servable.predict(name, inputs)
            handle.record_predict(name, inputs, outputs)
            return outputs, request_format

        handle = self._manager.acquire(target.name, target.version, target.label)
        return answered_by(
            handle, target.name, run, lambda result: json_response(codec.encode_predict_response(*result))
        )

    def _run_on_examples(self, target: ModelPath, body: bytes, method: str, encode) -> bottle.HTTPResponse:
        """Classify and regress: the whole body is parsed (examples included) before the model is looked up."""
        document = codec.parse_document(body)
        signature_name = codec.signature_name(document)
        context, examples = codec.decode_examples(document)
        handle = self._manager.acquire(target.name, target.version, target.label)

        def run(servable: Servable):
            results = getattr(servable, method)(signature_name, context, examples)
            handle.record_examples(method, signature_name, context, examples, results)
            return results

        return answered_by(handle, target.name, run, lambda results: json_response(encode(results)))

    def classify(self, target: ModelPath, body: bytes) -> bottle.HTTPResponse:
        return self._run_on_examples(target, body, "classify", codec.encode_classify_response)

    def regress(self, target: ModelPath, body: bytes) -> bottle.HTTPResponse:
        return self._run_on_examples(target, body, "regress", codec.encode_regress_response)

    def status(self, target: ModelPath) -> bottle.HTTPResponse:
        if not target.name:
            raise InvalidArgument("Missing model name in request.")
        statuses = self._manager.status(target.name, target.version)  # TF Serving ignores a label here
        return served(json_response(dumps(status_document(statuses))), target.name, target.version)

    def metadata(self, target: ModelPath) -> bottle.HTTPResponse:
        if not target.name:
            raise InvalidArgument("Missing model name in request.")
        handle = self._manager.acquire(target.name, target.version, target.label)

        def encode(signature_defs) -> bottle.HTTPResponse:
            return json_response(metadata_document(target.name, handle.version, signature_defs))

        return answered_by(handle, target.name, lambda servable: servable.signature_defs_json(), encode)
