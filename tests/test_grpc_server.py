"""The gRPC server's lifecycle and security: real grpcio servers on loopback port 0, real clients.

A small test service (raw bytes, no protos) stands in for TF Serving's services where a call must be held or
echoed; health and reflection are the real ones. TLS certificates are made with the ``openssl`` command.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from appliance.api.security import TOKEN_MISSING, AccessPolicy
from appliance.errors import InvalidArgument
from appliance.grpc_server import GrpcServer, SocketInUse, parse_channel_arguments
from appliance.server import PortInUse

SERVICE = "appliance.test.Service"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
TOKEN = "s3cret-token"
TIMEOUT = 30


class HeldService:
    """Echo answers at once; Hold answers once ``release`` is set (``entered`` says a call is inside)."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def register(self, server: grpc.Server) -> list[str]:
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request),
            "Hold": grpc.unary_unary_rpc_method_handler(self._hold),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        return [SERVICE]

    def _hold(self, request: bytes, context) -> bytes:
        self.entered.set()
        self.release.wait(TIMEOUT)
        return request


@contextlib.contextmanager
def running(service: HeldService | None = None, host: str = "127.0.0.1", **options):
    server = GrpcServer(host, 0, **options)
    try:
        server.start((service or HeldService()).register)
        yield server
    finally:
        server.stop(0)


@contextlib.contextmanager
def channel_to(target: str, credentials: grpc.ChannelCredentials | None = None, **options):
    channel = (
        grpc.secure_channel(target, credentials, options=list(options.items()))
        if credentials
        else grpc.insecure_channel(target, options=list(options.items()))
    )
    with channel:
        yield channel


def echo(channel: grpc.Channel, payload: bytes = b"hello", metadata=None) -> bytes:
    return channel.unary_unary(f"/{SERVICE}/Echo")(payload, timeout=TIMEOUT, metadata=metadata)


def health_status(channel: grpc.Channel, service: str = "", metadata=None) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=TIMEOUT, metadata=metadata).status


def listed_services(channel: grpc.Channel, metadata=None) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT, metadata=metadata
    )
    return {service.name for service in answer.list_services_response.service}


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


# -- serving, health, reflection ---------------------------------------------------------------------------------


def test_port_zero_picks_a_free_port_and_the_address_says_it():
    with running() as server, channel_to(server.address) as channel:
        assert server.port > 0 and server.address == f"127.0.0.1:{server.port}"
        assert echo(channel, b"\x00payload") == b"\x00payload"


def test_health_says_not_serving_until_ready_then_serving_for_the_server_and_each_service():
    with running() as server, channel_to(server.address) as channel:
        for name in ("", SERVICE, "Service"):  # "Service": the short name, as TF Serving registers its own
            assert health_status(channel, name) == health_pb2.HealthCheckResponse.NOT_SERVING
        server.set_serving(True)
        for name in ("", SERVICE, "Service"):
            assert health_status(channel, name) == health_pb2.HealthCheckResponse.SERVING
        assert code_of(lambda: health_status(channel, "no.such.Service")) == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services_registered_and_describes_them():
    with running() as server, channel_to(server.address) as channel:
        assert listed_services(channel) == {SERVICE, HEALTH, REFLECTION}
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=HEALTH)]), timeout=TIMEOUT
        )
        assert answer.file_descriptor_response.file_descriptor_proto, "what grpcurl needs to describe a service"


def test_without_health_and_reflection_only_the_services_registered_answer():
    with running(health_and_reflection=False) as server, channel_to(server.address) as channel:
        assert echo(channel) == b"hello"
        assert code_of(lambda: health_status(channel)) == grpc.StatusCode.UNIMPLEMENTED
        assert code_of(lambda: listed_services(channel)) == grpc.StatusCode.UNIMPLEMENTED


# -- ports and sockets -------------------------------------------------------------------------------------------


def test_a_busy_port_raises_port_in_use():
    with running() as server:
        with pytest.raises(PortInUse) as raised:
            GrpcServer("127.0.0.1", server.port)
        assert (raised.value.host, raised.value.port) == ("127.0.0.1", server.port)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(PortInUse):
            GrpcServer("127.0.0.1", holder.getsockname()[1])


def test_the_port_is_not_shared_with_another_grpc_server():
    """SO_REUSEPORT is off: gRPC's default (on) would let a second server share the port, each getting some calls."""
    with running() as server:
        other = grpc.server(ThreadPoolExecutor(1))  # grpcio's defaults, SO_REUSEPORT on
        with pytest.raises(RuntimeError):
            other.add_insecure_port(f"127.0.0.1:{server.port}")


def test_a_server_stopped_before_it_started_frees_its_port():
    server = GrpcServer("127.0.0.1", 0)
    server.stop()
    server.start(HeldService().register)  # after stop: does nothing
    again = GrpcServer("127.0.0.1", server.port)
    again.stop()


