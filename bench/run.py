"""The benchmark suite: the served APIs against the raw call, the HTTP and gRPC floors and the usual alternatives.

    python bench/run.py [--quick | --smoke] [--out DIR]          (the same: python -m bench ...)

Every server below is started on a free loopback port and kept running; then,
at concurrency 1, 8, 32 and 64, keep-alive clients load them with batch-1
``POST /v1/models/<model>:predict`` (the same body for all; the gRPC rows the
same instance through ``Predict``) one server at a time, in rounds: each
round loads every server once, the next round starting one server further
along, and a level's result adds up its rounds. A shared machine's other load
comes and goes within minutes; servers measured in rounds share it alike,
where servers measured one after the other did not (between such full runs,
the echo's c=32 rate moved by 25%).

- the appliance (``python -m appliance serve --rest_api_port 0 --port 0``, per-user folders of
  its own), for each bundled model, batching concurrent requests as the
  bundled models' ``batching_params.pbtxt`` ask (its default);
- ``appliance-grpc``: the same appliance process through its gRPC port
  (TF Serving's ``PredictionService/Predict``, the same digits instance as a
  serialized ``PredictRequest``), digits only: gRPC beside REST;
- ``appliance-v2`` and ``appliance-v2-binary``: the same appliance process
  through the Open Inference Protocol (KServe v2), ``POST
  /v2/models/digits/infer`` with the same instance as a 1x64 FP32 tensor, in
  JSON and in Triton's binary tensor data extension (outputs asked as binary
  too), digits only; ``appliance-v2-grpc``: the same through v2's gRPC
  ``ModelInfer`` on its gRPC port (the tensor in ``raw_input_contents``);
- ``appliance-unbatched``: the same with ``--enable_batching=false``, digits
  only: what batching costs at c=1 and gains at c=32;
- ``echo``: Bottle+waitress answering a fixed JSON, the HTTP floor, with the
  appliance's worker thread count;
- ``echo-grpc``: grpcio answering a fixed ``PredictResponse``, the gRPC floor,
  with the appliance's gRPC worker thread count;
- ``flask_keras``: the tutorial way, Flask's development server calling Keras'
  ``model.predict(...)`` per request (the SavedModel in a ``TFSMLayer``);
- ``flask``: the same server calling the SavedModel's signature per request;
- ``fastapi``: FastAPI + uvicorn calling the signature per request;
- ``mlserver``: MLServer 1.7.1, the v2 server in Python, serving digits
  through a minimal custom runtime that calls the signature
  (``bench/servers/mlserver_runtime.py``), over v2 JSON (it has no binary
  extension), and ``mlserver-grpc``, the same process through its v2 gRPC
  ``ModelInfer``, in an environment of its own that ``bench/mlserver.py``
  makes once in the user's cache folder; and ``mlserver-inprocess``, MLServer
  with ``parallel_workers=0`` (inference in its HTTP process, not in the
  worker process its default adds), v2 JSON.

Before a server is loaded, its first answer is checked: the v2 rows' outputs
against the appliance's TF Serving answer to the same instance.

Also measured: the raw in-process signature call (batch 1 and 32), the
appliance's cold start to its first prediction against ``python -c "import
tensorflow"``, and its memory against a bare process holding TensorFlow and the
same SavedModels. Prints a table, the issue's goals (met or not) and a few
ratios without a goal, writes ``bench.json`` and ``bench.png`` to ``--out``
(default: a new folder under the system's temporary folder) and the servers'
logs to ``<out>/logs``.

``--quick`` runs in about two minutes (one round per level, the servers
started all at once), ``--smoke`` in two or three (for the tests; too short for
numbers), the full run in about 10. Linux only (it reads
``/proc``). Flask, FastAPI and uvicorn come with the ``bench`` extra (Keras
with TensorFlow); a server whose packages are missing is skipped with a note,
and so is MLServer when its environment cannot be made (offline).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import grpc

if __package__ in (None, ""):  # run as a script: import bench from the repository, not from this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # whose profile.py would shadow the standard library's

from appliance.config import DEFAULT_THREADS
from bench import mlserver, report, v2
from bench.bodies import PREDICT_METHOD, predict_body, predict_path, predict_request
from bench.loadgen import Bounds, GrpcTarget, Tally, Target, run_round
from bench.processes import (
    REPO,
    ServerProcess,
    free_port,
    post,
    tfserving_prediction,
    time_import_tensorflow,
    user_dirs_env,
)

LEVELS = [1, 8, 32, 64]
MODELS = ["digits", "iris"]
GRPC_MODELS: tuple[str | None, ...] = ("digits",)  # the appliance's gRPC row
V2_MODELS: tuple[str, ...] = ("digits",)  # the v2 rows: the appliance's and MLServer's
START_TIMEOUT = 180.0  # seconds a server may take to give its first prediction


@dataclass(frozen=True)
class Mode:
    """How much each measurement runs."""

    bounds: Bounds  # per round of a concurrency level
    rounds: int  # of each level, every server measured in turn in each round
    start_together: bool  # start every server at once (their start-up times then mean little), not one by one
    raw_calls: int  # per model and batch size, in process
    raw_seconds: float
    cold_starts: int  # appliance starts (and TensorFlow imports) whose medians are compared


MODES = {
    "full": Mode(Bounds(warmup_s=0.5, measure_s=2.0, max_requests=50_000), 4, False, 20_000, 4.0, 3),
    "quick": Mode(Bounds(warmup_s=0.15, measure_s=0.6, max_requests=10_000), 1, True, 2_000, 1.0, 1),
    "smoke": Mode(Bounds(warmup_s=0.05, measure_s=0.1, max_requests=100), 2, True, 200, 0.2, 1),
}


@dataclass(frozen=True)
class ApplianceSetup:
    """The appliance as measured: ``appliance serve --rest_api_port 0 --port 0`` with these arguments."""

    name: str
    args: tuple[str, ...]
    models: tuple[str, ...]
    description: str
    grpc_name: str | None = None  # the row of the same process through its gRPC port (GRPC_MODELS), if any
    v2: bool = False  # rows of the same process through v2 (V2_MODELS): appliance-v2[-binary|-grpc]


_APPLIANCE = f"appliance serve (Bottle + waitress, threads={DEFAULT_THREADS})"
APPLIANCE_SETUPS = [
    ApplianceSetup(
        "appliance",
        (),
        tuple(MODELS),
        f"{_APPLIANCE}, bundled models, batching on (their batching_params.pbtxt: max_batch_size 32, "
        "no timeout, 1 batch thread)",
        "appliance-grpc",
        v2=True,
    ),
    ApplianceSetup(
        "appliance-unbatched",
        ("--enable_batching=false",),
        ("digits",),
        f"{_APPLIANCE}, bundled models, batching off (--enable_batching=false)",
    ),
]


@dataclass(frozen=True)
class Contender:
    """A server the appliance is compared with: ``python -m <module> --port N``."""

    name: str
    module: str
    description: str
    packages: tuple[str, ...]  # it is skipped when one is not installed
    models: tuple[str | None, ...]  # None: an echo, which serves no model (it gets the digits request)
    grpc: bool = False  # it serves TF Serving's gRPC Predict, not REST


def _fastapi_description() -> str:
    fast = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name)]
    return (
        f"FastAPI + uvicorn (1 worker, {' + '.join(fast) or 'asyncio + h11'}), pydantic body, "
        "signature called per request in a plain def endpoint (thread pool)"
    )


_FLASK = "Flask development server (app.run(threaded=True), HTTP/1.0: a connection per request)"
CONTENDERS = [
    Contender(
        "echo",
        "bench.servers.echo",
        f"HTTP floor: Bottle + waitress (threads={DEFAULT_THREADS}, as the appliance), fixed small JSON, no model",
        (),
        (None,),
    ),
    Contender(
        "echo-grpc",
        "bench.servers.echo_grpc",
        f"gRPC floor: grpcio sync server (threads={DEFAULT_THREADS}, as the appliance's gRPC port), TF Serving's "
        "PredictionService stubs, fixed small PredictResponse, no model (its RSS: TensorFlow, which TF Serving's "
        "protos import)",
        (),
        (None,),
        grpc=True,
    ),
    Contender(
        "flask_keras",
        "bench.servers.flask_keras",
        f"{_FLASK}, Keras model.predict(np.array(instances), verbose=0) per request: the SavedModel in "
        "keras.layers.TFSMLayer(call_endpoint='serving_default') in a functional keras.Model",
        ("flask", "keras"),
        tuple(MODELS),
    ),
    Contender(
        "flask",
        "bench.servers.flask_naive",
        f"{_FLASK}, tf.saved_model.load signature called per request",
        ("flask",),
        tuple(MODELS),
    ),
    Contender("fastapi", "bench.servers.fastapi_naive", _fastapi_description(), ("fastapi", "uvicorn"), tuple(MODELS)),
]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def request_for(model: str | None) -> tuple[str, bytes]:
    """The path and body sent for ``model``; the echo (None) gets the digits request."""
    return predict_path(model or "digits"), predict_body(model or "digits")


def grpc_request_for(model: str | None) -> bytes:
    """The serialized ``PredictRequest`` sent for ``model`` over gRPC; the echo (None) gets the digits one."""
    return predict_request(model or "digits")


def http_target(host: str, port: int) -> Callable[[str | None], Target]:
    return lambda model: Target(host, port, *request_for(model))


def grpc_target(address: str) -> Callable[[str | None], GrpcTarget]:
    return lambda model: GrpcTarget(address, PREDICT_METHOD, grpc_request_for(model))


def v2_target(host: str, port: int, binary: bool) -> Callable[[str | None], Target]:
    """v2 REST's ``infer`` of a model's instance: JSON, or Triton's binary tensor data (outputs binary too)."""

    def target(model: str | None) -> Target:
        model = model or "digits"
        if not binary:
            return Target(host, port, v2.infer_path(model), v2.infer_json_body(model))
        body, header_length = v2.infer_binary_body(model)
        headers = (("Content-Type", "application/octet-stream"), (v2.HEADER_LENGTH, str(header_length)))
        return Target(host, port, v2.infer_path(model), body, headers)

    return target


