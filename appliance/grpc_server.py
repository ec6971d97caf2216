"""Serve the gRPC API with grpcio: the port is bound at once, the services are added and served later.

    server = GrpcServer("127.0.0.1", 8500, access=access)  # binds now: PortInUse if the port is taken
    server.start(register)       # register(grpc_server) adds the services and returns their full names
    server.set_serving(True)     # grpc.health.v1 says SERVING (NOT_SERVING until then: models loading)
    server.stop()                # new calls refused; those in flight get shutdown_grace_seconds to finish

TF Serving's stubs import all of TensorFlow (seconds): the port is claimed first, so a busy one is said at once
and no other process takes it meanwhile; a client that connects before :meth:`start` waits until it is served.
"""

from __future__ import annotations

import logging
import re
import socket
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .api.grpc_security import token_interceptor
from .api.security import LOOPBACK_ONLY, AccessPolicy
from .config import DEFAULT_GRPC_PORT
from .errors import InvalidArgument
from .server import DEFAULT_MAX_REQUEST_BODY_SIZE, listening_socket

log = logging.getLogger(__name__)

_INT32 = range(-(2**31), 2**31)


class SocketInUse(Exception):
    """Another process listens on the UNIX socket: ``unix:/run/appliance.sock is already in use``."""

    def __init__(self, path: Path):
        super().__init__(f"unix:{path} is already in use")
        self.path = path


