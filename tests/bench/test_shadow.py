"""bench/shadow.py runs end to end against a real appliance: every state is timed, and the rounds with shadow
traffic on did shadow requests (the figures mean nothing in so short a run)."""

from __future__ import annotations

import json
import subprocess
import sys

from ..conftest import REPO


def test_the_shadow_bench_times_every_state(tmp_path):
    out = tmp_path / "shadow.json"
    done = subprocess.run(
        [sys.executable, "bench/shadow.py", "--calls", "40", "--rounds", "1", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"off", "share 1.0", "share 0.1"}
    for state, figures in results.items():
        assert figures["p99_ms"] >= figures["p50_ms"] > 0, state
    on = results["share 1.0"]
    assert on["compared"] >= 1 and on["compared"] + on["dropped"] == 44  # every call and its warm-up tenth sampled
    assert "p50 / off" in done.stdout