def v2_grpc_target(address: str) -> Callable[[str | None], GrpcTarget]:
    """v2 gRPC's ``ModelInfer`` of a model's instance, the tensor in ``raw_input_contents``."""
    return lambda model: GrpcTarget(address, v2.INFER_METHOD, v2.infer_request(model or "digits"))


def wait_ready(server: ServerProcess, host: str, port: int, models: tuple[str | None, ...]) -> float:
    """Wait for a prediction from every model; returns the seconds from the start to the first one's."""
    first, *_ = [server.wait_first_answer(host, port, *request_for(model), START_TIMEOUT) for model in models]
    return first


def wait_grpc_ready(server: ServerProcess, address: str, models: tuple[str | None, ...]) -> float:
    """:func:`wait_ready` through gRPC's ``Predict`` at ``address``."""
    first, *_ = [
        server.wait_first_grpc_answer(address, PREDICT_METHOD, grpc_request_for(model), START_TIMEOUT)
        for model in models
    ]
    return first


def wait_v2_ready(server: ServerProcess, target: Target, expected: dict) -> float:
    """Poll ``target`` (a v2 ``infer``) until it answers 200, check its outputs against ``expected`` (the
    appliance's TF Serving prediction of the same instance); seconds from the start to that answer."""

    def answer() -> dict | None:
        status, headers, body = post(target.host, target.port, target.path, target.body, dict(target.headers))
        if status != 200:
            return None
        length = headers.get(v2.HEADER_LENGTH.lower())
        return v2.read_answer(body, int(length) if length is not None else None)

    return _checked(server, server.poll(answer, START_TIMEOUT, f"answered no {target.path}"), target.path, expected)


