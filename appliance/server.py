"""Serve a WSGI app with waitress on one port, and stop it gracefully.

    server = Server(app, "127.0.0.1", 8501)   # binds now: PortInUse if the port is taken
    server = Server(app, sock=listening_socket("127.0.0.1", 8501))  # or serves a socket bound earlier
    install_signal_handlers(server)           # SIGINT / SIGTERM -> server.stop()
    server.serve_forever()                    # returns once stop() has finished

Stopping lets the requests already received finish (see :class:`Server`), and the errors waitress answers
itself come back in TF Serving's ``{"error": "..."}`` format, like the app's own.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import signal
import socket
import sys
import threading
import time
from typing import Protocol

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask

log = logging.getLogger("appliance.server")
# waitress warns "Task queue depth is N" whenever a request waits for a free worker thread: under load that is
# every few milliseconds, and normal (waiting requests are what batching merges). It would flood the user's log.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)

#: Largest request body accepted by default (bytes); a larger one gets 413.
DEFAULT_MAX_REQUEST_BODY_SIZE = 64 * 1024 * 1024
#: Largest request line and headers together (bytes); larger ones get 431. waitress's own default is 256 KiB.
DEFAULT_MAX_REQUEST_HEADER_SIZE = 64 * 1024

_BACKLOG = 1024  # waitress's default listen() backlog
# waitress reads 8 KiB per recv() and spools a body over 512 KiB to a temporary file: a 3 MB image as JSON took
# ~21 ms to arrive in the app that way, ~4 ms read 256 KiB at a time and kept in memory up to 16 MiB.
_RECV_BYTES = 256 * 1024
_INBUF_OVERFLOW = 16 * 1024 * 1024
_DRAIN_POLL_SECONDS = 0.1  # loop timeout while draining: how often the deadline is checked
_WORKER_EXIT_SECONDS = 5.0  # how long the teardown waits for worker threads to end
_ADDR_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)}

# .server is the Server whose request the current thread is running (stop() must not wait for itself)
_request_context = threading.local()


class PortInUse(Exception):
    """Another socket already listens on the port: ``port 8501 on 127.0.0.1 is already in use``."""

    def __init__(self, host: str, port: int):
        super().__init__(f"port {port} on {host} is already in use")
        self.host = host
        self.port = port


class Server:
    """One waitress server on one (host, port), bound at construction.

    ``port=0`` lets the OS pick a free port; :attr:`port` and :attr:`url` give
    the real one. ``max_request_body_size`` is the largest body accepted (a
    larger one gets 413 before the app runs, and one whose Content-Length says
    so before it is read); ``max_request_header_size`` bounds the request line
    and headers together (431). ``threads`` bounds the requests running in the
    app at once; ``connection_limit`` the open connections (more wait in the
    listen backlog); ``channel_timeout`` closes connections idle that many seconds.
    ``sock``, from :func:`listening_socket`, is served instead of binding
    (host, port): a process can claim its port before its slow imports.

    It runs waitress's asyncore loop itself so that :meth:`stop` can end it in
    order: close the listening socket (new connections are refused), let the
    requests already received finish and their responses reach the client (for
    at most ``shutdown_grace_seconds``), close every connection, then end the
    worker threads, which closing a waitress server alone leaves running.

    Worker threads are named ``appliance-worker-<port>-<n>``. Logging goes to the
    ``appliance.server`` logger (waitress keeps its own ``waitress`` loggers); a
    client that goes away mid-request is not an error and logs no traceback.
    """

    def __init__(
        self,
        app,
        host: str = "127.0.0.1",
        port: int = 8501,
        *,
        threads: int = 8,
        max_request_body_size: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
        max_request_header_size: int = DEFAULT_MAX_REQUEST_HEADER_SIZE,
        connection_limit: int = 100,
        channel_timeout: int = 120,
        shutdown_grace_seconds: float = 30.0,
        sock: socket.socket | None = None,
    ):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.max_request_body_size = max_request_body_size
        self.shutdown_grace_seconds = shutdown_grace_seconds

        sock = sock or listening_socket(host, port)
        self.host, self.port = sock.getsockname()[:2]
        self.url = _url(self.host, self.port)

        self._lock = threading.RLock()  # re-entrant: stop() may run in a signal handler on any thread
        self._count_lock = threading.Lock()
        self._in_flight = 0
        self._deadline: float | None = None  # time.monotonic() when the drain ends; set by stop()
        self._loop_ident: int | None = None  # thread running serve_forever()
        self._trigger_live = True
        self._torn_down = False
        self._listener_closed = threading.Event()
        self._finished = threading.Event()

        self._map: dict = {}
        self._dispatcher = _Dispatcher(f"appliance-worker-{self.port}")
        try:
            self._waitress = create_server(
                app,
                map=self._map,
                _dispatcher=self._dispatcher,  # ours: it keeps its threads so stop() can join them
                sockets=[sock],
                threads=threads,
                ident="appliance",
                # waitress refuses a body as large as its limit: +1 makes ours the largest accepted
                max_request_body_size=max_request_body_size + 1,
                max_request_header_size=max_request_header_size,
                connection_limit=connection_limit,
                channel_timeout=channel_timeout,
                log_socket_errors=False,  # a vanished client is not worth a traceback
                expose_tracebacks=False,
                asyncore_use_poll=True,
                recv_bytes=_RECV_BYTES,
                inbuf_overflow=_INBUF_OVERFLOW,
            )
        except BaseException:
            wasyncore.close_all(self._map, ignore_all=True)
            sock.close()
            raise
        self._waitress.channel_class = _Channel
        self._waitress.appliance_server = self  # how channels and tasks find this object
        self._dispatcher.set_thread_count(threads)

    def in_flight(self) -> int:
        """Requests currently inside the WSGI app."""
        return self._in_flight

    def serve_forever(self) -> None:
        """Run the server in this thread until :meth:`stop` has finished (at once if it already has)."""
        with self._lock:
            if self._finished.is_set():
                return
            if self._loop_ident is not None:
                raise RuntimeError("serve_forever() is already running")
            self._loop_ident = threading.get_ident()
        log.info("serving on %s", self.url)
        try:
            while self._deadline is None:
                wasyncore.loop(timeout=self._waitress.adj.asyncore_loop_timeout, map=self._map, use_poll=True, count=1)
            if not self._torn_down:
                self._drain()
        finally:
            self._teardown()

    def start(self) -> threading.Thread:
        """Run :meth:`serve_forever` in a new daemon thread and return that thread."""
        thread = threading.Thread(target=self.serve_forever, name=f"appliance-server-{self.port}", daemon=True)
        thread.start()
        return thread

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> None:
        """Stop gracefully; idempotent and callable from any thread.

        New connections are refused at once; requests already received get
        ``timeout`` seconds (default ``shutdown_grace_seconds``; a later call
        may only shorten it) to finish and be sent, then every connection is
        closed, the worker threads end and :meth:`serve_forever` returns.

        Returns when all that is done, or with ``wait=False`` as soon as the
        listening socket is closed. Called from the thread running
        :meth:`serve_forever` (a signal handler) or from inside a request of
        this server, it returns at once: that thread cannot wait for itself.
        """
        grace = self.shutdown_grace_seconds if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + grace
        with self._lock:
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
            if self._loop_ident is None:
                self._teardown()  # never served: nothing to drain
            elif self._trigger_live:
                self._waitress.pull_trigger()  # wake the loop
        if threading.get_ident() == self._loop_ident or getattr(_request_context, "server", None) is self:
            return
        done = self._finished if wait else self._listener_closed
        limit = max(self._deadline - time.monotonic(), 0.0) + _WORKER_EXIT_SECONDS + 5.0
        if not done.wait(limit):
            log.warning("server on %s did not stop within %.0f s", self.url, limit)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until :meth:`stop` has finished; False if ``timeout`` passed first."""
        return self._finished.wait(timeout)

    # -- loop thread ---------------------------------------------------------

    def _drain(self) -> None:
        """Refuse new connections; serve the requests received until they are sent or the deadline passes."""
        wasyncore.dispatcher.close(self._waitress)  # BaseWSGIServer.close() would also close the trigger
        self._listener_closed.set()
        log.info("stopping: new connections refused, %d request(s) in flight", self._in_flight)
        channels = self._waitress.active_channels
        while True:
            assert self._deadline is not None  # stop() set it: that is what ended serve_forever's loop
            remaining = self._deadline - time.monotonic()
            timeout = min(max(remaining, 0.0), _DRAIN_POLL_SECONDS)
            wasyncore.loop(timeout=timeout, map=self._map, use_poll=True, count=1)
            busy = 0
            for channel in list(channels.values()):
                if channel.requests or channel.total_outbufs_len:
                    busy += 1  # a request received, running or still being sent
                else:
                    channel.will_close = True  # idle (or a request half received): closed on the next poll
            if not channels:
                return
            if time.monotonic() >= self._deadline:
                if busy:
                    log.warning("shutdown grace period over: closing %d connection(s) with a request unfinished", busy)
                return

    def _teardown(self) -> None:
        """Close the listener, every connection and the trigger; end the worker threads."""
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
            self._trigger_live = False
        try:
            wasyncore.dispatcher.close(self._waitress)
            self._listener_closed.set()
            for channel in list(self._waitress.active_channels.values()):
                channel.handle_close()  # unlike close(), also wakes a worker waiting to write to it
            until = time.monotonic() + _WORKER_EXIT_SECONDS
            self._dispatcher.shutdown(cancel_pending=True, timeout=_WORKER_EXIT_SECONDS)
            for thread in self._dispatcher.handles:
                thread.join(max(0.0, until - time.monotonic()))
            stuck = sum(thread.is_alive() for thread in self._dispatcher.handles)
            if stuck:  # keep the trigger open: a late worker may still pull it, and its fd must not be reused
                log.warning("%d worker thread(s) still inside the app; leaving them behind", stuck)
            else:
                wasyncore.close_all(self._map, ignore_all=True)  # the trigger
        finally:
            self._listener_closed.set()
            self._finished.set()
        log.info("stopped serving on %s", self.url)

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._in_flight += delta


