"""The Bottle application: every route of the appliance, with JSON errors everywhere.

    app = create_app(manager, max_request_bytes=64 << 20)
    waitress.serve(app, port=8501)

Routes: ``/v1/models/...`` (TensorFlow Serving's REST API), ``POST /predict``,
``/v1/appliance/models/<name>/chosen`` (the chosen version), ``POST /v1/appliance/models/<name>/reload``,
``GET /health``, ``GET /``, the API reference ``GET /openapi.json`` and ``GET /docs``, and Prometheus
metrics at ``GET /monitoring/prometheus/metrics``.
Unknown paths answer 404 and wrong methods 405, in TF Serving's ``{"error": "..."}`` format; no
traceback ever reaches a client. Requests for ``/v1/models...`` go straight to the TF Serving handlers,
which match the URL with TF Serving's own patterns, without Bottle's router: predictions are the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import bottle

from ..errors import ServingError
from ..serving.manager import ModelManager
from ..serving.routing import Router
from . import openapi, pages
from .control import PATH as CONTROL_PATH
from .control import RELOAD_PATH, ControlAPI
from .cors import Cors
from .metrics import PATH as METRICS_PATH
from .metrics import Metrics
from .predict import SimplePredictAPI
from .responses import JSON_TYPE, error_response, json_error
from .security import LOOPBACK_ONLY, AccessPolicy, HostAllowList, TokenRequired, Utf8Paths, token_required
from .tfserving import TFServingAPI

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20


def read_body(environ: dict, limit: int) -> bytes:
    """The request body, refusing (413) one larger than ``limit`` bytes before reading it."""
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


INTERNAL_ERROR = "Internal error: the server could not complete the request; see its log"


def _answer(callback, *args, **kwargs) -> bottle.HTTPResponse:
    """``callback``'s response; a ServingError becomes its status and message, anything else a logged 500."""
    try:
        return callback(*args, **kwargs)
    except bottle.HTTPResponse as response:
        return response
    except ServingError as e:
        return error_response(e)
    except Exception:
        log.exception("unexpected error in %s %s", bottle.request.method, bottle.request.path)
        return json_error(500, INTERNAL_ERROR)


def _json_errors(callback):
    """Bottle plugin: see :func:`_answer`."""
    return lambda *args, **kwargs: _answer(callback, *args, **kwargs)


class ModelsFirst:
    """WSGI: ``/v1/models...`` (any case, as TF Serving matches it) to ``v1``, everything else to ``app``.

    ``app`` routes the rest of ``/v1/`` to ``v1`` as well, after its own
    ``/v1/appliance/`` routes; this saves the hot path Bottle's router and
    plugins. ``v1(environ)`` returns a Bottle response or raises; it is answered
    as Bottle would answer it (status line, headers, Content-Length, no body for HEAD).
    """

    def __init__(self, v1, app: bottle.Bottle):
        self._v1 = v1
        self._app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "")[:10].lower() != "/v1/models":
            return self._app(environ, start_response)
        bottle.request.bind(environ)  # what the handlers note for the metrics goes into this request's environ
        response = _answer(self._v1, environ)
        body = response.body
        if type(body) is str:
            body = body.encode("utf-8")
        start_response(response.status_line, [*response.headerlist, ("Content-Length", str(len(body)))])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


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
    "/predict": "simple_predict",
    "/health": "health",
    "/": "index",
    "/openapi.json": "openapi",
    "/docs": "docs",
    METRICS_PATH: "metrics",
}


def create_app(
    manager: ModelManager,
    *,
    max_request_bytes: int,
    router: Router | None = None,
    access: AccessPolicy = LOOPBACK_ONLY,
    metrics: Metrics | None = None,
):
    """The WSGI application serving ``manager``'s models (and a remote TF Serving's, through ``router``).

    Request bodies over ``max_request_bytes`` get 413. ``access`` says which Host names are answered and
    which requests need a token (401 without it); by default, loopback's names and no token. Every request
    is counted and timed in ``metrics`` (by default, metrics of this app's own).
    """
    app = bottle.Bottle(autojson=False)
    app.default_error_handler = _json_error_page
    app.install(_json_errors)
    tf_serving = TFServingAPI(manager, router)
    remote = router.remote if router else None
    simple = SimplePredictAPI(manager)
    control = ControlAPI(manager)
    metrics = metrics or Metrics()
    metrics.watch(manager, remote)

    def body() -> bytes:
        return read_body(bottle.request.environ, max_request_bytes)

    def v1(environ):
        return tf_serving.handle(
            environ["REQUEST_METHOD"], _raw_path(environ), lambda: read_body(environ, max_request_bytes)
        )

    app.route(CONTROL_PATH, "GET", control.chosen)
    changes = [token_required(access.control_token)] if access.control_token else []
    app.route(CONTROL_PATH, "PUT", lambda name: control.choose(name, body()), apply=changes)
    app.route(RELOAD_PATH, "POST", lambda name: control.reload(name, body()), apply=changes)
    for prefix in ("/v1/", "/V1/"):  # TF Serving's dispatcher takes (?i)/v1/.*
        app.route(prefix + "<rest:path>", "ANY", lambda rest: v1(bottle.request.environ))
    app.route("/predict", "POST", lambda: simple.handle(body()))
    app.route("/health", "GET", lambda: pages.health(manager, remote))
    app.route("/", "GET", lambda: pages.index(manager, remote))
    app.route("/openapi.json", "GET", openapi.openapi_json)
    app.route("/docs", "GET", openapi.docs_page)
    app.route(METRICS_PATH, "GET", metrics.page)
    guarded: Callable[..., Iterable[bytes]] = ModelsFirst(v1, app)
    if access.token:
        guarded = TokenRequired(guarded, access.token)
    if access.cors_allowed_origins:  # outside the token: preflights carry none
        guarded = Cors(guarded, access.cors_allowed_origins)
    # refused requests count too
    return metrics.instrument(HostAllowList(Utf8Paths(guarded), access.allowed_hosts), ROUTE_APIS)