def wait_v2_grpc_ready(server: ServerProcess, target: GrpcTarget, expected: dict) -> float:
    """:func:`wait_v2_ready` through v2 gRPC's ``ModelInfer``."""
    with grpc.insecure_channel(target.address) as channel:
        call = channel.unary_unary(target.method)

        def answer() -> dict | None:
            try:
                return v2.read_response(call(target.message, timeout=10))
            except grpc.RpcError:
                return None

        outputs = server.poll(answer, START_TIMEOUT, f"answered no {target.method}")
    return _checked(server, outputs, target.method, expected)


def _checked(server: ServerProcess, outputs: dict, what: str, expected: dict) -> float:
    """The seconds since ``server`` started, once its v2 ``outputs`` are found to hold the ``expected`` values."""
    if not v2.matches(outputs, expected):
        raise RuntimeError(f"{server.name}: {what} answered {outputs}, TF Serving's API {expected}")
    return time.perf_counter() - server.started


def wait_appliance_ready(server: ServerProcess, host: str, port: int, models: tuple[str, ...]) -> float:
    """:func:`wait_ready`, then wait until the appliance has loaded every version.

    Then no version loads during a measurement.
    """
    first = wait_ready(server, host, port, models)
    server.wait_versions_settled(host, port, models, START_TIMEOUT)
    return first


