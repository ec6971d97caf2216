"""The Bottle app's error plumbing and body limits, called as a WSGI application in process."""

from __future__ import annotations

import io
import json
import logging
from wsgiref.util import setup_testing_defaults

import bottle
import pytest

from appliance.api.app import _json_errors, read_body
from appliance.errors import NotFound


def call(app, path: str, method: str = "GET") -> tuple[str, dict, dict]:
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], json.loads(body)


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
