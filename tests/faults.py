"""A fault-injecting TCP proxy for tests of clients that talk to a remote HTTP server.

``FaultyProxy(upstream_host, upstream_port)`` listens on 127.0.0.1 (a free port
unless ``listen_port`` is given) and forwards bytes both ways to the upstream,
one daemon thread per client connection. Point the client under test at
``proxy.url`` and switch the proxy's behaviour at run time::

    with FaultyProxy("127.0.0.1", server_port) as proxy:
        proxy.mode = "hang"
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(proxy.url, timeout=(1, 0.5))

Modes (``proxy.mode = ...``, thread-safe):

``"pass"``
    forward transparently; HTTP keep-alive connections work.
``"delay"``
    wait ``proxy.delay_seconds`` before forwarding each chunk from the upstream
    to the client.
``"hang"``
    accept connections and read what the client sends, but never answer nor
    close. Connections already open are frozen too: what the client sends is
    held back and the upstream's answers are not read. When the mode changes
    again, held connections carry on under the new mode (the held bytes are
    forwarded then).
``"reset"``
    close client connections with an RST as soon as they send data. Already
    open connections that have sent anything are reset at once.
``"refuse"``
    stop listening, so connects are refused; leaving this mode binds the same
    port again.
``"http500"``
    answer each request locally with ``500 Internal Server Error`` and a small
    text body, then close; the upstream is not contacted.
``"garbage"``
    answer each request with random bytes that are not HTTP, then close.
``"garbage_json"``
    answer each request locally with a valid ``200`` whose body is HTML, not
    JSON (Content-Type text/html), then close.
``"truncate"``
    forward the request, then only the first bytes of the upstream's answer,
    and close mid-response: the headers plus half the body (Content-Length),
    or ``proxy.truncate_bytes`` bytes of the response stream when that is set.

Except for "hang" and "reset" (and "refuse", which only concerns connecting),
a mode applies to connections accepted after it is set; a connection keeps the
mode it was accepted under. Locally answered modes close after their answer,
so a client reconnects and sees later changes. ``drop_connections()`` closes
all open connections (gracefully) when a test wants pooled clients to
reconnect.

Counters: ``connections`` (accepted client connections), ``requests`` (HTTP
request lines seen from clients, in every mode), ``upstream_connections``
(connections opened to the upstream); ``reset_counts()`` zeroes them.
``close()`` stops everything promptly (bounded joins) and may be called again.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import struct
import threading
import time

MODES = ("pass", "delay", "hang", "reset", "refuse", "http500", "garbage", "garbage_json", "truncate")
LOCAL_MODES = ("http500", "garbage", "garbage_json")

HOST = "127.0.0.1"
HTTP500_BODY = b"Internal Server Error (injected by FaultyProxy)\n"
GARBAGE_JSON_BODY = b"<html>oops</html>\n"

_POLL = 0.05  # how often every loop looks at the mode and at close()
_IO_TIMEOUT = 5.0  # bound on a single blocking send or connect
_RECV = 65536
_MAX_LINE = 65536
_IDLE_ANSWER = 0.5  # local modes answer input that never forms a whole request after this long
_DRAIN = 1.0  # after our FIN, how long we read what the client still sends before closing
_JOIN = 2.0  # close(): total time given to the threads to end

_REQUEST_LINE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/\d\.\d$")
_CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)


class _Done(Exception):
    """The handling of one client connection is over."""


class _RequestParser:
    """Incremental parser of a client's HTTP/1.x byte stream.

    Counts request lines (``started``) and requests read to their end
    (``completed``), following Content-Length and chunked bodies. Lines that
    are not request lines are skipped where a request line is expected.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = "line"
        self._remaining = 0
        self._headers: list[bytes] = []
        self.started = 0
        self.completed = 0

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > _MAX_LINE:
                self._buf.clear()
            return None
        line = bytes(self._buf[: end + 1]).strip()
        del self._buf[: end + 1]
        return line

    def _end_of_headers(self) -> None:
        headers = {}
        for raw in self._headers:
            name, _, value = raw.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        self._headers = []
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            self._state = "chunk_size"
            return
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            length = 0
        if length > 0:
            self._state, self._remaining = "body", length
        else:
            self._complete()

    def _complete(self) -> None:
        self.completed += 1
        self._state = "line"

    def feed(self, data: bytes) -> int:
        """Take more bytes; return how many new request lines they held."""
        before = self.started
        self._buf += data
        while self._buf:
            if self._state in ("body", "chunk_data"):
                if not self._take_body():
                    break
                continue
            line = self._line()
            if line is None:
                break
            self._take_line(line)
        return self.started - before

    def _take_body(self) -> bool:
        """Consume body (or chunk) bytes from the buffer; whether the body (or chunk) has ended."""
        taken = min(self._remaining, len(self._buf))
        del self._buf[:taken]
        self._remaining -= taken
        if self._remaining:
            return False
        if self._state == "body":
            self._complete()
        else:
            self._state = "chunk_size"
        return True

    def _take_line(self, line: bytes) -> None:
        if self._state == "line":
            if _REQUEST_LINE.match(line):
                self.started += 1
                self._state = "headers"
        elif self._state == "headers":
            if line:
                self._headers.append(line)
            else:
                self._end_of_headers()
        elif self._state == "chunk_size":
            self._take_chunk_size(line)
        elif self._state == "trailers" and not line:
            self._complete()

    def _take_chunk_size(self, line: bytes) -> None:
        if not line:
            return
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            self._complete()
            return
        if size:
            self._state, self._remaining = "chunk_data", size + 2
        else:
            self._state = "trailers"