@dataclass
class Served:
    """A row of the table: a server started for the measurements, ready, and what it measured so far.

    The appliance's REST and gRPC rows are one process.
    """

    name: str
    server: ServerProcess
    target: Callable[[str | None], Target | GrpcTarget]  # what a model's load goes to
    models: tuple[str | None, ...]
    info: dict  # what it is, its start to first prediction and its RSS once ready
    runs: list[dict] = field(default_factory=list)


def _info(server: ServerProcess, description: str, startup_s: float) -> dict:
    return {
        "description": description,
        "pid": server.process.pid,
        "startup_s": startup_s,
        "rss_ready_mib": server.rss_mib(),
    }


def start_appliance(home: Path, log_path: Path, name: str = "appliance", args: tuple[str, ...] = ()) -> ServerProcess:
    """``appliance serve --rest_api_port 0 --port 0 [args]`` with per-user folders under ``home``."""
    return ServerProcess(
        name,
        ["-m", "appliance", "serve", "--rest_api_port", "0", "--port", "0", "--log_level", "WARNING", *args],
        log_path,
        user_dirs_env(home),
    )


def cold_starts(home: Path, logs: Path, mode: Mode) -> dict:
    """``python -c "import tensorflow"`` and the appliance's start to its first prediction, in turn.

    Each appliance start comes right after an import, so that the machine's
    other load weighs on both alike; one unmeasured import first fills the
    page cache, as for everything after it, and the per-user caches that all of
    them share. (TensorFlow's import loads all of Keras, which imports
    matplotlib where it is installed, as in the bench's environment: building
    matplotlib's font cache in a fresh cache folder costs about 0.9 s.)
    """
    say("cold starts: import tensorflow, then the appliance, in turn")
    home = home / "cold"
    first, _ = time_import_tensorflow(user_dirs_env(home))
    imported, exited, starts = [], [], []
    for i in range(mode.cold_starts):
        until_imported, until_exited = time_import_tensorflow(user_dirs_env(home))
        imported.append(until_imported)
        exited.append(until_exited)
        with start_appliance(home, logs / f"appliance-cold-{i}.log") as server:
            starts.append(wait_ready(server, *server.wait_for_url(START_TIMEOUT), tuple(MODELS[:1])))
    return {
        "appliance_s": starts,
        "appliance_median_s": statistics.median(starts),
        "import_tensorflow_s": imported,
        "import_tensorflow_median_s": statistics.median(imported),
        "import_tensorflow_with_exit_s": exited,
        "import_tensorflow_first_s": first,
    }


def missing_packages(contender: Contender) -> list[str]:
    return [name for name in contender.packages if importlib.util.find_spec(name) is None]


