"""Loud checks of the private and undocumented APIs the appliance relies on, one per thing relied on.

A new release of a dependency may change its internals without notice. The dependencies whose internals the
appliance uses are pinned in pyproject.toml; these tests fail first, naming the appliance module that relies on the
changed thing, rather than some distant behaviour test (or a user) finding out:

- waitress (appliance/server.py subclasses its channel, tasks and task dispatcher, runs its asyncore loop itself,
  passes ``create_server`` its own dispatcher, and reads server and channel attributes);
- Python's ``threading.Condition`` internals (appliance/server.py: ``_LastInFirstOut``);
- TensorFlow's ``Session._make_callable_from_options`` (appliance/serving/runtime/local_tf.py);
- pystray's backend modules (appliance/tray/backend.py, installer/appliance.spec);
- Bottle's error-handler attribute and ``bottle.route`` environ key (appliance/api/app.py, metrics.py);
- prometheus_client's exposition helpers (appliance/api/metrics.py);
- ``json.encoder.encode_basestring`` (appliance/api/json_text.py);
- grpcio-health-checking's non-blocking ``HealthServicer.Watch`` (appliance/grpc_server.py ends its streams).

TensorFlow is imported in its one test only; pystray is not imported at all (importing it picks a GUI backend).
"""

from __future__ import annotations

import ast
import collections
import importlib.metadata
import importlib.util
import inspect
import io
import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
DEPENDENCIES = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]


def pin(package: str) -> str:
    """``package``'s requirement in pyproject.toml, e.g. ``waitress>=3.0,<4``."""
    for requirement in DEPENDENCIES:
        if re.match(rf"{re.escape(package)}(?![\w-])", requirement, re.IGNORECASE):
            return requirement.split(";")[0].strip()
    raise AssertionError(f"{package} is not a dependency in pyproject.toml")


def relied_on(what: str, module: str, package: str) -> str:
    """The failure message: what changed, who relies on it, and what to do."""
    return (
        f"{what}: relied on by appliance/{module}. {package} ({pin(package)}) is pinned in pyproject.toml: "
        f"update appliance/{module} before raising the pin"
    )


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# -- waitress (appliance/server.py) ------------------------------------------------------------------------------


def waitress_says(what: str) -> str:
    return relied_on(what, "server.py", "waitress")


def test_waitress_is_major_version_3():
    version = importlib.metadata.version("waitress")
    assert version.split(".")[0] == "3", waitress_says(f"waitress {version} installed, the code is written for 3.x")
    assert re.search(r"<\s*4\b", pin("waitress")), waitress_says("the pin should keep waitress below 4")