def test_a_unix_socket_serves_too_and_is_removed_at_stop(tmp_path):
    path = tmp_path / "appliance.sock"
    with running(socket_path=path) as server, channel_to(f"unix:{path}") as channel:
        assert server.socket_path == path and path.is_socket()
        assert echo(channel) == b"hello"
    assert not path.exists()


def test_a_stale_socket_is_replaced_a_live_one_refused_and_a_file_kept(tmp_path):
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as crashed:
        crashed.bind(str(stale))  # closed without unlinking: what a crash leaves
    with running(socket_path=stale), channel_to(f"unix:{stale}") as channel:
        assert echo(channel) == b"hello"
        with pytest.raises(SocketInUse) as raised:
            GrpcServer("127.0.0.1", 0, socket_path=stale)
        assert str(stale) in str(raised.value)
    not_a_socket = tmp_path / "notes.txt"
    not_a_socket.write_text("keep me")
    with pytest.raises(InvalidArgument, match="not a socket"):
        GrpcServer("127.0.0.1", 0, socket_path=not_a_socket)
    assert not_a_socket.read_text() == "keep me"


# -- message size and channel arguments --------------------------------------------------------------------------


def test_a_request_larger_than_max_message_bytes_is_resource_exhausted():
    with running(max_message_bytes=4096) as server, channel_to(server.address) as channel:
        assert code_of(lambda: health_status(channel, "x" * 3000)) == grpc.StatusCode.NOT_FOUND  # arrived
        assert code_of(lambda: health_status(channel, "x" * 5000)) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_channel_arguments_reach_the_server_and_win_over_the_defaults():
    with (
        running(max_message_bytes=1 << 20, channel_arguments="grpc.max_receive_message_length=1000") as server,
        channel_to(server.address) as channel,
    ):
        assert code_of(lambda: health_status(channel, "x" * 500)) == grpc.StatusCode.NOT_FOUND
        assert code_of(lambda: health_status(channel, "x" * 2000)) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_channel_arguments_parse_as_tf_serving_does():
    assert parse_channel_arguments("") == {}
    assert parse_channel_arguments("grpc.max_connection_age_ms=60000, grpc.primary_user_agent=edge-box,") == {
        "grpc.max_connection_age_ms": 60000,
        "grpc.primary_user_agent": "edge-box",
    }
    assert parse_channel_arguments("a=-5,b=2147483648,c=1e3") == {"a": -5, "b": "2147483648", "c": "1e3"}
    for bad, item in (("novalue", "novalue"), ("=5", "=5"), ("a=1,,b", "b")):
        with pytest.raises(InvalidArgument, match=f"'{item}' is not KEY=VALUE"):
            parse_channel_arguments(bad)


# -- token -------------------------------------------------------------------------------------------------------


def bearer(token: str = TOKEN):
    return (("authorization", f"Bearer {token}"),)


def test_beyond_loopback_every_call_but_health_needs_the_token():
    access = AccessPolicy.for_settings("0.0.0.0", load_token=lambda: TOKEN)
    with running(host="0.0.0.0", access=access) as server, channel_to(server.address) as channel:
        assert server.address == f"127.0.0.1:{server.port}"
        with pytest.raises(grpc.RpcError) as refused:
            echo(channel)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED and refused.value.details() == TOKEN_MISSING
        assert code_of(lambda: echo(channel, metadata=bearer("wrong"))) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: listed_services(channel)) == grpc.StatusCode.UNAUTHENTICATED
        unknown = channel.unary_unary("/no.such.Service/Method")
        assert code_of(lambda: unknown(b"", timeout=TIMEOUT)) == grpc.StatusCode.UNAUTHENTICATED
        assert echo(channel, metadata=bearer()) == b"hello"
        assert HEALTH in listed_services(channel, metadata=bearer())
        assert code_of(lambda: unknown(b"", timeout=TIMEOUT, metadata=bearer())) == grpc.StatusCode.UNIMPLEMENTED
        server.set_serving(True)
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING  # exempt: probes carry no token
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


def test_a_token_given_on_loopback_is_required_too():
    access = AccessPolicy.for_settings("127.0.0.1", token=TOKEN, load_token=lambda: "unused")
    with running(access=access) as server, channel_to(server.address) as channel:
        assert code_of(lambda: echo(channel)) == grpc.StatusCode.UNAUTHENTICATED
        assert echo(channel, metadata=bearer()) == b"hello"


def test_on_loopback_without_a_token_nothing_is_asked():
    with running() as server, channel_to(server.address) as channel:
        assert echo(channel, metadata=bearer("anything")) == b"hello"


# -- stopping ----------------------------------------------------------------------------------------------------


def test_graceful_stop_lets_a_call_in_flight_finish_and_refuses_new_ones():
    service = HeldService()
    with running(service, shutdown_grace_seconds=TIMEOUT) as server, channel_to(server.address) as channel:
        held = channel.unary_unary(f"/{SERVICE}/Hold").future(b"in flight", timeout=TIMEOUT)
        assert service.entered.wait(TIMEOUT)
        server.stop(wait=False)
        with channel_to(server.address) as late:
            assert code_of(lambda: echo(late)) == grpc.StatusCode.UNAVAILABLE
        assert not server.wait_stopped(0)
        service.release.set()
        assert held.result() == b"in flight"
        assert server.wait_stopped(TIMEOUT)