def bench_in_process(mode: Mode) -> dict:
    """The raw signature call and the bare process's RSS, measured in a process of their own."""
    say("raw signature call: in process")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.inprocess",
            "--calls",
            str(mode.raw_calls),
            "--seconds",
            str(mode.raw_seconds),
            "--batches",
            "1",
            "32",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.inprocess failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def appliance_served(server: ServerProcess, setup: ApplianceSetup, expected: dict[str, dict]) -> list[Served]:
    """Wait until the appliance has answered every model and loaded every version; its REST row, then its gRPC
    row (the same process through its printed gRPC port) when ``setup`` has one, and its v2 rows when it has
    those. Keeps its TF Serving prediction of each of V2_MODELS in ``expected``, to check v2 answers against."""
    host, port = server.wait_for_url(START_TIMEOUT)
    startup = wait_appliance_ready(server, host, port, setup.models)
    for model in V2_MODELS:
        if model not in expected:  # the first appliance's answer
            expected[model] = tfserving_prediction(host, port, *request_for(model))
    served = [
        Served(setup.name, server, http_target(host, port), setup.models, _info(server, setup.description, startup))
    ]
    if setup.v2:
        for binary, name, how in ((False, "appliance-v2", "JSON"), (True, "appliance-v2-binary", "binary")):
            target = v2_target(host, port, binary)
            first = max(wait_v2_ready(server, target(model), expected[model]) for model in V2_MODELS)
            description = (
                f"the {setup.name} process above through v2 REST, POST /v2/models/<model>/infer, 1x64 FP32 in {how}"
                + (" (Triton's binary tensor data extension, outputs asked binary_data_output)" if binary else "")
            )
            served.append(Served(name, server, target, V2_MODELS, _info(server, description, first)))
    if setup.grpc_name is not None:
        address = server.wait_for_grpc_address(START_TIMEOUT)
        first = wait_grpc_ready(server, address, GRPC_MODELS)
        description = (
            f"the {setup.name} process above through its gRPC port (--port 0; TF Serving's PredictionService/"
            "Predict, float32 tensor_content; its first answer asked for once REST had answered)"
        )
        served.append(
            Served(setup.grpc_name, server, grpc_target(address), GRPC_MODELS, _info(server, description, first))
        )
        if setup.v2:
            target = v2_grpc_target(address)
            first = max(wait_v2_grpc_ready(server, target(model), expected[model]) for model in V2_MODELS)
            description = (
                f"the {setup.name} process above through its gRPC port, v2's GRPCInferenceService/ModelInfer, "
                "1x64 FP32 in raw_input_contents"
            )
            served.append(Served("appliance-v2-grpc", server, target, V2_MODELS, _info(server, description, first)))
    return served


def contender_served(server: ServerProcess, contender: Contender, port: int) -> list[Served]:
    """Wait until ``contender`` has answered every model; its row."""
    if contender.grpc:
        address = f"127.0.0.1:{port}"
        startup = wait_grpc_ready(server, address, contender.models)
        target: Callable[[str | None], Target | GrpcTarget] = grpc_target(address)
    else:
        startup = wait_ready(server, "127.0.0.1", port, contender.models)
        target = http_target("127.0.0.1", port)
    return [Served(contender.name, server, target, contender.models, _info(server, contender.description, startup))]


@dataclass(frozen=True)
class MLServerSetup:
    """MLServer as measured: its row's name, its ``parallel_workers`` (None: its default), whether its gRPC port
    gets a row (``<name>-grpc``) and how it is described."""

    name: str
    parallel_workers: int | None
    grpc: bool
    description: str


_MLSERVER = (
    f"MLServer {mlserver.VERSION} (FastAPI + uvicorn; adaptive batching off, its default; debug off: no access log "
    "line per request), custom runtime calling the signature (bench/servers/mlserver_runtime.py), v2 JSON"
)
MLSERVER_SETUPS = [
    MLServerSetup(
        "mlserver",
        None,
        True,
        f"{_MLSERVER}; its default parallel_workers=1: inference in a worker process beside the HTTP one (CPU and "
        "RSS: its processes added up)",
    ),
    MLServerSetup(
        "mlserver-inprocess",
        0,
        False,
        f"{_MLSERVER}; parallel_workers=0: inference in the HTTP process, as the appliance does",
    ),
]


