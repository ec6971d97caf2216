"""The Bottle app's error plumbing and body limits, called as a WSGI application in process."""

from __future__ import annotations

import io
import json
import logging
from wsgiref.util import setup_testing_defaults

import bottle
import pytest

from appliance.api.app import ModelsFirst, _json_errors, read_body
from appliance.api.metrics import for_api, served
from appliance.api.responses import json_error, json_response
from appliance.errors import InvalidArgument, NotFound


def call_raw(app, path: str, method: str = "GET") -> tuple[str, dict, bytes]:
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body


def call(app, path: str, method: str = "GET") -> tuple[str, dict, dict]:
    status, headers, body = call_raw(app, path, method)
    return status, headers, json.loads(body)


def test_serving_errors_and_bugs_become_json_and_only_bugs_are_logged(caplog):
    app = bottle.Bottle()
    app.install(_json_errors)

    @app.route("/missing")
    def missing():
        raise NotFound("Could not find any versions of model nope")

    @app.route("/bug")
    def bug():
        return {}["no such key"]

    status, headers, body = call(app, "/missing")
    assert status.startswith("404") and body == {"error": "Could not find any versions of model nope"}
    with caplog.at_level(logging.ERROR, logger="appliance.api.app"):
        status, headers, body = call(app, "/bug")
    assert status.startswith("500") and headers["Content-Type"] == "application/json"
    assert "Internal error" in body["error"] and "KeyError" not in body["error"]
    assert any(r.exc_info for r in caplog.records), "the server log keeps the traceback"


@pytest.mark.parametrize("declared", [None, "11"])
def test_read_body_refuses_more_than_the_limit(declared):
    environ = {"wsgi.input": io.BytesIO(b"x" * 11)}
    if declared:
        environ["CONTENT_LENGTH"] = declared
    with pytest.raises(bottle.HTTPResponse) as refused:
        read_body(environ, limit=10)
    assert refused.value.status_code == 413
    assert read_body({"wsgi.input": io.BytesIO(b"x" * 10)}, limit=10) == b"x" * 10


def test_models_first_sends_v1_models_urls_past_bottle_and_answers_as_bottle_would(caplog):
    seen = []

    def v1(environ):
        seen.append(environ["PATH_INFO"])
        assert bottle.request.environ is environ, "handlers read the request through bottle.request"
        if environ["PATH_INFO"].endswith("/bad"):
            raise InvalidArgument("Malformed request")
        if environ["PATH_INFO"].endswith("/refused"):
            raise json_error(413, "too large")
        if environ["PATH_INFO"].endswith("/bug"):
            return {}["no such key"]
        return json_response('{"model": "\u00e9"}', **{"X-Appliance-Backend": "local"})

    app = bottle.Bottle()
    app.route("/health", "GET", lambda: "fine")
    wsgi = ModelsFirst(v1, app)

    status, headers, body = call_raw(wsgi, "/v1/models/digits")
    assert status == "200 OK" and body == '{"model": "\u00e9"}'.encode()
    assert headers["Content-Type"] == "application/json" and headers["X-Appliance-Backend"] == "local"
    assert headers["Content-Length"] == str(len(body))
    assert call_raw(wsgi, "/V1/MODELS/digits")[0] == "200 OK", "TF Serving matches /v1 URLs in any case"
    status, headers, body = call_raw(wsgi, "/v1/models/digits", "HEAD")
    assert status == "200 OK" and body == b"" and headers["Content-Length"] == str(len('{"model": "é"}'.encode()))
    assert call(wsgi, "/v1/models/bad")[::2] == ("400 Bad Request", {"error": "Malformed request"})
    assert call(wsgi, "/v1/models/refused")[::2] == ("413 Request Entity Too Large", {"error": "too large"})
    with caplog.at_level(logging.ERROR, logger="appliance.api.app"):
        status, _, body = call(wsgi, "/v1/models/bug")
    assert status.startswith("500") and "KeyError" not in body["error"] and caplog.records
    assert call_raw(wsgi, "/health") == (
        "200 OK",
        {"Content-Type": "text/html; charset=UTF-8", "Content-Length": "4"},
        b"fine",
    )
    assert len(seen) == 6, "the other paths are Bottle's"


def test_models_first_answers_with_the_labels_of_what_served_each_request():
    def v1(environ):
        if environ["PATH_INFO"].endswith("/bad"):
            raise InvalidArgument("Malformed request")
        return for_api(served(json_response("{}"), "digits", 2), "predict")

    app = bottle.Bottle()
    app.install(_json_errors)
    app.route("/v1/appliance/models/<name>/chosen", "GET", lambda name: served(json_response("{}"), name, 1))
    app.route("/health", "GET", lambda: json_response("{}"))
    wsgi = ModelsFirst(v1, app, {"/v1/appliance/models/<name>/chosen": "control", "/health": "health"})

    def labels(path: str, method: str = "GET"):
        environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": method}
        setup_testing_defaults(environ)
        return getattr(wsgi(environ, lambda status, headers, exc_info=None: None), "labels", None)

    assert labels("/v1/models/digits:predict", "POST") == ("digits", 2, "predict", "local")
    assert labels("/v1/models/digits", "HEAD") == ("digits", 2, "predict", "local"), "no body, the same labels"
    assert labels("/v1/models/bad") == ("", None, "", ""), "no handler took it"
    wsgi_path = "/v1/appliance/models/café/chosen".encode().decode("latin-1")  # as a WSGI server passes it
    assert labels(wsgi_path) == ("café", 1, "control", "local"), "the route's API; the name as Bottle decodes it"
    assert labels("/health", "HEAD") == ("", None, "health", "")
    assert labels("/nowhere") is None and labels("/health", "POST") is None, "Bottle's own 404 and 405: unlabelled"
