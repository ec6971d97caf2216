"""Cross-origin calls from the web pages the user allows (CORS); off unless origins are listed.

    app = Cors(app, ["http://localhost:3000", "chrome-extension://abcdefghijklmnopabcdefghijklmnop"])

With no allow-list the appliance sends no ``Access-Control-*`` header at all, so a
browser keeps every web page from reading its answers (see :class:`Cors` for the rules).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from ..errors import InvalidArgument
from .security import refuse

log = logging.getLogger(__name__)

ANY_ORIGIN = "*"
ALLOWED_METHODS = "GET, POST, PUT, OPTIONS"
# Inference-Header-Content-Length: the v2 API's binary tensor data, in requests and in answers.
ALLOWED_HEADERS = ("Content-Type", "Authorization", "Inference-Header-Content-Length")
EXPOSED_HEADERS = "Inference-Header-Content-Length, X-Appliance-Backend"  # answers' headers pages may read
PREFLIGHT_MAX_AGE_SECONDS = 600
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]+")  # scheme://host[:port], nothing after


def parse_origin(text: str) -> str:
    """A configured origin, lower-cased without a trailing slash; InvalidArgument if it is not one."""
    origin = text.strip().rstrip("/").lower()
    if origin == ANY_ORIGIN or _ORIGIN.fullmatch(origin):
        return origin
    raise InvalidArgument(
        f"CORS origin {text!r} is not an origin: write scheme://host[:port] "
        f"(e.g. http://localhost:3000 or chrome-extension://<id>), or * for any"
    )


class Cors:
    """WSGI middleware answering preflights and marking answers for the allowed origins.

    Answers to a listed origin carry ``Access-Control-Allow-Origin: <that origin>``,
    ``Vary: Origin`` and the appliance's own headers a page may read (Access-Control-Expose-Headers);
    its preflights (``OPTIONS`` with ``Access-Control-Request-Method``) get 204 with the methods,
    headers and cache time allowed, without calling the app, so they need no token (browsers never
    send one with a preflight): the request that follows still does. A preflight from any other
    origin gets 403, and its other requests get no CORS header. ``*`` (only when listed explicitly)
    allows every origin and is answered as ``*``, which browsers never combine with credentials;
    ``Access-Control-Allow-Credentials`` is never sent.
    """

    def __init__(self, app, allowed_origins: Iterable[str]):
        origins = {parse_origin(origin) for origin in allowed_origins}
        self._app = app
        self._any = ANY_ORIGIN in origins
        self._allowed = frozenset(origins - {ANY_ORIGIN})
        self._allowed_headers = {name.lower() for name in ALLOWED_HEADERS}
        if self._any:
            log.warning("CORS: web pages from every origin may call this appliance ('*' is allowed)")

    def __call__(self, environ, start_response):
        origin = environ.get("HTTP_ORIGIN")
        allow = self._allow_origin(origin)
        if environ["REQUEST_METHOD"] == "OPTIONS" and origin and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ:
            return self._preflight(environ, start_response, origin, allow)
        if allow is None:
            return self._app(environ, start_response)

        def start_allowed(status, headers, exc_info=None):
            exposed = ("Access-Control-Expose-Headers", EXPOSED_HEADERS)
            return start_response(status, [*headers, *self._origin_headers(allow), exposed], exc_info)

        return self._app(environ, start_allowed)

    def _allow_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin answer to this Origin header; None when it is not allowed."""
        if not origin:
            return None
        if self._any:
            return ANY_ORIGIN
        return origin if origin.lower() in self._allowed else None

    def _preflight(self, environ, start_response, origin: str, allow: str | None):
        if allow is None:
            return refuse(
                start_response,
                "403 Forbidden",
                f"origin {origin!r} may not call this server from a browser (see --cors_allowed_origin)",
            )
        requested = [h.strip() for h in environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "").split(",")]
        allowed = [h for h in requested if h.lower() in self._allowed_headers]
        start_response(
            "204 No Content",
            [
                *self._origin_headers(allow, "Access-Control-Request-Headers"),
                ("Access-Control-Allow-Methods", ALLOWED_METHODS),
                ("Access-Control-Allow-Headers", ", ".join(allowed or ALLOWED_HEADERS)),
                ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_SECONDS)),
            ],
        )
        return []

    @staticmethod
    def _origin_headers(allow: str, *varies_with: str) -> list[tuple[str, str]]:
        headers = [("Access-Control-Allow-Origin", allow)]
        if allow != ANY_ORIGIN:  # the answer depends on the Origin header: caches must know
            headers.append(("Vary", ", ".join(("Origin", *varies_with))))
        return headers