def mlserver_served(
    server: ServerProcess, ports: mlserver.Ports, setup: MLServerSetup, expected: dict[str, dict]
) -> list[Served]:
    """Wait until MLServer answers v2 ``infer`` of every model of V2_MODELS as the appliance does, over REST, then
    over gRPC when ``setup`` has that row; its rows."""
    target = v2_target("127.0.0.1", ports.http, binary=False)
    startup = max(wait_v2_ready(server, target(model), expected[model]) for model in V2_MODELS)
    served = [Served(setup.name, server, target, V2_MODELS, _info(server, setup.description, startup))]
    if setup.grpc:
        over_grpc = v2_grpc_target(f"127.0.0.1:{ports.grpc}")
        first = max(wait_v2_grpc_ready(server, over_grpc(model), expected[model]) for model in V2_MODELS)
        description = (
            f"the {setup.name} processes above through their gRPC port, ModelInfer, 1x64 FP32 in raw_input_contents"
        )
        served.append(Served(f"{setup.name}-grpc", server, over_grpc, V2_MODELS, _info(server, description, first)))
    return served


def mlserver_environment(results: dict) -> Path | None:
    """MLServer's ``mlserver`` program, its environment made first when there is none (before anything is
    measured: it takes a minute or more); None, with the reason in ``results["skipped"]``, when it cannot be."""
    try:
        program, made_s = mlserver.environment(say)
    except mlserver.Unavailable as e:
        results["skipped"]["mlserver"] = str(e)
        say(f"mlserver: skipped, {e}")
        return None
    results["mlserver_environment"] = {"path": str(program.parents[1]), "made_s": made_s}
    if made_s is not None:
        say(f"mlserver: its environment took {made_s:.0f} s to make")
    return program


def start_mlserver(
    running: contextlib.ExitStack, program: Path, setup: MLServerSetup, home: Path, logs: Path
) -> tuple[ServerProcess, mlserver.Ports]:
    """``mlserver start`` of a repository serving V2_MODELS on free loopback ports, and those ports."""
    ports = mlserver.Ports(free_port(), free_port(), free_port())
    repository = mlserver.write_repository(
        home / setup.name / "repository", V2_MODELS, ports, parallel_workers=setup.parallel_workers
    )
    server = ServerProcess(
        setup.name,
        ["start", str(repository)],
        logs / f"{setup.name}.log",
        {**user_dirs_env(home / setup.name), **mlserver.runtime_env()},
        program=program,
        cwd=repository,
    )
    return running.enter_context(server), ports


def launches(
    running: contextlib.ExitStack, home: Path, logs: Path, skipped: dict, mlserver_program: Path | None
) -> Iterator[Callable[[], list[Served]]]:
    """The appliance (batched, then unbatched), then each installed contender, then MLServer, started as they are
    asked for; each comes as the call that waits until it is ready and returns its rows. The batched appliance
    comes first: its answers are what the v2 rows' first answers are checked against."""
    expected: dict[str, dict] = {}
    for setup in APPLIANCE_SETUPS:
        say(f"{setup.name}: starting")
        server = running.enter_context(
            start_appliance(home / setup.name, logs / f"{setup.name}.log", setup.name, setup.args)
        )
        yield partial(appliance_served, server, setup, expected)
    for contender in CONTENDERS:
        missing = missing_packages(contender)
        if missing:
            skipped[contender.name] = f"not installed: {', '.join(missing)} (pip install -e '.[bench]')"
            say(f"{contender.name}: skipped, {skipped[contender.name]}")
            continue
        say(f"{contender.name}: starting")
        port = free_port()
        server = running.enter_context(
            ServerProcess(
                contender.name,
                ["-m", contender.module, "--port", str(port)],
                logs / f"{contender.name}.log",
                user_dirs_env(home / contender.name),
            )
        )
        yield partial(contender_served, server, contender, port)
    for mlserver_setup in MLSERVER_SETUPS if mlserver_program is not None else []:
        say(f"{mlserver_setup.name}: starting")
        server, ports = start_mlserver(running, mlserver_program, mlserver_setup, home, logs)
        yield partial(mlserver_served, server, ports, mlserver_setup, expected)


