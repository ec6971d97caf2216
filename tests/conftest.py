"""Shared fixtures: the project's paths, TF Serving's test models, and real appliance processes.

``ApplianceProcess`` starts ``python -m appliance serve --rest_api_port 0 --port 0 ...`` as a real
process, reads the URL and the gRPC address it prints, and waits for ``/health`` to say the first
load is done; tests talk to it over real HTTP (or gRPC) on loopback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
TFSERVING_TESTDATA = REPO.parent / "shared" / "testdata" / "tfserving"
URL_LINE = re.compile(r"serving on (http://\S+)|REST API off")
GRPC_LINE = re.compile(r"gRPC on (\S+)|gRPC API off")


@pytest.fixture(scope="session")
def tfs_testdata() -> Path:
    """TF Serving's own test SavedModels, used in place (never copied into the project)."""
    if not TFSERVING_TESTDATA.is_dir():
        pytest.skip(f"TF Serving test models not found at {TFSERVING_TESTDATA} (CI always provides them)")
    return TFSERVING_TESTDATA


def user_dirs_env(home: Path) -> dict[str, str]:
    """Environment giving a process its own per-user folders (models, config, state, logs) under ``home``."""
    names = {
        "XDG_DATA_HOME": "data",
        "XDG_CONFIG_HOME": "config",
        "XDG_STATE_HOME": "state",
        "XDG_CACHE_HOME": "cache",
        "XDG_RUNTIME_DIR": "runtime",
    }
    for folder in names.values():
        (home / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    return {variable: str(home / folder) for variable, folder in names.items()}


class ApplianceProcess:
    """A real ``appliance serve`` (or other command) process on a free loopback port.

    Unless ``home`` is given, the process gets fresh per-user folders of its own,
    so preferences and user models never leak between tests. ``runner`` is a
    command to run it under, e.g. ``["strace", "-f", "-o", "trace.log"]``.
    """

    def __init__(
        self,
        *args: str,
        command: str = "serve",
        home: Path | None = None,
        env: dict | None = None,
        wait_ready: bool = True,
        timeout: float = 120,
        runner: tuple[str, ...] = (),
    ):
        self._own_home = home is None  # a home made here is removed by stop()
        self.home = home or Path(tempfile.mkdtemp(prefix="appliance-home-"))
        self.args = [command, "--rest_api_port", "0", "--port", "0", *args]
        self.proc = subprocess.Popen(
            [*runner, sys.executable, "-m", "appliance", *self.args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **user_dirs_env(self.home), **(env or {})},
        )
        self.stderr_lines: list[str] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        self.url: str | None = self._read_line(URL_LINE, timeout)  # None with --enable_rest_api=false
        self.grpc_address: str | None = self._read_line(GRPC_LINE, timeout)  # "127.0.0.1:PORT", None when off
        if wait_ready:
            self.wait_ready(timeout)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _read_line(self, pattern: re.Pattern, timeout: float) -> str | None:
        """The address in the next line ``pattern`` matches (None when it says the API is off)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=10)
                raise RuntimeError(f"appliance exited ({self.proc.returncode}): {''.join(self.stderr_lines)}")
            match = pattern.search(line)
            if match:
                return match.group(1)
        raise RuntimeError(f"appliance printed no line like {pattern.pattern!r} in time")

    def wait_ready(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = requests.get(self.url + "/health", timeout=10)
            if response.json()["status"] != "loading":
                return response.json()
            time.sleep(0.1)
        raise RuntimeError("appliance never finished loading")

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._stderr_reader.join(timeout=10)
        self.proc.stdout.close()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)
        return code


@pytest.fixture(scope="session")
def bundled_server():
    """One appliance serving the bundled models, shared by the tests that only read from it."""
    server = ApplianceProcess()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tfs_config(tfs_testdata, tmp_path_factory) -> Path:
    """A TF Serving models.config naming TF Serving's test models (in place)."""
    config = tmp_path_factory.mktemp("config") / "models.config"
    config.write_text(
        f"""
model_config_list {{
  config {{ name: "default" base_path: "{tfs_testdata}/saved_model_half_plus_two_cpu" model_platform: "tensorflow" }}
  config {{
    name: "two_versions"
    base_path: "{tfs_testdata}/saved_model_half_plus_two_2_versions"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 123 }}
    version_labels {{ key: "canary" value: 124 }}
  }}
  config {{ name: "half_plus_three" base_path: "{tfs_testdata}/saved_model_half_plus_three" }}
  config {{ name: "tf2" base_path: "{tfs_testdata}/saved_model_half_plus_two_tf2_cpu" }}
  config {{ name: "matrix" base_path: "{tfs_testdata}/matrix_half_plus_two" }}
  config {{ name: "multi_io" base_path: "{tfs_testdata}/generated/multi_io" }}
  config {{ name: "mkl" base_path: "{tfs_testdata}/saved_model_half_plus_two_mkl" }}
}}
"""
    )
    return config


@pytest.fixture(scope="session")
def tfs_direct_server(tfs_config):
    """One appliance serving TF Serving's test models through a models.config."""
    server = ApplianceProcess("--model_config_file", str(tfs_config))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tfs_proxied_server(tfs_direct_server, tmp_path_factory):
    """An appliance with no models of its own, proxying everything to ``tfs_direct_server`` as its remote."""
    server = ApplianceProcess(
        "--remote_url", tfs_direct_server.url, "--models_dir", str(tmp_path_factory.mktemp("no-models"))
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tfs_real_server(tmp_path_factory):
    """An appliance proxying to a real tensorflow_model_server at $APPLIANCE_TFSERVING_URL (see
    .github/workflows/remote-tfserving.yml), which serves the same models under the same names."""
    server = ApplianceProcess(
        "--remote_url", os.environ["APPLIANCE_TFSERVING_URL"], "--models_dir", str(tmp_path_factory.mktemp("no-models"))
    )
    yield server
    server.stop()


SERVED = ["direct", "proxied"] + (["real"] if os.environ.get("APPLIANCE_TFSERVING_URL") else [])


@pytest.fixture(scope="session", params=SERVED)
def tfs_server(request):
    """TF Serving's test models, served directly and through the remote proxy: both must be TF Serving."""
    return request.getfixturevalue(f"tfs_{request.param}_server")


class PredictLoad:
    """Client threads sending ``POST /predict`` to a server nonstop, recording every outcome.

        with PredictLoad(server.url, clients=8) as load:
            ...                     # change versions meanwhile
        assert load.failures == []

    ``versions`` lists the version of each answer in arrival order; ``latencies``
    holds (seconds, marked) per answer, ``marked`` being whether :meth:`mark` was on.
    """

    def __init__(self, url: str, clients: int = 4, body: dict | None = None):
        self.url = url
        self.clients = clients
        self.body = body or {"input": [[3.0] * 64]}
        self.versions: list[int] = []
        self.failures: list[str] = []
        self.latencies: list[tuple[float, bool]] = []
        self.marked = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = session.post(self.url + "/predict", json=self.body, timeout=30)
                except requests.RequestException as e:
                    self.failures.append(repr(e))
                    continue
                self.latencies.append((time.perf_counter() - started, self.marked.is_set()))
                if response.status_code != 200:
                    self.failures.append(response.text)
                else:
                    self.versions.append(response.json()["version"])

    def __enter__(self) -> PredictLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def answers_since(self, index: int) -> list[int]:
        """Versions answered after ``index``, skipping the one request per client that may have been running then."""
        return self.versions[index + self.clients :]


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A second appliance to be the remote TF Serving of the module's front one: digits version 2 and iris."""
    models = tmp_path_factory.mktemp("remote-models")
    shutil.copytree(MODELS / "digits" / "2", models / "digits" / "2")
    shutil.copytree(MODELS / "iris", models / "iris")
    server = ApplianceProcess("--models_dir", str(models))
    yield server
    server.stop()


def wait_for(condition, timeout: float = 60, interval: float = 0.1):
    """``condition()``'s first truthy result within ``timeout`` seconds (asked every ``interval``), else its last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    return condition()