class Stoppable(Protocol):
    """What :func:`install_signal_handlers` stops: a :class:`Server`, or an application stopping its servers."""

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> None: ...

    def wait_stopped(self, timeout: float | None = None) -> bool: ...


def install_signal_handlers(server: Stoppable) -> None:
    """Make SIGINT and SIGTERM call ``server.stop()``; a second signal ends the grace period.

    Call from the main thread. The handler only queues the signal: a helper
    thread calls :meth:`Server.stop`, so nothing blocks or takes a lock in the
    handler, whichever thread runs :meth:`Server.serve_forever`.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_signal_handlers() must be called from the main thread")
    received: queue.SimpleQueue[int] = queue.SimpleQueue()  # put() is safe inside a signal handler

    def relay() -> None:
        first = True
        while not server.wait_stopped(0):
            try:
                signum = received.get(timeout=0.5)
            except queue.Empty:
                continue
            name = signal.Signals(signum).name
            if first:
                log.info("%s received: stopping (again to stop at once)", name)
            else:
                log.warning("%s received again: closing connections now", name)
            server.stop(None if first else 0.0, wait=False)
            first = False

    threading.Thread(target=relay, name="appliance-signals", daemon=True).start()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: received.put(signum))


# -- waitress plumbing ---------------------------------------------------------


class _LastInFirstOut(threading.Condition):
    """A condition whose ``notify`` wakes the thread that began waiting last (``threading.Condition``: first)."""

    def notify(self, n=1):
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._waiters
        while waiters and n > 0:
            waiter = waiters.pop()
            try:
                waiter.release()
            except RuntimeError:  # released by an earlier, interrupted notify, as threading.Condition allows for
                continue
            n -= 1


class _Dispatcher(ThreadedTaskDispatcher):
    """waitress's worker pool, keeping its threads so that they can be joined.

    The next task goes to the worker that went idle last: below full load the
    same few threads do the work, with their caches warm, instead of all of
    them in turn: less CPU per prediction, and lower latency.
    """

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.handles: list[threading.Thread] = []
        self.queue_cv = _LastInFirstOut(self.lock)

    def start_new_thread(self, target, thread_no):
        thread = threading.Thread(target=target, args=(thread_no,), name=f"{self.name}-{thread_no}", daemon=True)
        self.handles.append(thread)
        thread.start()


class _JsonErrorTask(ErrorTask):
    """waitress's own error responses, as ``{"error": "<message>"}``.

    Errors that waitress answers itself, before the app runs (400 malformed request,
    413 body too large, 431 headers too large, 500 app crashed, ...), come back in
    TF Serving's format, with ``Content-Type: application/json``, like the app's own errors.
    """

    def execute(self):
        error = self.request.error
        detail = error.body
        if error.code == 413:  # waitress says "exceeds max_body of <our limit + 1>"
            limit = self.channel.server.appliance_server.max_request_body_size
            detail = f"the request body is larger than {limit} bytes"
        elif error.code == 431:  # waitress says "exceeds max_header of <limit>"
            limit = self.channel.server.adj.max_request_header_size
            detail = f"the request line and headers are larger than {limit} bytes"
        body = json.dumps({"error": f"{error.reason}: {detail}"}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _WSGITask(WSGITask):
    """waitress's app task, counted in ``in_flight()``; once stopping, its response closes the connection."""

    def execute(self):
        owner = self.channel.server.appliance_server
        owner._count(1)
        _request_context.server = owner
        try:
            super().execute()
        finally:
            _request_context.server = None
            owner._count(-1)

    def build_response_header(self):
        if self.channel.server.appliance_server._deadline is not None:
            self.set_close_on_finish()  # stopping: no further request on this connection
        return super().build_response_header()


class _Channel(HTTPChannel):
    task_class = _WSGITask
    error_task_class = _JsonErrorTask

    def handle_error(self):
        # wasyncore calls this for an exception in a socket event; a socket error is the client's business
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.info("closing connection from %s: %s", self.addr, error)
            self.handle_close()
        else:
            super().handle_error()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) and listening; IPv4 first when host names both.

    Raises :class:`PortInUse` when another socket holds the port, ``OSError`` naming the address otherwise.
    """
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(e.errno, f"cannot listen on {where}: {e.strerror}") from None
    family, kind, proto, _, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform == "win32":  # there SO_REUSEADDR would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:  # restart at once while old connections are in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as waitress does
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno in _ADDR_IN_USE:
            raise PortInUse(host or "0.0.0.0", port) from None
        raise OSError(e.errno, f"cannot listen on {where}: {e.strerror}") from None
    return sock


def _url(host: str, port: int) -> str:
    """The URL a local client uses: a wildcard address becomes the loopback one."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = "[" + host.replace("%", "%25") + "]"
    return f"http://{host}:{port}"