def start_servers(
    running: contextlib.ExitStack, home: Path, logs: Path, mode: Mode, skipped: dict, mlserver_program: Path | None
) -> list[Served]:
    """Every server, ready and left running: started one by one, or all at once and then waited for."""
    started = launches(running, home, logs, skipped, mlserver_program)
    if mode.start_together:
        started = iter(list(started))  # every process started before any is waited for
    return [one for wait_served in started for one in wait_served()]


def load_servers(served: list[Served], mode: Mode) -> None:
    """Every served model at every concurrency level, the servers taking turns round after round.

    At each level, each round loads every server with that model's request
    (the echo with the digits request), starting one server further along the
    list than the round before, so that a change in the machine's other load
    during the level weighs on them all alike; a server's result at the level
    adds up its rounds.
    """
    for model in MODELS:
        for concurrency in LEVELS:
            turns = [(one, m, Tally(concurrency)) for one in served for m in one.models if (m or MODELS[0]) == model]
            for round_ in range(mode.rounds):
                first = round_ % len(turns)
                for one, m, tally in turns[first:] + turns[:first]:
                    run_round(one.target(m), mode.bounds, one.server.cpu_seconds, tally)
                    one.server.check_running()
            for one, m, tally in turns:
                result = tally.summary()
                one.runs.append({"server": one.name, "model": m, **result, "server_rss_mib": one.server.rss_mib()})
                say(
                    f"  {one.name} {m or ''} c={concurrency}: {result['req_per_s']:.0f} req/s, "
                    f"p99 {result['p99_ms'] or float('nan'):.2f} ms, {result['errors']} errors"
                )


def bench_servers(home: Path, logs: Path, mode: Mode, results: dict, mlserver_program: Path | None) -> None:
    """Every server started and kept running, then measured in turns (:func:`load_servers`), into ``results``."""
    with contextlib.ExitStack() as running:
        served = start_servers(running, home, logs, mode, results["skipped"], mlserver_program)
        load_servers(served, mode)
        for one in served:
            results["servers"][one.name] = {**one.info, "rss_after_load_mib": one.server.rss_mib()}
            results["runs"] += one.runs


def run(mode_name: str, out: Path) -> dict:
    """Everything, in one run; returns what goes into bench.json."""
    mode = MODES[mode_name]
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {
        "mode": mode_name,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "levels": LEVELS,
        "settings": asdict(mode),
        "servers": {},
        "skipped": {},
        "runs": [],
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_before": os.getloadavg(),
        },
    }
    mlserver_program = mlserver_environment(results)
    with tempfile.TemporaryDirectory(prefix="appliance-bench-home-") as home:
        results["cold_start"] = cold_starts(Path(home), logs, mode)
        bench_servers(Path(home), logs, mode, results, mlserver_program)
    results["raw"] = bench_in_process(mode)
    results["goals"] = report.goals(results)
    results["informational"] = report.informational(results)
    results["seconds"] = time.perf_counter() - started
    results["machine"]["load_average_after"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick", help="about two minutes")
    size.add_argument("--smoke", dest="mode", action="store_const", const="smoke", help="seconds: for the tests")
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for bench.json, bench.png and the logs (default: a new one under the temporary folder)",
    )
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="appliance-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    results = run(args.mode or "full", out)
    (out / "bench.json").write_text(json.dumps(results, indent=1) + "\n")
    print(report.table(results))
    picture = report.draw(results, out / "bench.png")
    print(f"\nresults: {out / 'bench.json'}\nchart: {picture}\nlogs: {out / 'logs'}")


if __name__ == "__main__":
    main()
