"""bench/compare_live.py runs end to end on a real appliance: it times live calls with a comparison off and on, and a
comparison does run in the gaps of paced live traffic (and yields to back-to-back traffic)."""

from __future__ import annotations

import re
import subprocess
import sys

from ..conftest import REPO


def test_a_short_run_prints_both_pauses_and_replays_in_the_gaps():
    done = subprocess.run(
        [sys.executable, "bench/compare_live.py", "--calls", "60", "--rounds", "1", "--replayed", "300"]
        + ["--pauses-ms", "0,20"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for pause in (0, 20):
        for state in ("off", "on"):
            assert re.search(rf"pause +{pause} ms, comparison {state} +p50 ms: [\d.]+ +p99 ms: [\d.]+", done.stdout)
    paced = re.search(r"pause +20 ms: p50 on/off [\d.]+; requests replayed per round while on: \[(\d+)\]", done.stdout)
    assert paced, done.stdout
    assert int(paced.group(1)) > 0  # the comparison ran between paced calls
