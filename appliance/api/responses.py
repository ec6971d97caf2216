"""JSON responses and errors for every route: TF Serving's status mapping and ``{"error": ...}`` bodies.

    raise json_error(413, "request body is 80000000 bytes; the limit is 67108864")
    response = answer_error(error)   # what a handler raised, answered: its status and message, or a 500

A bug's traceback goes to the server's log only; its client gets a 500 that says to look there.
"""

from __future__ import annotations

import json
import logging

import bottle

from ..errors import Code, ServingError
from .codec import encode_error

log = logging.getLogger("appliance.api.app")  # where bugs in handlers have always been logged

JSON_TYPE = "application/json"
INTERNAL_ERROR = "Internal error: the server could not complete the request; see its log"

# TF Serving's http_server.cc ToHTTPStatusCode.
HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def json_response(body: bytes | str, status: int = 200, **headers) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(body=body, status=status, headers={"Content-Type": JSON_TYPE, **headers})


def json_error(status: int, message: str, **headers) -> bottle.HTTPResponse:
    return json_response(encode_error(message), status, **headers)


def error_response(error: ServingError) -> bottle.HTTPResponse:
    return json_error(HTTP_STATUS.get(error.code, 500), error.message)


def answer_error(error: Exception) -> bottle.HTTPResponse:
    """The answer to what a handler raised: a response as it is, a ServingError's status and message,
    anything else a 500 that tells the client nothing of it (its traceback goes to the log)."""
    if isinstance(error, bottle.HTTPResponse):
        return error
    if isinstance(error, ServingError):
        return error_response(error)
    log.error("unexpected error in %s %s", bottle.request.method, bottle.request.path, exc_info=error)
    return json_error(500, INTERNAL_ERROR)


def dumps(document) -> str:
    """Pretty JSON for status, metadata and health documents."""
    return json.dumps(document, indent=1, allow_nan=True)
