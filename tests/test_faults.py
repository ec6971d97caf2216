"""Tests of tests/faults.py: every FaultyProxy mode against a small real HTTP/1.1 upstream on loopback."""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.faults import GARBAGE_JSON_BODY, FaultyProxy

TIMEOUT = (1.0, 2.0)  # connect, read: every client call is bounded


class _JSONHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, with Content-Length on every answer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.hits += 1
            hit = self.server.hits
        payload = json.dumps(
            {
                "path": self.path,
                "method": self.command,
                "hit": hit,
                "echo": body.decode("utf-8", "replace"),
                "pad": "x" * 2000,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


class _Upstream(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """Stay quiet when the proxy drops a connection mid-answer (reset, truncate): that is the point here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def upstream():
    server = _Upstream(("127.0.0.1", 0), _JSONHandler)
    server.hits = 0
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(2)


@pytest.fixture
def proxy(upstream):
    with FaultyProxy("127.0.0.1", upstream.server_address[1]) as proxy:
        yield proxy


@pytest.fixture
def session():
    with requests.Session() as session:
        session.trust_env = False  # never route loopback through an HTTP_PROXY from the environment
        yield session


def raw_request(path: str = "/raw") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def recv_until_closed(sock: socket.socket, limit: float = 2.0) -> bytes:
    sock.settimeout(limit)
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_pass_forwards_and_keeps_connections_alive(proxy, upstream, session):
    first = session.get(proxy.url + "/one", timeout=TIMEOUT)
    second = session.post(proxy.url + "/two", data=b"hello", timeout=TIMEOUT)
    assert first.status_code == second.status_code == 200
    assert first.json()["path"] == "/one"
    assert second.json()["echo"] == "hello"
    assert proxy.connections == 1 and proxy.upstream_connections == 1
    assert proxy.requests == 2 and upstream.hits == 2


def test_pass_with_http_client_keep_alive(proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
    try:
        for path in ("/a", "/b", "/c"):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["path"] == path
    finally:
        conn.close()
    assert proxy.connections == 1 and proxy.requests == 3


def test_delay_slows_each_answer(proxy, session):
    proxy.mode = "delay"
    proxy.delay_seconds = 0.3
    start = time.monotonic()
    response = session.get(proxy.url + "/slow", timeout=TIMEOUT)
    assert time.monotonic() - start >= 0.3
    assert response.json()["path"] == "/slow"


def test_hang_makes_the_client_read_timeout_fire(proxy, upstream, session):
    proxy.mode = "hang"
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(proxy.url + "/never", timeout=(1.0, 0.4))
    assert time.monotonic() - start < 2
    assert proxy.requests == 1, "the proxy read the request"
    assert upstream.hits == 0


def test_hang_freezes_an_open_connection_until_the_mode_changes_back(proxy, upstream):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
        sock.sendall(raw_request("/warm"))
        sock.settimeout(2)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.1)  # let the rest of the first answer arrive; it is read away below
        sock.settimeout(0.1)
        try:
            while sock.recv(65536):
                pass
        except TimeoutError:
            pass
        proxy.mode = "hang"
        sock.sendall(raw_request("/frozen"))
        sock.settimeout(0.4)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        assert upstream.hits == 1, "the request is held back while hanging"
        proxy.mode = "pass"
        sock.settimeout(2)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert upstream.hits == 2


def test_reset_new_connections(proxy, upstream, session):
    proxy.mode = "reset"
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(proxy.url + "/reset", timeout=TIMEOUT)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
        sock.sendall(raw_request())
        with pytest.raises(ConnectionResetError):
            recv_until_closed(sock)
    assert upstream.hits == 0


def test_reset_open_connections(proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
    try:
        conn.request("GET", "/before")
        assert conn.getresponse().read()
        proxy.mode = "reset"
        time.sleep(0.2)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            conn.request("GET", "/after")
            conn.getresponse().read()
    finally:
        conn.close()


def test_refuse_then_listen_again_on_the_same_port(proxy, session):
    port = proxy.port
    proxy.mode = "refuse"
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(proxy.url, timeout=TIMEOUT)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert proxy.connections == 0
    proxy.mode = "pass"
    assert proxy.port == port
    assert session.get(proxy.url + "/back", timeout=TIMEOUT).json()["path"] == "/back"
    assert proxy.connections == 1


def test_http500_answers_without_the_upstream(proxy, upstream, session):
    proxy.mode = "http500"
    response = session.post(proxy.url + "/predict", json={"x": 1}, timeout=TIMEOUT)
    assert response.status_code == 500
    with pytest.raises(ValueError):
        response.json()
    assert upstream.hits == 0 and proxy.upstream_connections == 0
    assert proxy.requests == 1


def test_garbage_is_a_client_error(proxy, upstream, session):
    proxy.mode = "garbage"
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(proxy.url + "/garbage", timeout=TIMEOUT)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
    try:
        conn.request("GET", "/garbage")
        with pytest.raises(http.client.BadStatusLine):
            conn.getresponse()
    finally:
        conn.close()
    assert upstream.hits == 0 and proxy.requests == 2


def test_garbage_json_is_a_200_that_is_not_json(proxy, upstream, session):
    proxy.mode = "garbage_json"
    response = session.get(proxy.url + "/json", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.content == GARBAGE_JSON_BODY
    with pytest.raises(ValueError):
        response.json()
    assert upstream.hits == 0


def test_truncate_drops_the_connection_mid_body(proxy, upstream, session):
    proxy.mode = "truncate"
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        session.get(proxy.url + "/cut", timeout=TIMEOUT)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=2)
    try:
        conn.request("GET", "/cut")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()
    assert upstream.hits == 2


def test_truncate_bytes_cuts_at_an_exact_length(proxy):
    proxy.mode = "truncate"
    proxy.truncate_bytes = 10
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
        sock.sendall(raw_request())
        assert recv_until_closed(sock) == b"HTTP/1.1 2"


def test_mode_switches_apply_to_new_connections(proxy, session):
    assert session.get(proxy.url, timeout=TIMEOUT).status_code == 200
    proxy.mode = "http500"
    proxy.drop_connections()  # the session's pooled connection was accepted under "pass"
    assert session.get(proxy.url, timeout=TIMEOUT).status_code == 500
    proxy.mode = "pass"
    assert session.get(proxy.url, timeout=TIMEOUT).status_code == 200  # the 500 closed its connection
    assert proxy.connections == 3
    with pytest.raises(ValueError):
        proxy.mode = "explode"


def test_close_is_prompt_and_idempotent(upstream):
    proxy = FaultyProxy("127.0.0.1", upstream.server_address[1], mode="hang")
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    try:
        sock.sendall(raw_request())
        deadline = time.monotonic() + 2
        while proxy.requests < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
        proxy.close()
        assert time.monotonic() - start < 1.5
        assert recv_until_closed(sock) == b"", "the hung connection is closed"
        proxy.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
        assert proxy.open_connections == 0
        assert not [t for t in threading.enumerate() if t.name.startswith("FaultyProxy-") and str(proxy.port) in t.name]
    finally:
        sock.close()
