"""The load generator adds a level's rounds up: answers, seconds and CPU of every round, against a real server; its
gRPC clients get answers from a real gRPC server and count its errors."""

from __future__ import annotations

import asyncio
from collections import Counter

from bench.bodies import PREDICT_METHOD, predict_request
from bench.loadgen import Bounds, GrpcTarget, Tally, Target, _Window, run_round
from bench.processes import ServerProcess, free_port

ROUND = Bounds(warmup_s=0.05, measure_s=0.3, max_requests=1_000_000)  # each round ends on time


def test_a_tally_adds_up_its_rounds_against_the_echo_server(tmp_path):
    port = free_port()
    with ServerProcess("echo", ["-m", "bench.servers.echo", "--port", str(port)], tmp_path / "echo.log", {}) as echo:
        echo.wait_first_answer("127.0.0.1", port, "/v1/models/digits:predict", b"{}", 60)
        target = Target("127.0.0.1", port, "/v1/models/digits:predict", b'{"instances": [1]}')
        tally = Tally(concurrency=4)
        run_round(target, ROUND, echo.cpu_seconds, tally)
        first = tally.summary()
        run_round(target, ROUND, echo.cpu_seconds, tally)
        both = tally.summary()

    assert both["requests"] > first["requests"] > 0
    assert both["seconds"] >= first["seconds"] + ROUND.measure_s and first["seconds"] >= ROUND.measure_s
    assert both["req_per_s"] == both["requests"] / both["seconds"]
    assert both["errors"] == 0 and both["p99_ms"] >= both["p50_ms"] > 0
    assert both["server_cpu_ms_per_req"] > 0 and both["client_cpu_ms_per_req"] > 0


def test_a_grpc_level_gets_answers_from_the_grpc_echo_server_and_counts_its_errors(tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    message = predict_request("digits")
    with ServerProcess(
        "echo-grpc", ["-m", "bench.servers.echo_grpc", "--port", str(port)], tmp_path / "echo-grpc.log", {}
    ) as echo:
        echo.wait_first_grpc_answer(address, PREDICT_METHOD, message, 60)
        tally = Tally(concurrency=4)
        run_round(GrpcTarget(address, PREDICT_METHOD, message), ROUND, echo.cpu_seconds, tally)
        unknown_method = GrpcTarget(address, "/tensorflow.serving.PredictionService/NoSuchMethod", message)
        errors = asyncio.run(errors_of(unknown_method, seconds=0.2))
    result = tally.summary()

    assert result["requests"] > 0 and result["errors"] == 0 and result["p99_ms"] >= result["p50_ms"] > 0
    assert result["server_cpu_ms_per_req"] > 0 and result["client_cpu_ms_per_req"] > 0
    assert errors and all(what.startswith("gRPC UNIMPLEMENTED") for what in errors)


async def errors_of(target: GrpcTarget, seconds: float) -> Counter[str]:
    """What one client of ``target`` counts as errors in ``seconds`` (a round would wait 30 s more for answers)."""
    window = _Window(max_requests=1)
    client = asyncio.create_task(target.client(window))
    await asyncio.sleep(seconds)
    window.ended = True
    await client
    return window.errors
