"""The servers under test as subprocesses of this interpreter: start, wait for the first answer, measure, stop.

Each server's stdout and stderr go to ``<out>/logs/<name>.log``; a server
that dies is reported with the end of its log.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from bench import procstat

REPO = Path(__file__).resolve().parents[1]
_URL_LINE = re.compile(r"serving on http://([^:/\s]+):(\d+)")
_GRPC_LINE = re.compile(r"gRPC on (\S+:\d+)")  # the appliance's "gRPC on 127.0.0.1:8500[ and unix:...]"
_POLL_SECONDS = 0.01
_STOP_SECONDS = 30.0
_USER_DIRS = {
    "XDG_DATA_HOME": "data",
    "XDG_CONFIG_HOME": "config",
    "XDG_STATE_HOME": "state",
    "XDG_CACHE_HOME": "cache",
    "XDG_RUNTIME_DIR": "runtime",
}


def user_dirs_env(home: Path) -> dict[str, str]:
    """Per-user folders (models, preferences, logs) of their own under ``home``, so no user's setup leaks in."""
    for folder in _USER_DIRS.values():
        (home / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    return {variable: str(home / folder) for variable, folder in _USER_DIRS.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def time_import_tensorflow(env: dict[str, str]) -> tuple[float, float]:
    """``python -c "import tensorflow"``: seconds from its start until the import has returned, and until it exits.

    TensorFlow's teardown at exit takes about a second, which a server's start
    does not pay: the first number is the baseline for a start-up. ``env`` adds to
    this process's environment (per-user folders), as for a :class:`ServerProcess`.
    """
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", "import tensorflow; print('imported', flush=True)"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )
    imported = child.stdout.readline().strip() == "imported"
    seconds = time.perf_counter() - started
    child.stdout.close()
    if child.wait() != 0 or not imported:
        raise RuntimeError(f"python -c 'import tensorflow' failed with status {child.returncode}")
    return seconds, time.perf_counter() - started


class ServerProcess:
    """``python <args>`` run from the repository root, with its output in ``log_path``; or ``program <args>`` run
    in ``cwd``. Its CPU time and memory are those of its whole process tree."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_path: Path,
        env: dict[str, str],
        program: Path | str = sys.executable,
        cwd: Path = REPO,
    ):
        self.name = name
        self.log_path = log_path
        self.started = time.perf_counter()
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(program), *args],
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            )

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes alive now (the CPU of one that ended is lost)."""
        return sum(_alive_or_zero(procstat.cpu_seconds, pid) for pid in procstat.tree(self.process.pid))

    def rss_mib(self) -> float:
        """The RSS of the server's processes added up (pages they share counted in each)."""
        return sum(_alive_or_zero(procstat.rss_mib, pid) for pid in procstat.tree(self.process.pid))

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.process.returncode}:\n{self.log_tail()}")

    def poll(self, probe, timeout: float, failure: str):
        """``probe()``'s first true result, polled while the server runs.

        Raises RuntimeError(``failure``) after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            found = probe()
            if found:
                return found
            time.sleep(_POLL_SECONDS)
        raise RuntimeError(f"{self.name} {failure} within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_for_url(self, timeout: float) -> tuple[str, int]:
        """The host and port of the ``serving on http://host:port`` line the server prints."""
        match = self.poll(
            lambda: _URL_LINE.search(self.log_path.read_text(errors="replace")), timeout, "printed no URL"
        )
        return match.group(1), int(match.group(2))

    def wait_for_grpc_address(self, timeout: float) -> str:
        """The ``host:port`` of the ``gRPC on host:port`` line the appliance prints."""
        match = self.poll(
            lambda: _GRPC_LINE.search(self.log_path.read_text(errors="replace")), timeout, "printed no gRPC address"
        )
        return match.group(1)

    def wait_first_grpc_answer(self, address: str, method: str, message: bytes, timeout: float) -> float:
        """Poll until the unary gRPC ``method`` answers ``message`` with one prediction (a ``PredictResponse``
        whose every output has one row); seconds since the process was started."""
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary(method)
            self.poll(lambda: _answers_grpc(call, message), timeout, "gave no gRPC prediction")
        return time.perf_counter() - self.started

    def wait_first_answer(self, host: str, port: int, path: str, body: bytes, timeout: float) -> float:
        """Poll until ``POST path`` answers 200 with one prediction; seconds since the process was started."""
        self.poll(lambda: _answers(host, port, path, body), timeout, "gave no prediction")
        return time.perf_counter() - self.started

    def wait_versions_settled(self, host: str, port: int, models: tuple[str, ...], timeout: float) -> None:
        """Poll the appliance's ``GET /v1/models/<model>`` until no version of ``models`` is still loading.

        The chosen versions answer first and the older ones load after them: a
        measurement started before they are done would share the CPU with loading.
        """
        self.poll(
            lambda: all(_versions_settled(host, port, model) for model in models),
            timeout,
            f"had not loaded every version of {', '.join(models)}",
        )

    def stop(self) -> None:
        """SIGTERM; after ``_STOP_SECONDS``, SIGKILL to it and to the worker processes it would have stopped."""
        self.process.terminate()
        try:
            self.process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            workers = procstat.tree(self.process.pid)[1:]
            self.process.kill()
            self.process.wait()
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """``POST path``'s status, headers (names in lower case) and body; status 0 when no answer came."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    except OSError:
        return 0, {}, b""
    finally:
        connection.close()


def tfserving_prediction(host: str, port: int, path: str, body: bytes) -> dict:
    """The one prediction row that TF Serving's ``:predict`` at ``path`` answers ``body`` with."""
    answer = _json_answer(host, port, "POST", path, body)
    if answer is None:
        raise RuntimeError(f"no answer from http://{host}:{port}{path}")
    (row,) = answer["predictions"]
    return row


def _alive_or_zero(measure, pid: int) -> float:
    try:
        return measure(pid)
    except FileNotFoundError:  # it ended since it was listed
        return 0.0


def _json_answer(host: str, port: int, method: str, path: str, body: bytes | None = None):
    """The JSON document a 200 answer to ``method path`` carries; None for another status or no answer."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
        response = connection.getresponse()
        answer = response.read()
    except OSError:
        return None
    finally:
        connection.close()
    return json.loads(answer) if response.status == 200 else None


def _versions_settled(host: str, port: int, model: str) -> bool:
    """Whether every version of ``model`` is AVAILABLE or END (TF Serving's status), per the appliance."""
    status = _json_answer(host, port, "GET", f"/v1/models/{model}")
    states = [v["state"] for v in status["model_version_status"]] if status else []
    return bool(states) and all(state in ("AVAILABLE", "END") for state in states)


def _answers(host: str, port: int, path: str, body: bytes) -> bool:
    """Whether ``POST path`` answers 200 with TF Serving's ``{"predictions": [one row]}``."""
    answer = _json_answer(host, port, "POST", path, body)
    return answer is not None and len(answer["predictions"]) == 1


def _answers_grpc(call: grpc.UnaryUnaryMultiCallable, message: bytes) -> bool:
    """Whether a ``Predict`` call answers OK with outputs of one row each."""
    from tensorflow_serving.apis import predict_pb2

    try:
        answer = predict_pb2.PredictResponse.FromString(call(message, timeout=10))
    except grpc.RpcError:
        return False
    rows = {tensor.tensor_shape.dim[0].size for tensor in answer.outputs.values() if tensor.tensor_shape.dim}
    return bool(answer.outputs) and rows == {1}