class _Truncator:
    """Passes on only the first bytes of an upstream's response stream."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._head: bytearray | None = bytearray() if limit is None else None
        self.sent = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Return (what to send on, whether the limit is reached)."""
        if self.limit is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) <= _MAX_LINE:
                    return b"", False
                self.limit = len(self._head) // 2
            else:
                header_length = end + 4
                match = _CONTENT_LENGTH.search(bytes(self._head[:end]))
                body = int(match.group(1)) if match else len(self._head) - header_length
                self.limit = header_length + body // 2 if body > 0 else header_length - 2
            data, self._head = bytes(self._head), None
        out = data[: max(0, self.limit - self.sent)]
        self.sent += len(out)
        return out, self.sent >= self.limit


class _Conn:
    """One client connection and, once opened, its upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.parser = _RequestParser()
        self.seen = 0  # bytes received from the client
        self.selector = selectors.DefaultSelector()
        self.selector.register(client, selectors.EVENT_READ)


def _canned(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _garbage() -> bytes:
    # Starts with a NUL byte, so no HTTP parser can take it for a status line.
    return b"\x00\xff\xfeNOT-HTTP " + os.urandom(256) + b"\r\n"


class FaultyProxy:
    """A TCP proxy on loopback in front of ``upstream_host:upstream_port`` that injects faults on demand."""

    def __init__(self, upstream_host: str, upstream_port: int, *, mode: str = "pass", listen_port: int = 0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.delay_seconds = 0.5
        self.truncate_bytes: int | None = None
        self._mode = "pass"
        self._lock = threading.Lock()  # counters, the sets of threads and sockets
        self._mode_lock = threading.Lock()  # mode changes, listening on and off
        self._closed = threading.Event()
        self._connections = 0
        self._requests = 0
        self._upstream_connections = 0
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._conns: set[_Conn] = set()
        self._listener: tuple[socket.socket, threading.Event, threading.Thread] | None = None
        self.port = listen_port
        self._start_listening()
        self.mode = mode

    # ----------------------------------------------------------------- public API

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}; expected one of {MODES}")
        with self._mode_lock:
            old = self._mode
            if value == "refuse" and old != "refuse":
                self._stop_listening()
            self._mode = value
            if old == "refuse" and value != "refuse" and not self._closed.is_set():
                self._start_listening()

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def upstream_connections(self) -> int:
        with self._lock:
            return self._upstream_connections

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def reset_counts(self) -> None:
        with self._lock:
            self._connections = self._requests = self._upstream_connections = 0

    def drop_connections(self) -> None:
        """Close every open connection (client and upstream sides) with a FIN."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop listening, end every connection and wait (bounded) for the threads. Idempotent."""
        with self._mode_lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._stop_listening()
        self.drop_connections()
        deadline = time.monotonic() + _JOIN
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FaultyProxy {self.url} -> {self.upstream_host}:{self.upstream_port} mode={self._mode}>"

    # ------------------------------------------------------------------ listening

    def _start_listening(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        stop = threading.Event()
        thread = threading.Thread(
            target=self._accept_loop, args=(sock, stop), daemon=True, name=f"FaultyProxy-accept-{self.port}"
        )
        self._listener = (sock, stop, thread)
        thread.start()

    def _stop_listening(self) -> None:
        if self._listener is None:
            return
        sock, stop, thread = self._listener
        self._listener = None
        stop.set()
        thread.join(_JOIN)
        sock.close()  # connects still in the backlog are refused with an RST

    def _accept_loop(self, sock: socket.socket, stop: threading.Event) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while not stop.is_set():
                if not selector.select(_POLL) or stop.is_set():
                    continue
                try:
                    client, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                client.settimeout(_IO_TIMEOUT)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                thread = threading.Thread(
                    target=self._handle, args=(client,), daemon=True, name=f"FaultyProxy-conn-{self.port}"
                )
                with self._lock:
                    self._connections += 1
                    self._sockets.add(client)
                    self._threads.add(thread)
                thread.start()

    # ---------------------------------------------------------- one connection

    def _handle(self, client: socket.socket) -> None:
        conn = _Conn(client)
        with self._lock:
            self._conns.add(conn)
        try:
            buf = b""
            while True:
                if self._closed.is_set():
                    raise _Done
                mode = self._mode
                if mode == "hang":
                    buf = self._hang(conn, buf)
                elif mode == "reset":
                    buf = self._reset(conn, buf)
                elif mode in LOCAL_MODES:
                    buf = self._answer_locally(conn, buf, mode)
                else:
                    self._relay(conn, buf, mode if mode in ("delay", "truncate") else "pass")
        except (_Done, OSError):
            pass
        finally:
            conn.selector.close()
            for sock in (conn.client, conn.upstream):
                if sock is not None:
                    sock.close()
            with self._lock:
                self._conns.discard(conn)
                self._sockets.discard(conn.client)
                self._sockets.discard(conn.upstream)
                self._threads.discard(threading.current_thread())

    def _account(self, conn: _Conn, data: bytes) -> None:
        conn.seen += len(data)
        started = conn.parser.feed(data)
        if started:
            with self._lock:
                self._requests += started

    def _poll_client(self, conn: _Conn) -> bytes | None:
        """Wait one poll for client data: the data, None when there is none yet; _Done when the client left."""
        if self._closed.is_set():
            raise _Done
        if not conn.selector.select(_POLL):
            return None
        data = conn.client.recv(_RECV)
        if not data:
            raise _Done
        self._account(conn, data)
        return data

    def _rst(self, conn: _Conn) -> None:
        with contextlib.suppress(OSError):
            conn.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.client.close()
        raise _Done

    def _finish(self, conn: _Conn) -> None:
        """Close the client side with a FIN, after reading what it still sends (so close() sends no RST)."""
        client = conn.client
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            raise _Done from None
        deadline = time.monotonic() + _DRAIN
        client.settimeout(_POLL)
        while not self._closed.is_set() and time.monotonic() < deadline:
            try:
                if not client.recv(_RECV):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        raise _Done

    def _hang(self, conn: _Conn, buf: bytes) -> bytes:
        while self._mode == "hang":
            data = self._poll_client(conn)
            if data:
                buf += data
        return buf

    def _reset(self, conn: _Conn, buf: bytes) -> bytes:
        while self._mode == "reset":
            if conn.seen:
                self._rst(conn)
            data = self._poll_client(conn)
            if data:
                buf += data
        return buf

    def _answer_locally(self, conn: _Conn, buf: bytes, mode: str) -> bytes:
        last_data = time.monotonic()
        while True:
            current = self._mode
            if current == "reset" and conn.seen:
                self._rst(conn)
            if current == "hang":
                return buf
            if conn.parser.completed or (buf and time.monotonic() - last_data >= _IDLE_ANSWER):
                break
            data = self._poll_client(conn)
            if data:
                buf += data
                last_data = time.monotonic()
        if mode == "http500":
            answer = _canned("500 Internal Server Error", "text/plain; charset=utf-8", HTTP500_BODY)
        elif mode == "garbage_json":
            answer = _canned("200 OK", "text/html; charset=utf-8", GARBAGE_JSON_BODY)
        else:
            answer = _garbage()
        conn.client.sendall(answer)
        self._finish(conn)
        raise _Done  # not reached: _finish raises

    def _relay(self, conn: _Conn, buf: bytes, mode: str) -> None:
        upstream = self._open_upstream(conn)
        selector = conn.selector
        selector.register(upstream, selectors.EVENT_READ)
        reading_upstream = True
        reading_client = True
        upstream_shut = False
        to_upstream = bytearray(buf)
        truncator = _Truncator(self.truncate_bytes) if mode == "truncate" else None
        while True:
            hanging = self._relay_hangs(conn)
            if hanging == reading_upstream:  # freeze or thaw the upstream -> client direction
                if hanging:
                    selector.unregister(upstream)
                else:
                    selector.register(upstream, selectors.EVENT_READ)
                reading_upstream = not hanging
            if not hanging:
                if to_upstream:
                    upstream.sendall(to_upstream)
                    to_upstream.clear()
                if not reading_client and not upstream_shut:
                    upstream.shutdown(socket.SHUT_WR)
                    upstream_shut = True
            for key, _ in selector.select(_POLL):
                if key.fileobj is conn.client:
                    reading_client = self._from_client(conn, to_upstream)
                else:
                    self._to_client(conn, upstream, mode, truncator)

    def _open_upstream(self, conn: _Conn) -> socket.socket:
        """Connect ``conn`` to the upstream; _Done (the client side closed) when that fails or on close()."""
        try:
            upstream = socket.create_connection((self.upstream_host, self.upstream_port), timeout=_IO_TIMEOUT)
        except OSError:
            self._finish(conn)  # the client sees the connection closed without an answer
            raise _Done from None
        conn.upstream = upstream
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._upstream_connections += 1
            self._sockets.add(upstream)
        if self._closed.is_set():
            raise _Done
        return upstream

    def _relay_hangs(self, conn: _Conn) -> bool:
        """Whether the relay is frozen now ("hang"); _Done on close(), and an RST in "reset" once data came."""
        if self._closed.is_set():
            raise _Done
        current = self._mode
        if current == "reset" and conn.seen:
            self._rst(conn)
        return current == "hang"

    def _from_client(self, conn: _Conn, to_upstream: bytearray) -> bool:
        """Queue what the client sent for the upstream; whether the client is still sending."""
        data = conn.client.recv(_RECV)
        if data:
            self._account(conn, data)
            to_upstream.extend(data)
            return True
        # the client is done sending; pass that on once its bytes are
        conn.selector.unregister(conn.client)
        return False

    def _to_client(self, conn: _Conn, upstream: socket.socket, mode: str, truncator: _Truncator | None) -> None:
        """Pass on what the upstream sent, delayed or truncated by ``mode``; _Done once the answer is over."""
        data = upstream.recv(_RECV)
        if not data:
            self._finish(conn)
        if mode == "delay" and self._closed.wait(max(0.0, self.delay_seconds)):
            raise _Done
        done = False
        if truncator is not None:
            data, done = truncator.feed(data)
        if data:
            conn.client.sendall(data)
        if done:
            self._finish(conn)