def test_a_call_still_running_when_the_grace_ends_is_cancelled():
    service = HeldService()
    with running(service) as server, channel_to(server.address) as channel:
        held = channel.unary_unary(f"/{SERVICE}/Hold").future(b"", timeout=TIMEOUT)
        assert service.entered.wait(TIMEOUT)
        server.stop(0.2)
        assert server.wait_stopped(0)
        assert code_of(held.result) in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
        service.release.set()


def test_stop_says_not_serving_and_ends_health_watch_streams():
    """An open Watch (client-side health checking) would otherwise hold the stop for the whole grace."""
    with running(shutdown_grace_seconds=TIMEOUT) as server, channel_to(server.address) as channel:
        server.set_serving(True)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        server.stop()
        assert [answer.status for answer in watch] == [health_pb2.HealthCheckResponse.NOT_SERVING]
        assert watch.code() == grpc.StatusCode.OK


# -- TLS ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost and 127.0.0.1, a client certificate, and a stranger CA."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    folder = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    for ca in ("ca", "stranger"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                "-days", "2", "-subj", f"/CN={ca}")  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, extensions in (("server", ["-extfile", "server.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", *extensions)  # fmt: skip
    return {path.name: path.read_text() for path in folder.iterdir() if path.suffix in (".pem", ".key")}


def ssl_config(tmp_path, pki, **fields) -> Path:
    """An SSLConfig text proto in tmp_path, with the PEM text inline as TF Serving reads it."""
    values = {"server_key": pki["server.key"], "server_cert": pki["server.pem"], **fields}
    path = tmp_path / "ssl.config"
    # a JSON string is a valid text-proto string for PEM text (ASCII; \n and \" escaped alike)
    path.write_text("".join(f"{name}: {json.dumps(value)}\n" for name, value in values.items()))
    return path


def client_credentials(pki, ca: str = "ca.pem", certificate: bool = False) -> grpc.ChannelCredentials:
    pair = (pki["client.key"].encode(), pki["client.pem"].encode()) if certificate else (None, None)
    return grpc.ssl_channel_credentials(pki[ca].encode(), *pair)


def test_tls_serves_clients_that_trust_the_ca_only(tmp_path, pki):
    with running(ssl_config_file=ssl_config(tmp_path, pki)) as server:
        target = f"localhost:{server.port}"
        with channel_to(target, client_credentials(pki)) as channel:
            assert echo(channel) == b"hello"
        with channel_to(target, client_credentials(pki, ca="stranger.pem")) as channel:
            assert code_of(lambda: echo(channel)) == grpc.StatusCode.UNAVAILABLE
        with channel_to(target) as plaintext:
            assert code_of(lambda: echo(plaintext)) == grpc.StatusCode.UNAVAILABLE


def test_client_verify_requires_a_client_certificate_signed_by_custom_ca(tmp_path, pki):
    config = ssl_config(tmp_path, pki, custom_ca=pki["ca.pem"], client_verify=True)
    with running(ssl_config_file=config) as server:
        target = f"localhost:{server.port}"
        with channel_to(target, client_credentials(pki, certificate=True)) as channel:
            assert echo(channel) == b"hello"
        with channel_to(target, client_credentials(pki)) as channel:
            assert code_of(lambda: echo(channel)) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"server_key": ""}, "needs both server_key and server_cert"),
        ({"client_verify": True}, "client_verify: true without custom_ca"),
        ({"server_key": "not a key"}, "refused the server_key and server_cert"),
        ({"server_cert": "CLIENT"}, "refused the server_key and server_cert"),  # another key's certificate
    ],
    ids=["no-key", "verify-without-ca", "garbage-key", "mismatched-pair"],
)
def test_a_bad_ssl_config_is_invalid_argument_naming_the_file(tmp_path, pki, fields, says):
    fields = {name: pki["client.pem"] if value == "CLIENT" else value for name, value in fields.items()}
    config = ssl_config(tmp_path, pki, **fields)
    with pytest.raises(InvalidArgument) as raised:
        GrpcServer("127.0.0.1", 0, ssl_config_file=config)
    assert says in raised.value.message and str(config) in raised.value.message


def test_an_unreadable_or_malformed_ssl_config_is_invalid_argument(tmp_path):
    with pytest.raises(InvalidArgument, match="cannot read --ssl_config_file"):
        GrpcServer("127.0.0.1", 0, ssl_config_file=tmp_path / "missing.config")
    malformed = tmp_path / "ssl.config"
    malformed.write_text("server_key: 'x'\nno_such_field: 1\n")
    with pytest.raises(InvalidArgument, match=r"not a TF Serving SSLConfig text proto.*no_such_field"):
        GrpcServer("127.0.0.1", 0, ssl_config_file=malformed)
