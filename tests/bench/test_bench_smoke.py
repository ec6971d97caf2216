"""The benchmark suite runs end to end: ``bench/run.py --smoke`` measures every server at every level, error-free.

Every server: the appliance batched (over REST and over gRPC, one process)
and unbatched, the HTTP and gRPC echo floors, Flask with Keras, Flask with the
signature, FastAPI. The numbers of a smoke run mean
nothing; this only checks that the suite works and that what it writes is
complete.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from ..conftest import REPO

LEVELS = [1, 8, 32, 64]
SERVED = {
    "appliance": ["digits", "iris"],
    "appliance-grpc": ["digits"],
    "appliance-unbatched": ["digits"],
    "echo": [None],
    "echo-grpc": [None],
    "flask_keras": ["digits", "iris"],
    "flask": ["digits", "iris"],
    "fastapi": ["digits", "iris"],
}
OPTIONAL = {"flask_keras", "flask", "fastapi"}  # skipped when their packages are missing


def test_smoke_run_measures_every_server_and_level(tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "bench.json").read_text())

    assert set(results["servers"]) | set(results["skipped"]) == set(SERVED)
    assert set(results["skipped"]) <= OPTIONAL  # only a missing optional package may skip a server
    for server in results["skipped"]:
        assert f"{server}: skipped, not installed" in done.stderr
    measured = {(run["server"], run["model"], run["concurrency"]): run for run in results["runs"]}
    expected = {(server, model, level) for server in results["servers"] for model in SERVED[server] for level in LEVELS}
    assert set(measured) == expected
    for key, run in measured.items():
        assert run["errors"] == 0, (key, run["error_samples"])
        assert run["requests"] > 0 and run["p99_ms"] >= run["p50_ms"] > 0, key

    assert {(call["model"], call["batch"]) for call in results["raw"]["calls"]} == {
        (model, batch) for model in ("digits", "iris") for batch in (1, 32)
    }
    goals = {goal["goal"]: goal for goal in results["goals"]}
    assert len(goals) == 7
    batching = goals["c=1: appliance digits p50, batched ÷ unbatched (--enable_batching=false)"]
    assert batching["value"] > 0 and batching["met"] in (True, False)
    keras = goals["c=32: appliance digits req/s ÷ flask_keras"]
    assert "flask_keras" in results["skipped"] or (keras["value"] > 0 and keras["met"] in (True, False))
    ratios = {ratio["ratio"]: ratio["value"] for ratio in results["informational"]}
    assert ratios["c=32: appliance digits req/s ÷ appliance-unbatched"] > 0
    assert "flask" in results["skipped"] or ratios["c=32: appliance digits req/s ÷ flask"] > 0
    for level in (1, 32):  # gRPC beside REST, from the same appliance process
        assert ratios[f"c={level}: appliance digits req/s, gRPC ÷ REST"] > 0
        assert ratios[f"c={level}: appliance digits server CPU per request, gRPC ÷ REST"] > 0
    assert results["servers"]["appliance-grpc"]["pid"] == results["servers"]["appliance"]["pid"]
    assert "Goals" in done.stdout and "Also measured (no goal)" in done.stdout
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "bench.png").stat().st_size > 0
