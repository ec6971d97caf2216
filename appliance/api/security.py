"""Secure defaults in front of every route: the Host allow-list (DNS rebinding) and the access token.

    app = Guard(bottle_app, allowed_hosts={"localhost", "127.0.0.1", "[::1]"}, token=None)

A web page in the user's browser can make a name it controls resolve to
127.0.0.1 and then call the appliance; its requests still carry that foreign
name in ``Host``, so any Host not on the allow-list gets 403. When the
appliance listens beyond loopback every request must carry
``Authorization: Bearer <token>`` (401 otherwise); a page cannot forge that.
"""

from __future__ import annotations

import hmac
import ipaddress

from .codec import encode_error

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "[::]")


def host_name(header: str) -> str:
    """The host part of a Host header, without the port, lower-cased ("[::1]:8501" -> "[::1]")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """WSGI middleware: refuse foreign Host headers and, when a token is set, requests without it."""

    def __init__(self, app, allowed_hosts: frozenset[str] | None, token: str | None):
        self._app = app
        self._allowed = allowed_hosts  # None: any Host (listening on every interface, behind the token)
        self._expected = f"Bearer {token}".encode() if token else None

    def __call__(self, environ, start_response):
        host = environ.get("HTTP_HOST")
        if self._allowed is not None and host is not None and host_name(host) not in self._allowed:
            return _refuse(start_response, "403 Forbidden",
                           f"Host {host!r} is not allowed: this server only answers to "
                           f"{', '.join(sorted(self._allowed))} (see --allowed_host)")
        if self._expected is not None:
            given = environ.get("HTTP_AUTHORIZATION", "").encode()
            if not hmac.compare_digest(given, self._expected):
                return _refuse(start_response, "401 Unauthorized",
                               "this server needs 'Authorization: Bearer <token>'; the token is in the "
                               "appliance's config folder (file 'token')",
                               [("WWW-Authenticate", 'Bearer realm="appliance"')])
        return self._app(environ, start_response)


def _refuse(start_response, status: str, message: str, headers=()):
    body = encode_error(message)
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]
