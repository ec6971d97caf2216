"""MLServer as a peer: its own virtual environment, made once and cached, and a model repository that serves a
bundled SavedModel through the minimal custom runtime of ``bench/servers/mlserver_runtime.py``.

    program, made_s = environment(say)          # <cache>/mlserver-1.7.1-tensorflow-2.21.0-py3.11/bin/mlserver
    folder = write_repository(tmp, ("digits",), Ports(8080, 8081, 8082))
    subprocess.Popen([program, "start", str(folder)], cwd=folder, env={..., **runtime_env()})

MLServer cannot share the appliance's environment (it pins ``fastapi<0.116``,
which the test extra's kserve outgrows), so it gets one of its own under the
user's cache folder (platformdirs), with ``mlserver`` and the TensorFlow the
appliance runs (the same version, so both call the same kernels) and
``uvloop<0.22``: about 75 s and 2.3 GB the first time here, then reused. Made under a lock, and marked
complete only at the end, so that two runs never share a half-made one.
Settings: MLServer's defaults (one parallel inference worker process, adaptive
batching off), but ``debug`` off, which would write an access log line per
request where the appliance is measured without one; ``parallel_workers`` as
asked (0: inference in the HTTP process).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import platformdirs

from bench.processes import REPO

VERSION = "1.7.1"
RUNTIME = "bench.servers.mlserver_runtime.SavedModelRuntime"
_COMPLETE = "complete"  # the file written last into a finished environment
_PIP_SECONDS = 900.0


class Unavailable(Exception):
    """MLServer's environment could not be made (offline without the packages, say): the row is skipped."""


class Ports(NamedTuple):
    http: int
    grpc: int
    metrics: int


def environment_dir() -> Path:
    """Where the environment lives: one per MLServer, TensorFlow and Python version."""
    tensorflow = importlib.metadata.version("tensorflow")
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return Path(platformdirs.user_cache_dir("appliance-bench")) / f"mlserver-{VERSION}-tensorflow-{tensorflow}-{python}"


def environment(say: Callable[[str], None]) -> tuple[Path, float | None]:
    """The ``mlserver`` program of the environment, made first when there is none; and the seconds it took to make
    (None when it was there). Raises :class:`Unavailable` when pip cannot install it."""
    folder = environment_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run making it: wait for it, then use it
        if (folder / _COMPLETE).exists():
            return folder / "bin" / "mlserver", None
        say(f"mlserver: making its environment in {folder} (once; about a minute or two)")
        started = time.perf_counter()
        shutil.rmtree(folder, ignore_errors=True)  # a run that stopped half-way
        _make(folder)
        (folder / _COMPLETE).write_text(f"{time.perf_counter() - started:.1f} s\n")
        return folder / "bin" / "mlserver", time.perf_counter() - started


def _make(folder: Path) -> None:
    tensorflow = importlib.metadata.version("tensorflow")
    steps = [
        [sys.executable, "-m", "venv", str(folder)],
        [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", *_requirements(tensorflow)],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=_PIP_SECONDS)
        except subprocess.TimeoutExpired as e:
            raise Unavailable(f"{' '.join(step[:4])} ... took over {_PIP_SECONDS:.0f} s") from e
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or [done.stderr[-300:]]
            raise Unavailable(f"could not make its environment: {errors[-1].strip()}")


def _requirements(tensorflow: str) -> list[str]:
    # uvloop 0.22 broke MLServer 1.7.1's inference workers ("There is no current event loop", SeldonIO/MLServer#2286)
    return [f"mlserver=={VERSION}", f"tensorflow=={tensorflow}", "uvloop<0.22"]


def write_repository(folder: Path, models: tuple[str, ...], ports: Ports, parallel_workers: int | None = None) -> Path:
    """A folder for ``mlserver start``: its settings.json (loopback, ``ports``, ``parallel_workers`` unless None:
    MLServer's default) and a model-settings.json per bundled model of ``models``: its newest version (the one the
    appliance answers with) behind the runtime.
    (``bench.servers.models`` lists versions too, but imports TensorFlow.)"""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"host": "127.0.0.1", "http_port": ports.http, "grpc_port": ports.grpc, "metrics_port": ports.metrics}
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (folder / "settings.json").write_text(json.dumps({**settings, "debug": False}, indent=1))
    for model in models:
        (folder / model).mkdir(exist_ok=True)
        uri = str(max((REPO / "models" / model).glob("[0-9]*"), key=lambda path: int(path.name)))
        model_settings = {"name": model, "implementation": RUNTIME, "parameters": {"uri": uri}}
        (folder / model / "model-settings.json").write_text(json.dumps(model_settings, indent=1))
    return folder


def runtime_env() -> dict[str, str]:
    """What MLServer's processes need in their environment to import the runtime from this repository."""
    return {"PYTHONPATH": str(REPO)}
