"""appliance.server: real sockets on 127.0.0.1, real HTTP, a small WSGI app, no mocks."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import pathlib
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

import appliance.server
from appliance.server import PortInUse, Server

TIMEOUT = 30.0  # generous bound for anything that should take milliseconds


class App:
    """A small WSGI app: /echo returns the body, /wait waits until the test releases it, /big streams 32 MiB."""

    def __init__(self):
        self.paths: list[str] = []
        self.waiting = threading.Event()
        self.release = threading.Event()
        self.big_done = threading.Event()
        self.server: Server | None = None

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        self.paths.append(path)
        if path == "/echo":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        elif path == "/wait":
            self.waiting.set()
            released = self.release.wait(TIMEOUT)
            body = b"released" + b"." * 200_000 if released else b"timed out"
        elif path == "/big":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return self._big()
        elif path == "/boom":
            raise RuntimeError("app bug")
        elif path == "/stop":
            self.server.stop()  # from inside a request: must not wait for itself
            body = b"stopping"
        else:
            body = b"hello"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    def _big(self):
        try:
            for _ in range(512):  # 32 MiB: more than waitress buffers (16 MiB), so the app sees the client go
                yield b"x" * 65536
        finally:
            self.big_done.set()


@contextlib.contextmanager
def serving(app, **kw):
    server = Server(app, "127.0.0.1", 0, **kw)
    app.server = server
    thread = server.start()
    try:
        yield server
    finally:
        app.release.set()
        server.stop(timeout=5)
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def workers(server):
    return [t for t in threading.enumerate() if t.name.startswith(f"appliance-worker-{server.port}-")]


def wait_until(predicate, what):
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def refuses_connections(port) -> bool:
    """True once nothing listens on the port (a connect racing the close may be reset instead: try again)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        pass
    return False


def raw_request(port, data: bytes) -> http.client.HTTPResponse:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(data)
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.body = response.read()
    sock.close()
    return response


