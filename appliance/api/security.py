"""Who may call the appliance: the access policy, and the WSGI middleware that enforces it before any route.

    access = AccessPolicy.for_settings("0.0.0.0", load_token=lambda: load_or_create_token(token_file))
    app = create_app(manager, max_request_bytes=64 << 20, access=access)   # every request needs the token

A Host not on the allow-list gets 403: a page that makes its own name resolve to 127.0.0.1 still sends
that name (DNS rebinding). Beyond loopback every request needs ``Authorization: Bearer <token>`` (401
otherwise), which no page can forge; on loopback ``--require_token_for_control`` asks it of the control
API's changes only (choosing and reloading versions).
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
from collections.abc import Callable, Iterable

import bottle

from .codec import encode_error
from .responses import json_error

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
TOKEN_MISSING = (
    "this request needs 'Authorization: Bearer <token>'; the token is in the appliance's config folder (file 'token')"
)
TOKEN_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="appliance"'}


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


@dataclasses.dataclass(frozen=True)
class AccessPolicy:
    """What a request needs to be answered: a Host on ``allowed_hosts`` (None: any), the ``token`` if there is
    one, the ``control_token`` too for the control API's changes; pages from ``cors_allowed_origins`` may call
    from a browser (see :mod:`.cors`). The defaults answer loopback's names only, with no token.
    """

    allowed_hosts: frozenset[str] | None = LOOPBACK_HOSTS
    token: str | None = None
    control_token: str | None = None
    cors_allowed_origins: tuple[str, ...] = ()

    @classmethod
    def for_settings(
        cls,
        host: str,
        *,
        allowed_hosts: Iterable[str] = (),
        token: str | None = None,
        require_token_for_control: bool = False,
        cors_allowed_origins: Iterable[str] = (),
        load_token: Callable[[], str],
    ) -> AccessPolicy:
        """The policy of an appliance bound to ``host``, with the settings of the same names.

        Beyond loopback every request needs the token; on loopback only when ``token`` is given, and the
        control API's changes when ``require_token_for_control``. Without a ``token`` where one is needed,
        ``load_token()`` gives the stored one (it is not called otherwise). A wildcard ``host`` answers any
        Host name; any other answers loopback's names, its own and ``allowed_hosts``.
        """
        beyond_loopback = not is_loopback(host)
        shared = token or (load_token() if beyond_loopback or require_token_for_control else None)
        return cls(
            allowed_hosts=(
                None
                if is_wildcard(host)
                else frozenset(LOOPBACK_HOSTS | {host.lower(), *(name.lower() for name in allowed_hosts)})
            ),
            token=shared if token or beyond_loopback else None,
            control_token=shared if require_token_for_control else None,
            cors_allowed_origins=tuple(cors_allowed_origins),
        )

    @property
    def token_in_use(self) -> str | None:
        """The token clients may be asked for (the same for every request and for control), if any."""
        return self.token or self.control_token


LOOPBACK_ONLY = AccessPolicy()


def host_name(header: str) -> str:
    """The host part of a Host header, without the port, lower-cased ("[::1]:8501" -> "[::1]")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def has_token(environ: dict, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    return hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", "").encode(), f"Bearer {token}".encode())


class HostAllowList:
    """WSGI middleware: refuse (403) requests whose Host is not allowed; ``allowed_hosts=None`` allows any."""

    def __init__(self, app, allowed_hosts: frozenset[str] | None):
        self._app = app
        self._allowed = allowed_hosts  # None: listening on every interface, behind the token

    def __call__(self, environ, start_response):
        host = environ.get("HTTP_HOST")
        if self._allowed is not None and host is not None and host_name(host) not in self._allowed:
            return refuse(
                start_response,
                "403 Forbidden",
                f"Host {host!r} is not allowed: this server only answers to "
                f"{', '.join(sorted(self._allowed))} (see --allowed_host)",
            )
        return self._app(environ, start_response)


class Utf8Paths:
    """WSGI middleware: refuse (400) a URL path that is not UTF-8 once percent-decoded.

    Bottle drops the bytes it cannot decode, so ``/v1/appliance/models/digits%FF/chosen``
    would otherwise act on ``digits``: a URL must mean what it says.
    """

    def __init__(self, app):
        self._app = app

    def __call__(self, environ, start_response):
        try:
            environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return refuse(start_response, "400 Bad Request", "the URL path is not valid UTF-8")
        return self._app(environ, start_response)


class TokenRequired:
    """WSGI middleware: refuse (401) every request without the bearer token."""

    def __init__(self, app, token: str):
        self._app = app
        self._token = token

    def __call__(self, environ, start_response):
        if not has_token(environ, self._token):
            return refuse(start_response, "401 Unauthorized", TOKEN_MISSING, TOKEN_CHALLENGE.items())
        return self._app(environ, start_response)


def token_required(token: str):
    """A Bottle plugin for single routes: 401 unless the request carries the bearer token."""

    def plugin(callback):
        def checked(*args, **kwargs):
            if not has_token(bottle.request.environ, token):
                raise json_error(401, TOKEN_MISSING, **TOKEN_CHALLENGE)
            return callback(*args, **kwargs)

        return checked

    return plugin


def refuse(start_response, status: str, message: str, headers=()):
    """Answer a WSGI request with ``status`` and ``{"error": message}``, without calling the app."""
    body = encode_error(message)
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]
