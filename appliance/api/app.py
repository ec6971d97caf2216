"""The WSGI application: every route of the appliance, with JSON errors everywhere.

    app = create_app(manager, max_request_bytes=64 << 20, access=AccessPolicy.for_settings(...))
    waitress.serve(app, port=8501)

``/v1/models/...``, TensorFlow Serving's REST API, and ``/v2/...``, the Open Inference Protocol's, the hot
paths, are matched with their servers' own patterns past Bottle's router; Bottle routes the rest: ``POST
/predict``, the control API, ``/health``, ``/``, the API reference (``/openapi.json``, ``/docs``) and the
metrics. Unknown paths answer 404 and wrong methods 405, in
TF Serving's ``{"error": "..."}`` format; no traceback ever reaches a client. Request bodies sent with
``Content-Encoding: gzip`` are inflated, the size limit applying to what they inflate to.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable

import bottle

from ..errors import InvalidArgument
from ..serving.compare import Comparisons
from ..serving.manager import ModelManager
from ..serving.recent_warmup import RecentRequestWarmup
from ..serving.routing import Router
from . import openapi, pages
from .control import COMPARE_PATH, RELOAD_PATH, SHADOW_PATH, WARMUP_PATH, ControlAPI
from .control import PATH as CONTROL_PATH
from .cors import Cors
from .metrics import PATH as METRICS_PATH
from .metrics import LabelledBody, Metrics, labelled_body
from .predict import SimplePredictAPI
from .responses import INTERNAL_ERROR, JSON_TYPE, answer_error, json_error
from .security import LOOPBACK_ONLY, AccessPolicy, HostAllowList, TokenRequired, Utf8Paths, token_required
from .tfserving import TFServingAPI
from .v2.rest import V2RestAPI

READ_CHUNK = 1 << 20
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream
# Content-Encoding -> zlib's wbits for it: HTTP/1.1 takes x-gzip as gzip; its deflate is the zlib format (RFC 9110),
# which Triton's clients send (request_compression_algorithm="deflate").
INFLATED = {"gzip": GZIP_WBITS, "x-gzip": GZIP_WBITS, "deflate": zlib.MAX_WBITS}
ACCEPTED_ENCODINGS = "gzip, deflate, identity"


def read_body(environ: dict, limit: int) -> bytes:
    """The request body, refusing (413) one larger than ``limit`` bytes before reading it, or, gzipped or
    deflated, one that inflates to more; any other ``Content-Encoding`` but ``identity`` is refused (415)."""
    encoding = environ.get("HTTP_CONTENT_ENCODING")
    if encoding:  # rare: the plain path pays this one lookup
        return _decoded_body(environ, limit, encoding)
    return _raw_body(environ, limit)


def _decoded_body(environ: dict, limit: int, encoding: str) -> bytes:
    name = encoding.strip().lower()
    if name in INFLATED:
        return inflate(_raw_body(environ, limit), limit, name)
    if name == "identity":
        return _raw_body(environ, limit)
    raise json_error(
        415,
        f"Content-Encoding {encoding!r} is not supported: send the body as it is, gzipped or deflated",
        **{"Accept-Encoding": ACCEPTED_ENCODINGS},  # RFC 7694: what a 415 for a content coding names
    )


def inflate(data: bytes, limit: int, encoding: str = "gzip") -> bytes:
    """``data`` gunzipped (each of its gzip members in turn) or, ``encoding`` "deflate", zlib-inflated,
    refusing (413) as soon as it passes ``limit`` bytes: ``max_length`` keeps a small body that would inflate
    into gigabytes from ever being inflated."""
    if not data:
        return data
    parts, size = [], 0
    while True:
        inflater = zlib.decompressobj(INFLATED[encoding])
        try:
            part = inflater.decompress(data, limit + 1 - size)  # never 0, which would mean no limit
        except zlib.error as e:
            raise json_error(400, f"request body is not valid {encoding}: {e}") from None
        size += len(part)
        if size > limit:
            raise json_error(413, f"request body inflates to more than the limit of {limit} bytes")
        if not inflater.eof:
            raise json_error(400, f"request body is not valid {encoding}: it ends before its {encoding} stream does")
        parts.append(part)
        data = inflater.unused_data
        if not data:
            return b"".join(parts)


def _raw_body(environ: dict, limit: int) -> bytes:
    try:
        declared = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        raise json_error(400, "Content-Length is not a number") from None
    if declared > limit:
        raise json_error(413, f"request body is {declared} bytes; the limit is {limit} bytes")
    stream = environ["wsgi.input"]
    if declared >= 0:
        return stream.read(declared)
    chunks, size = [], 0
    while chunk := stream.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise json_error(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _raw_path(environ: dict) -> str:
    # TF Serving matches the URL before percent-decoding it, then decodes the name and label.
    uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    return uri.split("?", 1)[0].split("#", 1)[0]


def _answer(callback, *args, **kwargs) -> bottle.HTTPResponse:
    """``callback``'s response; what it raises is answered by :func:`.responses.answer_error`."""
    try:
        return callback(*args, **kwargs)
    except Exception as e:
        return answer_error(e)


