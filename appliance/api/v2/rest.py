"""The Open Inference Protocol's REST routes (``/v2/...``), with Triton's binary tensor data extension.

    api = V2RestAPI(manager, metrics, read_body=lambda environ: read_body(environ, limit), control_token=None)
    response = api.handle(environ, "/v2/models/digits/infer")   # a Bottle response, labelled for the metrics

The app sends every ``/v2`` path here before Bottle's router (see ``app.ModelsFirst``); the paths are matched
undecoded and the model name percent-decoded, as Triton does. An inference request is a JSON object, or with
``Inference-Header-Content-Length`` that many bytes of JSON followed by the inputs' raw data; outputs asked
for as binary data (``binary_data``, ``binary_data_output``) follow the response's JSON the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from urllib.parse import unquote

import bottle
import numpy as np
import orjson

from ...errors import InvalidArgument
from ...serving.manager import ModelManager
from ..metrics import Metrics, answered_by, for_api, served
from ..responses import answer_error, json_error, json_response
from ..security import TOKEN_CHALLENGE, TOKEN_MISSING, has_token
from .dataplane import InferenceProtocol, InferRequest, InferResult
from .datatypes import array_datatype, from_json, from_raw, json_data, to_raw
from .repository import ModelRepository
from .statistics import ModelStatistics

HEADER_LENGTH = "Inference-Header-Content-Length"
_HEADER_LENGTH_ENVIRON = "HTTP_INFERENCE_HEADER_CONTENT_LENGTH"
BINARY_TYPE = "application/octet-stream"
MODEL_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(ready|infer|stats|config))?")
REPOSITORY_PATH = re.compile(r"/v2/repository/models/([^/]+)/(load|unload)")
# Each model route's method, and its "api" label in the metrics.
MODEL_ROUTES = {
    "": ("GET", "v2_metadata"),
    "ready": ("GET", "v2_ready"),
    "infer": ("POST", "v2_infer"),
    "stats": ("GET", "v2_stats"),
    "config": ("GET", "v2_metadata"),
}
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class V2RestAPI:
    """The ``/v2`` handlers over one model manager."""

    def __init__(
        self, manager: ModelManager, metrics: Metrics, read_body: Callable[[dict], bytes], control_token: str | None
    ):
        self.protocol = InferenceProtocol(manager)
        self._repository = ModelRepository(manager)
        self._statistics = ModelStatistics(manager, metrics)
        self._read_body = read_body
        self._control_token = control_token
        # Exact paths: (method, api label, handler(environ)).
        self._fixed: dict[str, tuple[str, str, Callable[[dict], bottle.HTTPResponse]]] = {
            "/v2": ("GET", "v2_metadata", lambda environ: _json(self.protocol.server_metadata())),
            "/v2/health/live": ("GET", "v2_health", lambda environ: _json({"live": self.protocol.live()})),
            "/v2/health/ready": ("GET", "v2_health", self._server_ready),
            "/v2/models/stats": ("GET", "v2_stats", lambda environ: _json(self._statistics.models(None, None))),
            "/v2/repository/index": ("POST", "v2_repository", self._index),
        }

    def handle(self, environ: dict, path: str) -> bottle.HTTPResponse:
        """Answer one ``/v2`` request (``path`` as sent, not percent-decoded), labelled with its API."""
        method = environ["REQUEST_METHOD"]
        method = "GET" if method == "HEAD" else method
        api = ""
        try:
            fixed = self._fixed.get(path)
            if fixed is not None:
                expected, api, handler = fixed
                _check_method(method, expected, path)
                response = handler(environ)
            elif match := MODEL_PATH.fullmatch(path):
                name, version, action = unquote(match[1]), match[2], match[3] or ""
                expected, api = MODEL_ROUTES[action]
                _check_method(method, expected, path)
                response = self._model_route(action, name, version and unquote(version), environ)
            elif match := REPOSITORY_PATH.fullmatch(path):
                api = "v2_repository"
                _check_method(method, "POST", path)
                response = self._load_or_unload(match[2], unquote(match[1]), environ)
            else:
                raise json_error(404, f"Not found: {path}. See GET /docs for the /v2 routes this server offers.")
        except Exception as e:
            response = answer_error(e)
        return for_api(response, api)

    def _model_route(self, action: str, name: str, version: str | None, environ: dict) -> bottle.HTTPResponse:
        if action == "infer":
            return self._infer(name, version, environ)
        if action == "ready":
            if not self.protocol.model_ready(name, version):
                which = f"version {version}" if version else "no version"
                return json_error(400, f"model {name} is not ready: {which} is AVAILABLE")
            return served(_json({"name": name, "ready": True}), name, None)
        if action == "stats":
            return _json(self._statistics.models(name, version))
        if action == "config":
            return served(_json(self.protocol.model_config(name, version)), name, None)
        return served(_json(self.protocol.model_metadata(name, version)), name, None)

    def _server_ready(self, environ: dict) -> bottle.HTTPResponse:
        if not self.protocol.ready():
            return json_error(400, "the server is not ready: it is still loading its models")
        return _json({"ready": True})

    def _infer(self, name: str, version: str | None, environ: dict) -> bottle.HTTPResponse:
        body = self._read_body(environ)
        request, binary = parse_infer_request(body, environ.get(_HEADER_LENGTH_ENVIRON))
        handle = self.protocol.acquire(name, version)
        return answered_by(
            handle, name, lambda servable: self.protocol.infer(handle, request), lambda r: infer_response(r, binary)
        )

    # -- the repository extension ------------------------------------------------------------------------------

    def _document(self, environ: dict) -> dict:
        body = self._read_body(environ)
        document = _parse_json(body) if body.strip() else {}
        if not isinstance(document, dict):
            raise InvalidArgument("the request body must be a JSON object")
        return document

    def _index(self, environ: dict) -> bottle.HTTPResponse:
        ready = self._document(environ).get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidArgument('"ready" must be true or false')
        return _json(self._repository.index(ready_only=ready))

    def _load_or_unload(self, action: str, name: str, environ: dict) -> bottle.HTTPResponse:
        if self._control_token and not has_token(environ, self._control_token):
            raise json_error(401, TOKEN_MISSING, **TOKEN_CHALLENGE)
        parameters = _parameters(self._document(environ), "the request")
        getattr(self._repository, action)(name, parameters)
        return _json({})


def _check_method(method: str, expected: str, path: str) -> None:
    if method != expected:
        raise json_error(405, f"Method {method} is not allowed on {path}", Allow=expected)


def _json(document) -> bottle.HTTPResponse:
    return json_response(orjson.dumps(document))


def _parse_json(text: bytes):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        error = e
    try:  # NaN and infinities as bare tokens, as Python's json.dumps writes them (and these responses)
        return json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidArgument(f"the request is not valid JSON: {error}") from None


def _parameters(document: Mapping, owner: str) -> dict:
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidArgument(f'"parameters" of {owner} must be a JSON object')
    return parameters


def _flag(parameters: Mapping, key: str, owner: str, default: bool = False) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise InvalidArgument(f"parameter {key!r} of {owner} must be true or false")
    return value


# -- requests ------------------------------------------------------------------------------------------------------


def _header_length(value: str | None, body: bytes) -> int:
    if value is None:
        return len(body)
    if not value.strip().isdigit():
        raise InvalidArgument(f"{HEADER_LENGTH} must be a number of bytes, not {value!r}")
    length = int(value)
    if length > len(body):
        raise InvalidArgument(f"{HEADER_LENGTH} is {length}, but the request body has only {len(body)} bytes")
    return length


def _shape(value, name: str) -> list[int]:
    if not isinstance(value, list) or not all(type(d) is int for d in value):
        raise InvalidArgument(f'input {name!r}: "shape" must be a list of integers')
    return value


def parse_infer_request(body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, bool]]:
    """The request, and whether each output asked for goes as binary data (key ``""``: those not named).

    ``header_length`` is the ``Inference-Header-Content-Length`` header (None: the body is all JSON).
    """
    length = _header_length(header_length, body)
    document = _parse_json(body[:length] if length < len(body) else body)
    if not isinstance(document, dict):
        raise InvalidArgument("the inference request must be a JSON object")
    inputs = _inputs(document.get("inputs"), memoryview(body)[length:], length)
    parameters = _parameters(document, "the request")
    outputs, binary = _outputs(document.get("outputs", []), _flag(parameters, "binary_data_output", "the request"))
    request_id = document.get("id")
    if "id" in document and not isinstance(request_id, str):
        raise InvalidArgument('"id" must be a string')
    return InferRequest(inputs, outputs, request_id, parameters), binary


def _named(entry, kind: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InvalidArgument(f'each of "{kind}" must be an object with a "name" string')
    return entry["name"]


def _inputs(entries, raw: memoryview, length: int) -> dict[str, np.ndarray]:
    """The inputs, from their JSON ``data`` or from ``raw``, the binary data after the JSON, in input order."""
    if not isinstance(entries, list):
        raise InvalidArgument('the inference request needs "inputs", a list of tensors')
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for entry in entries:
        name = _named(entry, "inputs")
        if name in inputs:
            raise InvalidArgument(f"input {name!r} is given twice")
        datatype, shape = entry.get("datatype"), _shape(entry.get("shape"), name)
        if not isinstance(datatype, str):
            raise InvalidArgument(f'input {name!r}: "datatype" must be a string such as "FP32"')
        size = _parameters(entry, f"input {name!r}").get("binary_data_size")
        if size is None:
            if "data" not in entry:
                raise InvalidArgument(f'input {name!r} has no "data" (nor a "binary_data_size" parameter)')
            inputs[name] = from_json(entry["data"], datatype, shape, name)
            continue
        if type(size) is not int or size < 0:
            raise InvalidArgument(f"input {name!r}: parameter 'binary_data_size' must be a number of bytes")
        if "data" in entry:
            raise InvalidArgument(f'input {name!r} has both "data" and binary data: send one')
        if offset + size > len(raw):
            raise InvalidArgument(
                f"input {name!r} takes {size} bytes of binary data from byte {offset}, but the request has "
                f"{len(raw)} bytes after its {length} bytes of JSON ({HEADER_LENGTH})"
            )
        inputs[name] = from_raw(raw[offset : offset + size], datatype, shape, name)
        offset += size
    if offset != len(raw):
        raise InvalidArgument(
            f"the request has {len(raw)} bytes of binary data after its JSON, but its inputs' binary_data_size "
            f"add up to {offset}"
        )
    return inputs


def _outputs(entries, all_binary: bool) -> tuple[tuple[str, ...], dict[str, bool]]:
    """The outputs asked for by name, and whether each goes as binary data (``""``: all, when none is named)."""
    if not isinstance(entries, list):
        raise InvalidArgument('"outputs" must be a list of objects naming outputs')
    names, binary = [], {"": all_binary}
    for entry in entries:
        name = _named(entry, "outputs")
        names.append(name)
        parameters = _parameters(entry, f"output {name!r}")
        if "classification" in parameters:
            raise InvalidArgument("the classification extension is not supported: ask for the scores")
        binary[name] = _flag(parameters, "binary_data", f"output {name!r}", all_binary)
    return tuple(names), binary


# -- responses -----------------------------------------------------------------------------------------------------


def infer_response(result: InferResult, binary: Mapping[str, bool]) -> bottle.HTTPResponse:
    """The JSON response, or JSON then the raw data of the outputs sent as binary data (a BYTES output that
    is not UTF-8 is always sent so: JSON strings cannot hold it)."""
    outputs, chunks, finite = [], [], True
    for name, array in result.outputs.items():
        entry: dict = {"name": name, "datatype": array_datatype(array), "shape": list(array.shape)}
        data = None if binary.get(name, binary[""]) else json_data(array)
        if data is None:
            chunk = to_raw(array)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = data
            if isinstance(data, np.ndarray) and data.dtype.kind == "f" and not np.isfinite(data).all():
                finite = False
        outputs.append(entry)
    document: dict = {"model_name": result.model_name, "model_version": str(result.model_version)}
    if result.id is not None:
        document["id"] = result.id
    document["outputs"] = outputs
    header = orjson.dumps(document, option=_OPTIONS) if finite else _with_non_finite(document)
    if not chunks:
        return json_response(header)
    return bottle.HTTPResponse(
        body=b"".join((header, *chunks)),
        headers={"Content-Type": BINARY_TYPE, HEADER_LENGTH: str(len(header))},
    )


def _with_non_finite(document: dict) -> bytes:
    """JSON with NaN and infinities as the bare tokens Python's reader takes, as TF Serving writes them (orjson
    would write null)."""
    for output in document["outputs"]:
        if isinstance(output.get("data"), np.ndarray):
            output["data"] = output["data"].tolist()
    return json.dumps(document, allow_nan=True, separators=(",", ":")).encode()