def test_waitress_create_server_takes_our_dispatcher_and_adjustments():
    from waitress import wasyncore
    from waitress.server import BaseWSGIServer, create_server
    from waitress.task import ThreadedTaskDispatcher

    assert parameters(create_server)[:5] == ["application", "map", "_start", "_sock", "_dispatcher"], waitress_says(
        f"create_server{inspect.signature(create_server)} no longer takes map= and _dispatcher="
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    dispatcher = ThreadedTaskDispatcher()
    served: dict = {}
    try:
        # the keyword arguments appliance.server.Server passes (each one an Adjustments setting)
        server = create_server(
            lambda environ, start_response: [],
            map=served,
            _dispatcher=dispatcher,
            sockets=[sock],
            threads=2,
            ident="appliance",
            max_request_body_size=1025,
            max_request_header_size=1024,
            connection_limit=10,
            channel_timeout=5,
            log_socket_errors=False,
            expose_tracebacks=False,
            asyncore_use_poll=True,
        )
        assert isinstance(server, BaseWSGIServer), waitress_says(
            f"create_server(sockets=[one socket]) returned a {type(server).__name__}, not the BaseWSGIServer itself"
        )
        assert server.task_dispatcher is dispatcher, waitress_says("create_server(_dispatcher=...) is not used")
        assert not dispatcher.threads, waitress_says(
            "create_server started threads on the dispatcher given to it (Server calls set_thread_count itself)"
        )
        assert isinstance(server.active_channels, dict), waitress_says("BaseWSGIServer.active_channels")
        assert callable(server.pull_trigger), waitress_says("BaseWSGIServer.pull_trigger()")
        assert isinstance(server.adj.asyncore_loop_timeout, (int, float)), waitress_says("adj.asyncore_loop_timeout")
        assert server.adj.max_request_header_size == 1024, waitress_says("adj.max_request_header_size")
        assert server in served.values() and server.trigger in served.values(), waitress_says(
            "the server and its trigger registered in the map= given to create_server"
        )
        # Server._drain closes the listener alone with wasyncore.dispatcher.close: the trigger must stay open
        wasyncore.dispatcher.close(server)
        assert server not in served.values() and server.trigger in served.values(), waitress_says(
            "wasyncore.dispatcher.close(server) closes the listening socket only, not the trigger"
        )
    finally:
        wasyncore.close_all(served, ignore_all=True)
        sock.close()
    assert not served, waitress_says("wasyncore.close_all(map, ignore_all=True) empties the map")


def test_waitress_server_and_loop_shape():
    from waitress import wasyncore
    from waitress.channel import HTTPChannel
    from waitress.server import BaseWSGIServer

    assert BaseWSGIServer.channel_class is HTTPChannel, waitress_says("BaseWSGIServer.channel_class")
    accept = inspect.getsource(BaseWSGIServer.handle_accept)
    assert "self.channel_class(" in accept, waitress_says("BaseWSGIServer.handle_accept makes self.channel_class(...)")
    assert "self.trigger.close()" in inspect.getsource(BaseWSGIServer.close), waitress_says(
        "BaseWSGIServer.close() also closes the trigger (why Server._drain calls wasyncore.dispatcher.close)"
    )
    assert {"timeout", "use_poll", "map", "count"} <= set(parameters(wasyncore.loop)), waitress_says(
        f"wasyncore.loop{inspect.signature(wasyncore.loop)}"
    )
    assert {"map", "ignore_all"} <= set(parameters(wasyncore.close_all)), waitress_says(
        f"wasyncore.close_all{inspect.signature(wasyncore.close_all)}"
    )
    assert callable(wasyncore.dispatcher.close), waitress_says("wasyncore.dispatcher.close")


def test_waitress_channel_shape():
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask, WSGITask

    assert HTTPChannel.task_class is WSGITask, waitress_says("HTTPChannel.task_class (replaced by _Channel)")
    assert HTTPChannel.error_task_class is ErrorTask, waitress_says("HTTPChannel.error_task_class")
    service = inspect.getsource(HTTPChannel.service)
    assert "self.task_class(self, request)" in service and "self.error_task_class(self, request)" in service, (
        waitress_says(
            "HTTPChannel.service makes its tasks as self.task_class / self.error_task_class(channel, request)"
        )
    )
    assert HTTPChannel.will_close is False and HTTPChannel.total_outbufs_len == 0, waitress_says(
        "HTTPChannel.will_close and total_outbufs_len (read and set by Server._drain)"
    )
    assert parameters(HTTPChannel.__init__) == ["self", "server", "sock", "addr", "adj", "map"], waitress_says(
        f"HTTPChannel.__init__{inspect.signature(HTTPChannel.__init__)}"
    )
    init = inspect.getsource(HTTPChannel.__init__)
    for attribute in ("self.server = ", "self.addr = ", "self.requests = "):
        assert attribute in init, waitress_says(f"HTTPChannel.__init__ sets {attribute.split()[0]}")
    assert "outbuf_lock.notify()" in inspect.getsource(HTTPChannel.handle_close), waitress_says(
        "HTTPChannel.handle_close() wakes a worker waiting to write (Server._teardown relies on it)"
    )
    assert parameters(HTTPChannel.handle_error) == ["self"], waitress_says("HTTPChannel.handle_error()")


def test_waitress_task_shape():
    from waitress.task import ErrorTask, Task, WSGITask

    assert parameters(Task.__init__) == ["self", "channel", "request"], waitress_says("Task(channel, request)")
    init = inspect.getsource(Task.__init__)
    assert "self.channel = " in init and "self.request = " in init and "self.response_headers = []" in init, (
        waitress_says("Task.__init__ sets channel, request and response_headers")
    )
    assert Task.status == "200 OK" and Task.content_length is None, waitress_says("Task.status, Task.content_length")
    for name, expected in (
        ("execute", ["self"]),
        ("build_response_header", ["self"]),
        ("set_close_on_finish", ["self"]),
        ("write", ["self", "data"]),
    ):
        assert parameters(getattr(WSGITask, name)) == expected, waitress_says(f"WSGITask.{name}{expected[1:]}")
    assert parameters(ErrorTask.execute) == ["self"], waitress_says("ErrorTask.execute()")
    assert ErrorTask.complete is True, waitress_says("ErrorTask.complete (lets _JsonErrorTask.execute write at once)")


def test_waitress_error_classes_and_the_body_limit():
    from waitress.adjustments import Adjustments
    from waitress.parser import HTTPRequestParser
    from waitress.utilities import Error, RequestEntityTooLarge, RequestHeaderFieldsTooLarge

    assert (RequestEntityTooLarge.code, RequestHeaderFieldsTooLarge.code) == (413, 431), waitress_says(
        "the error classes _JsonErrorTask rewrites (RequestEntityTooLarge 413, RequestHeaderFieldsTooLarge 431)"
    )
    error = Error("detail")
    assert (error.code, error.reason, error.body) == (500, "Internal Server Error", "detail"), waitress_says(
        "request.error's code, reason and body (read by _JsonErrorTask)"
    )

    def parse(content_length: int) -> HTTPRequestParser:
        parser = HTTPRequestParser(Adjustments(max_request_body_size=10))
        parser.received(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {content_length}\r\n\r\n".encode())
        return parser

    # Server passes max_request_body_size + 1 because waitress refuses a body as large as its limit
    assert isinstance(parse(10).error, RequestEntityTooLarge), waitress_says("waitress refuses a body == its limit")
    assert parse(9).error is None, waitress_says("waitress accepts a body of its limit - 1")


def test_waitress_task_dispatcher_shape():
    from waitress.task import ThreadedTaskDispatcher

    dispatcher = ThreadedTaskDispatcher()
    assert isinstance(dispatcher.threads, set) and isinstance(dispatcher.queue, collections.deque), waitress_says(
        "ThreadedTaskDispatcher.threads (a set) and .queue (a deque)"
    )
    assert isinstance(dispatcher.queue_cv, threading.Condition), waitress_says("ThreadedTaskDispatcher.queue_cv")
    assert isinstance(dispatcher.thread_exit_cv, threading.Condition), waitress_says(
        "ThreadedTaskDispatcher.thread_exit_cv"
    )
    # _Dispatcher replaces queue_cv by a condition on the same lock
    with dispatcher.lock:
        assert dispatcher.queue_cv._is_owned(), waitress_says("queue_cv is a Condition on dispatcher.lock")
    assert (ThreadedTaskDispatcher.stop_count, ThreadedTaskDispatcher.active_count) == (0, 0), waitress_says(
        "ThreadedTaskDispatcher.stop_count and active_count"
    )
    for name, expected in (
        ("start_new_thread", ["self", "target", "thread_no"]),
        ("handler_thread", ["self", "thread_no"]),
        ("set_thread_count", ["self", "count"]),
        ("add_task", ["self", "task"]),
        ("shutdown", ["self", "cancel_pending", "timeout"]),
    ):
        signature = parameters(getattr(ThreadedTaskDispatcher, name))
        assert signature == expected, waitress_says(f"ThreadedTaskDispatcher.{name}{tuple(expected[1:])}")
    assert "self.start_new_thread(self.handler_thread" in inspect.getsource(ThreadedTaskDispatcher.set_thread_count), (
        waitress_says("set_thread_count starts each worker through self.start_new_thread (_Dispatcher keeps them)")
    )
    assert "self.queue_cv.wait()" in inspect.getsource(ThreadedTaskDispatcher.handler_thread), waitress_says(
        "idle workers wait on self.queue_cv (which _Dispatcher makes last-in first-out)"
    )
    assert "self.queue_cv.notify()" in inspect.getsource(ThreadedTaskDispatcher.add_task), waitress_says(
        "add_task wakes one worker with self.queue_cv.notify()"
    )


def test_our_dispatcher_runs_on_waitress_internals():
    """appliance.server._Dispatcher end to end: its threads are kept, idle ones wait on its condition, shutdown ends
    them."""
    from appliance.server import _Dispatcher, _LastInFirstOut

    dispatcher = _Dispatcher("private-apis")
    assert isinstance(dispatcher.queue_cv, _LastInFirstOut)
    dispatcher.set_thread_count(2)
    try:
        assert [thread.name for thread in dispatcher.handles] == ["private-apis-0", "private-apis-1"], waitress_says(
            "set_thread_count(n) calls start_new_thread(target, thread_no) with thread_no 0..n-1"
        )
        deadline = time.monotonic() + 10
        while len(dispatcher.queue_cv._waiters) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(dispatcher.queue_cv._waiters) == 2, waitress_says("idle workers wait on dispatcher.queue_cv")
        ran = threading.Event()

        class Task:
            def service(self):
                ran.set()

            def cancel(self):
                pass

        dispatcher.add_task(Task())
        assert ran.wait(10), waitress_says("add_task wakes a worker waiting on queue_cv")
    finally:
        dispatcher.shutdown(cancel_pending=True, timeout=5)
    for thread in dispatcher.handles:
        thread.join(5)
    assert not any(thread.is_alive() for thread in dispatcher.handles), waitress_says("shutdown() ends the workers")


# -- threading.Condition (appliance/server.py: _LastInFirstOut) --------------------------------------------------


def python_says(what: str, module: str) -> str:
    """For the standard library's internals: Python itself is bounded only by requires-python."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    return (
        f"{what}: relied on by appliance/{module} (Python {sys.version.split()[0]}). Python ({requires}) is pinned "
        f"in pyproject.toml by requires-python only: update appliance/{module} before supporting this Python"
    )


def condition_says(what: str) -> str:
    return python_says(what, "server.py")


def _start_waiting(condition: threading.Condition, wait) -> threading.Thread:
    """Start a thread running ``wait`` and return once it waits on ``condition`` (is in its ``_waiters``)."""
    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.monotonic() + 10
    while not condition._waiters and time.monotonic() < deadline:
        time.sleep(0.01)
    return waiter


def test_condition_internals():
    condition = threading.Condition()
    assert isinstance(condition._waiters, collections.deque), condition_says("threading.Condition()._waiters deque")
    assert condition._is_owned() is False, condition_says("threading.Condition()._is_owned()")
    with condition:
        assert condition._is_owned() is True, condition_says("threading.Condition()._is_owned()")

    class Recording(threading.Condition):
        def notify(self, n=1):
            self.notified = n

    recording = Recording()
    with recording:
        recording.notify_all()
    assert recording.notified == 0, condition_says("Condition.notify_all() calls self.notify(len(self._waiters))")


def test_condition_waiters_are_locks_released_to_wake_them():
    condition = threading.Condition()
    woken = []

    def wait():
        with condition:
            woken.append(condition.wait(10))

    waiter = _start_waiting(condition, wait)
    with condition:
        assert len(condition._waiters) == 1, condition_says("a waiting thread is in Condition._waiters")
        lock = condition._waiters.pop()
        lock.release()  # what _LastInFirstOut.notify does
    waiter.join(10)
    assert woken == [True], condition_says("releasing a waiter's lock from _waiters wakes that thread")


def test_condition_wait_times_out_when_its_waiter_was_already_taken():
    """_LastInFirstOut.notify pops a waiter; one whose wait() timed out meanwhile must not fail to remove itself."""
    condition = threading.Condition()
    outcome = []

    def wait():
        with condition:
            try:
                outcome.append(condition.wait(0.3))
            except Exception as error:  # the failure this test is about
                outcome.append(error)

    waiter = _start_waiting(condition, wait)
    with condition:
        condition._waiters.pop()  # taken, never released: wait() times out and finds itself gone
    waiter.join(10)
    assert outcome == [False], condition_says(f"Condition.wait() after its waiter left _waiters: {outcome}")


# -- TensorFlow (appliance/serving/runtime/local_tf.py) ----------------------------------------------------------


def test_tensorflow_session_make_callable_from_options():
    tf = pytest.importorskip("tensorflow")
    import numpy as np
    from tensorflow.core.protobuf import config_pb2

    def says(what: str) -> str:
        return relied_on(what, "serving/runtime/local_tf.py", "tensorflow")

    make_callable = getattr(tf.compat.v1.Session, "_make_callable_from_options", None)
    assert make_callable is not None, says("tf.compat.v1.Session._make_callable_from_options is gone")
    assert parameters(make_callable) == ["self", "callable_options"], says(
        f"Session._make_callable_from_options{inspect.signature(make_callable)}"
    )
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        tf.identity(x * 2.0, name="y")
    with tf.compat.v1.Session(graph=graph) as session:
        options = config_pb2.CallableOptions(feed=["x:0"], fetch=["y:0"])
        options.run_options.timeout_in_ms = 10_000
        options.run_options.inter_op_thread_pool = -1  # in the caller's thread, as local_tf.py runs small calls
        run = session._make_callable_from_options(options)
        (y,) = run(np.array([1.0, 2.5], dtype=np.float32))
    assert y.tolist() == [2.0, 5.0], says("the callable takes the feeds positionally and returns the fetches")


# -- grpcio-health-checking (appliance/grpc_server.py) -----------------------------------------------------------


def test_health_servicer_watch_is_non_blocking_and_ended_by_a_none_response():
    from grpc_health.v1 import health

    def says(what: str) -> str:
        return relied_on(what, "grpc_server.py", "grpcio-health-checking")

    assert parameters(health.HealthServicer.Watch) == ["self", "request", "context", "send_response_callback"], says(
        f"HealthServicer.Watch{inspect.signature(health.HealthServicer.Watch)} no longer takes send_response_callback"
    )
    servicer = health.HealthServicer()
    assert getattr(servicer.Watch, "experimental_non_blocking", False), says(
        "HealthServicer() no longer makes Watch non-blocking (grpcio would not hand it send_response_callback)"
    )
    source = inspect.getsource(health._watcher_to_send_response_callback_adapter)
    assert "response is None" in source, says("send_response_callback(None) no longer ends a Watch stream")


# -- pystray (appliance/tray/backend.py, installer/appliance.spec) -----------------------------------------------


def pystray_says(what: str) -> str:
    return relied_on(what, "tray/backend.py", "pystray") + " (and installer/appliance.spec's hidden imports)"


def pystray_module(name: str) -> ast.Module:
    """The source of pystray/<name>.py, parsed without importing pystray (which would pick a GUI backend)."""
    spec = importlib.util.find_spec("pystray")
    assert spec is not None and spec.submodule_search_locations, pystray_says("pystray is installed as a package")
    path = Path(next(iter(spec.submodule_search_locations))) / f"{name}.py"
    assert path.is_file(), pystray_says(f"pystray's module {name} ({path})")
    return ast.parse(path.read_text(encoding="utf-8"))


def classes(module: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in module.body if isinstance(node, ast.ClassDef)}


@pytest.mark.parametrize("backend", ["_appindicator", "_gtk", "_xorg", "_win32", "_darwin"])
def test_pystray_backend_modules_define_icon(backend):
    # backend.py tells them apart by Icon.__module__ ("pystray._gtk", ...), the spec lists them as hidden imports
    assert "Icon" in classes(pystray_module(backend)), pystray_says(f"pystray.{backend} defines Icon")


def test_pystray_base_icon_and_backend_choice():
    icon = classes(pystray_module("_base")).get("Icon")
    assert icon is not None, pystray_says("pystray._base.Icon (the dummy backend's Icon)")
    names = {target.id for node in icon.body if isinstance(node, ast.Assign) for target in node.targets}
    assert "HAS_MENU" in names, pystray_says("pystray._base.Icon.HAS_MENU")
    source = ast.unparse(pystray_module("__init__"))
    assert "PYSTRAY_BACKEND" in source, pystray_says("pystray picks its backend from $PYSTRAY_BACKEND at import")


# -- Bottle (appliance/api/app.py, appliance/api/metrics.py) -----------------------------------------------------


def call(app, path: str) -> tuple[str, bytes, dict]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    answered = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: answered.append(status)))
    return answered[0], body, environ


def test_bottle_default_error_handler_can_be_replaced_on_the_app():
    import bottle

    app = bottle.Bottle(autojson=False)
    app.default_error_handler = lambda error: b"ours"
    status, body, _ = call(app, "/nowhere")
    assert status.startswith("404") and body == b"ours", relied_on(
        "assigning app.default_error_handler answers Bottle's own errors", "api/app.py", "bottle"
    )


def test_bottle_puts_the_matched_route_in_the_environ():
    import bottle

    app = bottle.Bottle(autojson=False)
    app.route("/there", callback=lambda: "ok")
    _, _, environ = call(app, "/there")
    route = environ.get("bottle.route")
    assert route is not None and route.rule == "/there", relied_on(
        "environ['bottle.route'].rule of the matched route", "api/metrics.py", "bottle"
    )
    assert parameters(bottle.request.bind) == ["environ"], relied_on(
        "bottle.request.bind(environ)", "api/app.py", "bottle"
    )


def test_bottle_dispatch_is_what_models_first_mirrors():
    """api/app.py's ModelsFirst matches a route and calls it itself, setting the environ as Bottle._handle does."""
    import bottle

    source = inspect.getsource(bottle.Bottle._handle)
    for step in (
        "environ['bottle.raw_path'] = environ['PATH_INFO']",
        "path.encode('latin1').decode('utf8', 'ignore')",
        "environ['bottle.app'] = self",
        "route, args = self.router.match(environ)",
        "environ['route.handle'] = route",
        "environ['bottle.route'] = route",
        "environ['route.url_args'] = args",
        "out = route.call(**args)",
    ):
        assert step in source, relied_on(f"Bottle._handle doing {step}", "api/app.py (ModelsFirst._route)", "bottle")
    app = bottle.Bottle(autojson=False)
    app.route("/there/<name>", callback=lambda name: name)
    route, args = app.match({"REQUEST_METHOD": "GET", "PATH_INFO": "/there/x"})
    assert (route.rule, args, route.call(**args)) == ("/there/<name>", {"name": "x"}, "x"), relied_on(
        "Bottle.match(environ) -> (route, url args), route.call(**args)", "api/app.py (ModelsFirst._route)", "bottle"
    )


# -- prometheus_client (appliance/api/metrics.py) ----------------------------------------------------------------


def prometheus_says(what: str) -> str:
    return relied_on(what, "api/metrics.py", "prometheus-client")


def test_prometheus_exposition_content_type():
    from prometheus_client import exposition

    # appeared in prometheus-client 0.23.0 (when CONTENT_TYPE_LATEST became the 1.0.0 format)
    assert exposition.CONTENT_TYPE_PLAIN_0_0_4 == "text/plain; version=0.0.4; charset=utf-8", prometheus_says(
        "prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4 (needs prometheus-client 0.23+)"
    )


def test_prometheus_bucket_labels_are_float_to_go_string():
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.metrics_core import Metric
    from prometheus_client.utils import floatToGoString

    bounds = (0.005, 0.5, 1.0, 60.0)
    histogram = Histogram("h", "h", buckets=bounds, registry=CollectorRegistry())
    labels = [sample.labels["le"] for sample in histogram.collect()[0].samples if sample.name == "h_bucket"]
    assert labels == [floatToGoString(bound) for bound in (*bounds, float("inf"))], prometheus_says(
        "prometheus_client.utils.floatToGoString(bound) is the 'le' label of each bucket"
    )
    assert parameters(Metric.__init__)[1:4] == ["name", "documentation", "typ"], prometheus_says(
        f"Metric{inspect.signature(Metric.__init__)}"
    )
    assert parameters(Metric.add_sample)[1:4] == ["name", "labels", "value"], prometheus_says(
        f"Metric.add_sample{inspect.signature(Metric.add_sample)}"
    )
    count = Metric(":tensorflow:serving:request_count", "The total number of requests.", "unknown")
    count.add_sample(count.name, {"model_name": "m", "status": "OK"}, 1.0)
    assert [(s.name, s.labels, s.value) for s in count.samples] == [
        (":tensorflow:serving:request_count", {"model_name": "m", "status": "OK"}, 1.0)
    ], prometheus_says("an untyped Metric named like TF Serving's, with samples of (name, labels, value)")


# -- the standard library (appliance/api/json_text.py) -----------------------------------------------------------


def test_json_encoder_encode_basestring():
    from json.encoder import encode_basestring

    assert encode_basestring('a"\n\u00e9') == '"a\\"\\n\u00e9"', python_says(
        "json.encoder.encode_basestring (undocumented) quotes a string as JSON", "api/json_text.py"
    )