def _json_errors(callback):
    """Bottle plugin: see :func:`_answer`."""
    return lambda *args, **kwargs: _answer(callback, *args, **kwargs)


def _wsgi_answer(response: bottle.HTTPResponse, api: str, environ: dict, start_response) -> LabelledBody:
    """Answer the request with ``response`` as Bottle would (status line, headers, Content-Length, no body
    for HEAD); the body carries the response's labels for the metrics, ``api`` unless it names its own."""
    body = response.body
    if type(body) is str:
        body = body.encode("utf-8")
    start_response(response.status_line, [*response.headerlist, ("Content-Length", str(len(body)))])
    return labelled_body(None if environ["REQUEST_METHOD"] == "HEAD" else body, response, api)


class ModelsFirst:
    """WSGI: ``/v1/models...`` (any case, as TF Serving matches it) to ``v1``, ``/v2`` and ``/v2/...`` (as
    Triton matches them) to ``v2``, everything else to ``app``'s routes.

    ``app`` routes the rest of ``/v1/`` to ``v1`` as well, after its own ``/v1/appliance/`` routes; this
    saves the hot paths Bottle's router and plugins. ``v1(environ)`` and ``v2(environ)`` return a Bottle
    response or raise.
    The route ``app`` matches is called here, so that its response is at hand: each is answered as Bottle
    would answer it, labelled for the metrics (``route_apis`` names the API of each route rule). A request
    no route takes (404, 405) gets Bottle's own answer.
    """

    def __init__(self, v1, app: bottle.Bottle, route_apis: dict[str, str] | None = None, v2=None):
        self._v1 = v1
        self._v2 = v2
        self._app = app
        self._route_apis = route_apis or {}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path[:10].lower() == "/v1/models":
            handler = self._v1
        elif self._v2 is not None and (path[:4] == "/v2/" or path == "/v2"):
            handler = self._v2
        else:
            return self._route(environ, start_response)
        bottle.request.bind(environ)  # the handlers read the request through bottle.request
        return _wsgi_answer(_answer(handler, environ), "", environ, start_response)

    def _route(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        environ["PATH_INFO"] = path.encode("latin1").decode("utf8", "ignore")  # as Bottle reads it
        try:
            route, args = self._app.match(environ)
        except bottle.HTTPError:  # no route (404) or not this method (405): Bottle answers
            environ["PATH_INFO"] = path
            return self._app(environ, start_response)
        environ["bottle.raw_path"] = path  # what Bottle's own dispatch records
        environ["bottle.app"] = self._app
        environ["route.handle"] = environ["bottle.route"] = route
        environ["route.url_args"] = args
        bottle.request.bind(environ)
        response = route.call(**args)  # the _json_errors plugin makes every outcome a response
        if not isinstance(response, bottle.HTTPResponse):  # a plain body, as Bottle takes it
            response = bottle.HTTPResponse(response)
        return _wsgi_answer(response, self._route_apis.get(route.rule, ""), environ, start_response)


def _json_error_page(error: bottle.HTTPError) -> bytes:
    """Bottle's own errors (no route, wrong method) in TF Serving's format."""
    bottle.response.content_type = JSON_TYPE
    if error.status_code == 404:
        message = f"Not found: {bottle.request.path}. See GET / for what this server offers."
    elif error.status_code == 405:
        message = f"Method {bottle.request.method} is not allowed on {bottle.request.path}"
    elif error.status_code >= 500:
        message = INTERNAL_ERROR
    else:
        message = str(error.body)
    return json_error(error.status_code, message).body


# The "api" label of each route's requests in the metrics (the /v1 handlers label theirs by URL).
ROUTE_APIS = {
    CONTROL_PATH: "control",
    RELOAD_PATH: "control",
    COMPARE_PATH: "control",
    WARMUP_PATH: "control",
    SHADOW_PATH: "control",
    "/predict": "simple_predict",
    "/health": "health",
    "/": "index",
    "/openapi.json": "openapi",
    "/docs": "docs",
}


def create_app(
    manager: ModelManager,
    *,
    max_request_bytes: int,
    router: Router | None = None,
    access: AccessPolicy = LOOPBACK_ONLY,
    metrics: Metrics | None = None,
    metrics_path: str | None = METRICS_PATH,
    comparisons: Comparisons | None = None,
    recent_warmup: RecentRequestWarmup | None = None,
):
    """The WSGI application serving ``manager``'s models (and a remote TF Serving's, through ``router``).

    Request bodies over ``max_request_bytes`` get 413. ``access`` says which Host names are answered and
    which requests need a token (401 without it); by default, loopback's names and no token. Every request
    is counted and timed in ``metrics`` (by default, metrics of this app's own), which ``GET metrics_path``
    answers (None: no route answers them). ``comparisons`` runs the control API's version comparisons (by
    default, on warm-up requests or a given log only); ``recent_warmup`` is the control API's warm-up from recent
    requests (by default, one that the preferences do not remember).
    """
    if metrics_path is not None and (
        metrics_path in ROUTE_APIS or metrics_path[:4].lower() == "/v1/" or metrics_path[:4] in ("/v2", "/v2/")
    ):
        raise InvalidArgument(f"the metrics cannot be served at {metrics_path}: the appliance answers that path")
    app = bottle.Bottle(autojson=False)
    app.default_error_handler = _json_error_page
    app.install(_json_errors)
    tf_serving = TFServingAPI(manager, router)
    remote = router.remote if router else None
    simple = SimplePredictAPI(manager)
    control = ControlAPI(manager, comparisons, recent_warmup)
    metrics = metrics or Metrics()
    metrics.watch(manager, remote)

    def body() -> bytes:
        return read_body(bottle.request.environ, max_request_bytes)

    v2_api = V2RestAPI(manager, metrics, lambda environ: read_body(environ, max_request_bytes), access.control_token)

    def v2(environ):
        return v2_api.handle(environ, _raw_path(environ))

    def v1(environ):
        return tf_serving.handle(
            environ["REQUEST_METHOD"], _raw_path(environ), lambda: read_body(environ, max_request_bytes)
        )

    app.route(CONTROL_PATH, "GET", control.chosen)
    changes = [token_required(access.control_token)] if access.control_token else []
    app.route(CONTROL_PATH, "PUT", lambda name: control.choose(name, body()), apply=changes)
    app.route(RELOAD_PATH, "POST", lambda name: control.reload(name, body()), apply=changes)
    app.route(COMPARE_PATH, "POST", lambda name: control.compare(name, body()), apply=changes)
    app.route(COMPARE_PATH, "GET", control.comparison)
    app.route(COMPARE_PATH, "DELETE", control.cancel_comparison, apply=changes)
    app.route(WARMUP_PATH, "GET", control.warmup)
    app.route(WARMUP_PATH, "PUT", lambda name: control.set_warmup(name, body()), apply=changes)
    app.route(SHADOW_PATH, "GET", control.shadow)
    app.route(SHADOW_PATH, "PUT", lambda name: control.set_shadow(name, body()), apply=changes)
    app.route(SHADOW_PATH, "DELETE", control.clear_shadow, apply=changes)
    for prefix in ("/v1/", "/V1/"):  # TF Serving's dispatcher takes (?i)/v1/.*
        app.route(prefix + "<rest:path>", "ANY", lambda rest: v1(bottle.request.environ))
    app.route("/predict", "POST", lambda: simple.handle(body()))
    app.route("/health", "GET", lambda: pages.health(manager, remote))
    app.route("/", "GET", lambda: pages.index(manager, remote))
    app.route("/openapi.json", "GET", lambda: openapi.openapi_json(metrics_path))
    app.route("/docs", "GET", openapi.docs_page)
    route_apis = dict(ROUTE_APIS)
    if metrics_path is not None:
        app.route(metrics_path, "GET", metrics.page)
        route_apis[metrics_path] = "metrics"
    guarded: Callable[..., Iterable[bytes]] = ModelsFirst(v1, app, route_apis, v2)
    if access.token:
        guarded = TokenRequired(guarded, access.token)
    if access.cors_allowed_origins:  # outside the token: preflights carry none
        guarded = Cors(guarded, access.cors_allowed_origins)
    return metrics.instrument(HostAllowList(Utf8Paths(guarded), access.allowed_hosts))  # refused ones count too