class GrpcServer:
    """One grpcio server on ``host``:``port`` (and ``socket_path``, a UNIX socket), bound at construction.

    ``port=0`` lets the OS pick a free port: :attr:`port` and :attr:`address` give the real one. Calls run on
    ``max_threads`` threads; a request message larger than ``max_message_bytes`` is refused (RESOURCE_EXHAUSTED),
    responses have no limit, as in TF Serving. ``channel_arguments`` ("KEY=VALUE,..." as TF Serving's
    ``--grpc_channel_arguments``) come last and win. ``ssl_config_file`` (TF Serving's SSLConfig text proto) makes
    every port TLS; ``access`` says which calls need the bearer token (:mod:`.api.grpc_security`).
    ``health_and_reflection`` adds ``grpc.health.v1.Health`` and server reflection to the services registered.

    The port is bound with ``SO_REUSEPORT`` off: a second server on the same port fails instead of sharing it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_GRPC_PORT,
        *,
        socket_path: Path | None = None,
        max_threads: int = 32,
        channel_arguments: str = "",
        ssl_config_file: Path | None = None,
        max_message_bytes: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
        access: AccessPolicy = LOOPBACK_ONLY,
        health_and_reflection: bool = True,
        shutdown_grace_seconds: float = 30.0,
    ):
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, not {max_threads}")
        options: dict[str, int | str] = {
            "grpc.so_reuseport": 0,
            "grpc.max_receive_message_length": max_message_bytes,
            "grpc.max_send_message_length": -1,
        }
        options.update(parse_channel_arguments(channel_arguments))
        credentials = ssl_server_credentials(ssl_config_file) if ssl_config_file is not None else None
        interceptor = token_interceptor(access)

        self.host = host
        self.port = port
        self.address = _address(host, port)
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.socket_path: Path | None = None
        self._health = _Health() if health_and_reflection else None
        self._services: list[str] = []
        self._serving = False
        self._lock = threading.Lock()
        self._started = False  # the grpc server's start() was called (by start(), or by stop() to free the ports)
        self._served = False  # start() was called
        self._stopping = False
        self._stopped = threading.Event()
        self._executor = ThreadPoolExecutor(max_threads, thread_name_prefix="appliance-grpc")
        self._server = grpc.server(
            self._executor, interceptors=[interceptor] if interceptor else None, options=list(options.items())
        )
        try:
            self.port = self._bind(host, port, credentials, ssl_config_file)
            if socket_path is not None:
                self.socket_path = self._bind_socket(Path(socket_path).absolute(), credentials)
        except BaseException:
            self.stop(0)
            raise
        self.address = _address(host, self.port)

    def _bind(self, host: str, port: int, credentials, ssl_config_file: Path | None) -> int:
        # gRPC says only "Failed to bind" whatever the cause: a socket of our own says which (PortInUse, or an
        # OSError naming the address), and claims a free port with no gRPC error in the log.
        listening_socket(host, port).close()
        host = host or "0.0.0.0"
        where = f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if credentials is None:
                return self._server.add_insecure_port(where)
            return self._server.add_secure_port(where, credentials)
        except RuntimeError:
            if credentials is not None:
                raise InvalidArgument(
                    f"gRPC refused the server_key and server_cert of --ssl_config_file {ssl_config_file}: they must "
                    "be PEM text, the private key of the certificate"
                ) from None
            raise OSError(f"cannot listen on {where} for gRPC (GRPC_VERBOSITY=debug says why)") from None

    def _bind_socket(self, path: Path, credentials) -> Path:
        _claim_socket_path(path)
        where = f"unix:{path}"
        try:
            if credentials is None:
                self._server.add_insecure_port(where)
            else:
                self._server.add_secure_port(where, credentials)
        except RuntimeError:
            raise OSError(f"cannot listen on {where} for gRPC: is its folder there, and writable?") from None
        return path

    def start(self, register: Callable[[grpc.Server], Iterable[str]] | None = None) -> None:
        """Add the services (``register(server)`` adds its own and returns their full names) and serve.

        Health and reflection are added here too. Nothing happens once :meth:`stop` has been called, and a stop
        called meanwhile waits for this to finish (grpcio crashes the process when a stopped server gets services).
        """
        with self._lock:
            if self._stopping:
                return
            services = list(register(self._server)) if register is not None else []
            if self._health is not None:
                health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
                names = [*services, health.SERVICE_NAME, reflection.SERVICE_NAME]
                reflection.enable_server_reflection(names, self._server)
            self._services = services
            self._show_health()
            self._server.start()
            self._started = self._served = True
        log.info("gRPC serving on %s%s", self.address, f" and unix:{self.socket_path}" if self.socket_path else "")

    def set_serving(self, serving: bool) -> None:
        """What the health service says of the server and each service: SERVING or NOT_SERVING."""
        with self._lock:
            self._serving = serving
            self._show_health()

    def _show_health(self) -> None:
        if self._health is None:
            return
        status = health_pb2.HealthCheckResponse.SERVING if self._serving else health_pb2.HealthCheckResponse.NOT_SERVING
        # TF Serving registers "PredictionService" and "ModelService": probes written for it ask for those.
        for name in ("", *self._services, *(name.rpartition(".")[2] for name in self._services)):
            self._health.set(name, status)

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> None:
        """Stop gracefully; idempotent, from any thread.

        New calls are refused at once and the health service says NOT_SERVING (its Watch streams end); calls in
        flight get ``timeout`` seconds (default ``shutdown_grace_seconds``; a later call may shorten it), then
        are cancelled. Returns once all that is done, or at once with ``wait=False``.
        """
        grace = self.shutdown_grace_seconds if timeout is None else max(0.0, timeout)
        with self._lock:
            first = not self._stopping
            self._stopping = True
            if self._health is not None:
                self._health.shut_down()
            if not self._started:
                self._server.start()  # a server that never ran keeps its ports bound until it has
                self._started = True
            done = self._server.stop(grace)
        if first:
            threading.Thread(target=self._finish, args=(done,), name="appliance-grpc-stop", daemon=True).start()
        if wait:
            self._stopped.wait()

    def _finish(self, done: threading.Event) -> None:
        done.wait()
        self._executor.shutdown(wait=False)
        self._stopped.set()
        if self._served:
            log.info("stopped serving gRPC on %s", self.address)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`stop` has finished; False if ``timeout`` passed first."""
        return self._stopped.wait(timeout)