def test_port_zero_picks_a_free_port_and_url_names_it():
    app = App()
    with serving(app) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        response = requests.post(server.url + "/echo", data=b"ping", timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.content == b"ping"
        assert response.headers["Server"] == "appliance"


def test_second_server_on_the_same_port_raises_port_in_use():
    app = App()
    with serving(app) as server:
        with pytest.raises(PortInUse) as caught:
            Server(App(), "127.0.0.1", server.port)
        message = str(caught.value)
        assert "\n" not in message
        assert str(server.port) in message and "127.0.0.1" in message
        assert requests.get(server.url + "/", timeout=TIMEOUT).status_code == 200  # the first one is unharmed


def test_address_not_on_this_machine_raises_a_clear_os_error():
    with pytest.raises(OSError) as caught:
        Server(App(), "192.0.2.1", 0)  # TEST-NET-1: never a local address
    assert not isinstance(caught.value, PortInUse)
    assert "192.0.2.1" in str(caught.value)


def test_ipv6_url_has_brackets():
    try:
        server = Server(App(), "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert server.url == f"http://[::1]:{server.port}"
    finally:
        server.stop()


def test_stop_lets_the_in_flight_request_finish_and_refuses_new_connections():
    app = App()
    server = Server(app, "127.0.0.1", 0, shutdown_grace_seconds=TIMEOUT)
    loop = server.start()
    assert workers(server)
    results: queue.Queue = queue.Queue()
    client = threading.Thread(target=lambda: results.put(requests.get(server.url + "/wait", timeout=TIMEOUT)))
    client.start()
    assert app.waiting.wait(TIMEOUT)
    assert server.in_flight() == 1

    server.stop(wait=False)  # returns once the listening socket is closed
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    assert server.in_flight() == 1 and loop.is_alive()  # still draining

    app.release.set()
    client.join(TIMEOUT)
    response = results.get_nowait()
    assert response.status_code == 200
    assert response.content == b"released" + b"." * 200_000
    assert response.headers["Connection"] == "close"

    loop.join(TIMEOUT)
    assert not loop.is_alive()  # serve_forever returned
    assert server.wait_stopped(0)
    assert server.in_flight() == 0
    deadline = time.monotonic() + TIMEOUT
    for thread in workers(server):  # the teardown joins them; give a slow machine its chance anyway
        thread.join(max(0.0, deadline - time.monotonic()))
    assert workers(server) == []


def test_stop_is_idempotent_and_prompt_when_idle():
    app = App()
    server = Server(app, "127.0.0.1", 0, shutdown_grace_seconds=300)
    loop = server.start()
    assert requests.get(server.url + "/", timeout=TIMEOUT).status_code == 200
    with requests.Session() as keep_alive:  # an idle keep-alive connection must not hold the stop up
        assert keep_alive.get(server.url + "/", timeout=TIMEOUT).status_code == 200
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < TIMEOUT  # nowhere near the 300 s grace period
    loop.join(TIMEOUT)
    assert not loop.is_alive()
    server.stop()
    server.stop(timeout=0)
    assert workers(server) == []
    Server(App(), "127.0.0.1", server.port).stop()  # the port is free again


def test_stop_before_serving_releases_everything():
    server = Server(App(), "127.0.0.1", 0)
    server.stop()
    assert server.wait_stopped(0)
    assert workers(server) == []
    server.serve_forever()  # returns at once
    Server(App(), "127.0.0.1", server.port).stop()


def test_stop_from_inside_a_request_does_not_deadlock():
    app = App()
    server = Server(app, "127.0.0.1", 0)
    app.server = server
    loop = server.start()
    response = requests.get(server.url + "/stop", timeout=TIMEOUT)
    assert (response.status_code, response.content) == (200, b"stopping")
    loop.join(TIMEOUT)
    assert not loop.is_alive()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_stop_in_a_signal_handler_on_the_serving_thread():
    app = App()
    server = Server(app, "127.0.0.1", 0, shutdown_grace_seconds=TIMEOUT)
    results: queue.Queue = queue.Queue()
    watchdog_fired = threading.Event()

    def client():
        results.put(requests.get(server.url + "/wait", timeout=TIMEOUT))

    def driver():
        assert app.waiting.wait(TIMEOUT)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        wait_until(lambda: refuses_connections(server.port), "the listener to close")
        app.release.set()

    def watchdog():  # bounds the test should the handler's stop() be lost
        watchdog_fired.set()
        server.stop(timeout=0, wait=False)

    timer = threading.Timer(TIMEOUT, watchdog)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: server.stop())
    helpers = [threading.Thread(target=client), threading.Thread(target=driver)]
    try:
        timer.start()
        for thread in helpers:
            thread.start()
        server.serve_forever()  # here, in the main thread, where the handler runs
    finally:
        signal.signal(signal.SIGUSR1, previous)
        timer.cancel()
        app.release.set()
        for thread in helpers:
            thread.join(TIMEOUT)
    assert not watchdog_fired.is_set()
    response = results.get_nowait()
    assert response.status_code == 200 and response.content.startswith(b"released")


def test_oversized_body_gets_413_json_without_calling_the_app():
    app = App()
    with serving(app, max_request_body_size=1024) as server:
        assert requests.post(server.url + "/echo", data=b"x" * 1024, timeout=TIMEOUT).content == b"x" * 1024
        response = requests.post(server.url + "/echo", data=b"x" * 1025, timeout=TIMEOUT)
        assert response.status_code == 413
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["Connection"] == "close"
        assert "1024 bytes" in response.json()["error"]
        assert app.paths == ["/echo"]  # only the first request reached the app


def test_malformed_request_gets_400_json():
    app = App()
    with serving(app) as server:
        response = raw_request(server.port, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        assert response.status == 400
        assert response.getheader("Content-Type") == "application/json"
        assert json.loads(response.body)["error"].startswith("Bad Request")
        assert app.paths == []


def test_headers_too_large_get_431_json():
    app = App()
    with serving(app) as server:
        response = raw_request(server.port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n")
        assert response.status == 431
        assert response.getheader("Content-Type") == "application/json"
        assert "error" in json.loads(response.body)
        assert app.paths == []


def test_app_crash_gets_500_json():
    app = App()
    with serving(app) as server:
        response = requests.get(server.url + "/boom", timeout=TIMEOUT)
        assert response.status_code == 500
        assert response.headers["Content-Type"] == "application/json"
        assert "app bug" not in response.json()["error"]  # no traceback leaks to the client


def test_client_vanishing_mid_response_logs_no_traceback(caplog):
    caplog.set_level(logging.DEBUG)
    app = App()
    with serving(app) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        sock.close()
        assert app.big_done.wait(TIMEOUT)
        wait_until(lambda: server.in_flight() == 0, "the /big request to end")
        assert requests.get(server.url + "/", timeout=TIMEOUT).status_code == 200
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


CHILD = """\
import logging, os, sys, time
from appliance.server import Server, install_signal_handlers

release = sys.argv[1]

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        print("slow started", flush=True)
        for _ in range(3000):  # until the test releases it, 30 s at most
            if os.path.exists(release):
                break
            time.sleep(0.01)
        body = b"slow done"
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

logging.basicConfig(level=logging.INFO)
server = Server(app, "127.0.0.1", 0, shutdown_grace_seconds=30)
install_signal_handlers(server)
print(server.url, flush=True)
server.serve_forever()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_drains_the_in_flight_request_and_exits_cleanly(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    release = tmp_path / "release"
    root = pathlib.Path(appliance.server.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen(
        [sys.executable, str(script), str(release)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True).start()
    try:
        url = lines.get(timeout=TIMEOUT).strip()
        port = int(url.rsplit(":", 1)[1])
        results: queue.Queue = queue.Queue()
        client = threading.Thread(target=lambda: results.put(requests.get(url + "/slow", timeout=TIMEOUT)))
        client.start()
        assert lines.get(timeout=TIMEOUT).strip() == "slow started"

        child.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses_connections(port), "the child to stop listening")  # still in flight here
        release.touch()
        client.join(TIMEOUT)
        response = results.get_nowait()
        assert (response.status_code, response.content) == (200, b"slow done")
        assert child.wait(TIMEOUT) == 0
        stderr = child.stderr.read()
        assert "Traceback" not in stderr and "Error" not in stderr, stderr
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(TIMEOUT)


def test_a_request_waiting_for_a_worker_logs_no_warning(caplog):
    """Under load requests queue for a worker every few milliseconds: normal, and not worth a log line each."""
    caplog.set_level(logging.DEBUG)
    app = App()
    with serving(app, threads=1) as server:
        held = threading.Thread(target=requests.get, args=(server.url + "/wait",), kwargs={"timeout": TIMEOUT})
        held.start()
        assert app.waiting.wait(TIMEOUT)
        queued = threading.Thread(target=requests.get, args=(server.url + "/",), kwargs={"timeout": TIMEOUT})
        queued.start()
        wait_until(lambda: app.paths.count("/") == 0 and queued.is_alive(), "the second request to queue")
        time.sleep(0.2)
        app.release.set()
        held.join(TIMEOUT)
        queued.join(TIMEOUT)
        assert app.paths == ["/wait", "/"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


class ThreadNames:
    """A WSGI app answering with the name of the worker thread that runs it (release, server: for serving())."""

    def __init__(self):
        self.release = threading.Event()
        self.server: Server | None = None

    def __call__(self, environ, start_response):
        body = threading.current_thread().name.encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


def test_one_client_at_a_time_is_served_by_one_warm_worker_not_by_each_in_turn():
    def answered_by_a_worker_then_all_idle(session, server):
        name = session.get(server.url + "/", timeout=TIMEOUT).text
        # the client can send its next request before the worker that answered is waiting again, on a busy machine;
        # then another worker must take it: wait until every worker waits (waitress counts them under its lock)
        wait_until(lambda: server._dispatcher.active_count == 0, "every worker waiting for a task")
        return name

    with serving(ThreadNames(), threads=8) as server, requests.Session() as session:
        names = [answered_by_a_worker_then_all_idle(session, server) for _ in range(24)]
    assert len(set(names)) == 1, f"requests went round the workers: {sorted(set(names))}"


def test_the_last_in_first_out_condition_wakes_the_newest_waiter():
    condition = appliance.server._LastInFirstOut()
    woken: list[int] = []
    waiting = threading.Semaphore(0)

    def wait(number):
        with condition:
            waiting.release()
            condition.wait(TIMEOUT)
            woken.append(number)

    threads = []
    for number in range(3):  # one at a time, so that they wait in this order
        threads.append(threading.Thread(target=wait, args=(number,)))
        threads[-1].start()
        assert waiting.acquire(timeout=TIMEOUT)
        with condition:  # once the waiter released the lock, it is waiting
            pass
    for _ in range(3):
        with condition:
            condition.notify()
        count = len(woken) + 1
        wait_until(lambda count=count: len(woken) == count, "a waiter to wake")
    for thread in threads:
        thread.join(TIMEOUT)
    assert woken == [2, 1, 0]
