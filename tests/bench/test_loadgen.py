"""The load generator adds a level's rounds up: answers, seconds and CPU of every round, against a real server."""

from __future__ import annotations

from bench.loadgen import Bounds, Tally, Target, run_round
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