class _Health(health.HealthServicer):
    """grpc.health.v1 whose Watch streams end when the server stops (each would hold the stop for all its grace)."""

    def __init__(self):
        super().__init__()  # Watch non-blocking: grpcio hands it the stream's send_response_callback
        self._watches: set[Callable] = set()
        self._watches_lock = threading.Lock()

    def Watch(self, request, context, send_response_callback=None):
        with self._watches_lock:
            self._watches.add(send_response_callback)
        context.add_callback(lambda: self._forget(send_response_callback))
        return super().Watch(request, context, send_response_callback)

    def _forget(self, send_response_callback: Callable) -> None:
        with self._watches_lock:
            self._watches.discard(send_response_callback)

    def shut_down(self) -> None:
        """Say NOT_SERVING for good, and end every Watch stream (OK)."""
        self.enter_graceful_shutdown()
        with self._watches_lock:
            watches, self._watches = self._watches, set()
        for send_response_callback in watches:
            send_response_callback(None)  # None ends the stream


def parse_channel_arguments(text: str) -> dict[str, int | str]:
    """TF Serving's ``--grpc_channel_arguments``: ``"grpc.max_connection_age_ms=60000,k=v"`` as a dict.

    A value that is a 32-bit integer is passed as an integer (60000), any other as a string ("v"), as TF Serving's
    main.cc does.
    """
    arguments: dict[str, int | str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InvalidArgument(f"--grpc_channel_arguments: {item!r} is not KEY=VALUE")
        value = value.strip()
        number = int(value) if re.fullmatch(r"[+-]?[0-9]+", value) else None
        arguments[key.strip()] = number if number is not None and number in _INT32 else value
    return arguments


def ssl_server_credentials(path: Path) -> grpc.ServerCredentials:
    """TLS credentials from TF Serving's SSLConfig text proto at ``path``; InvalidArgument says what is wrong.

    server_key: "-----BEGIN PRIVATE KEY-----\\n..."     # PEM text, not file names, as in TF Serving
    server_cert: "-----BEGIN CERTIFICATE-----\\n..."
    custom_ca: "-----BEGIN CERTIFICATE-----\\n..."     # the CA that signs the client certificates
    client_verify: true                                 # clients must present a certificate it signed
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        raise InvalidArgument(f"cannot read --ssl_config_file {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        config = text_format.Parse(text, _ssl_config_class()())
    except text_format.ParseError as e:
        raise InvalidArgument(f"--ssl_config_file {path} is not a TF Serving SSLConfig text proto: {e}") from None
    if not config.server_key or not config.server_cert:
        raise InvalidArgument(f"--ssl_config_file {path} needs both server_key and server_cert (PEM text)")
    if config.client_verify and not config.custom_ca:
        raise InvalidArgument(
            f"--ssl_config_file {path} has client_verify: true without custom_ca, the PEM of the CA that signs "
            "the client certificates"
        )
    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() or None,
        require_client_auth=config.client_verify,
    )


def _ssl_config_class():
    """tensorflow_serving/config/ssl_config.proto's SSLConfig (tensorflow-serving-api does not ship its module)."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    message = file.message_type.add(name="SSLConfig")
    for number, (name, kind) in enumerate(
        [
            ("server_key", field.TYPE_STRING),
            ("server_cert", field.TYPE_STRING),
            ("custom_ca", field.TYPE_STRING),
            ("client_verify", field.TYPE_BOOL),
        ],
        1,
    ):
        message.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.SSLConfig"))


def _claim_socket_path(path: Path) -> None:
    """Make ``path`` free for a UNIX socket: a stale socket (its server gone) is removed; a live one is refused."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidArgument(f"--grpc_socket_path {path} exists and is not a socket: name a new file")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:  # refused: left behind by a server that crashed
        log.info("removing the stale socket %s", path)
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise SocketInUse(path)


def _address(host: str, port: int) -> str:
    """The address a local client dials: a wildcard host becomes the loopback one ("127.0.0.1:8500", "[::1]:8500")."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    return f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"
