"""The soak test for CI: a minute of ``bench/soak.py`` against a real appliance, judged from the record it writes.

16 clients, digits' version switched every 5 s, a model reloaded every 30 s
(each model at the start, then at 15 and 45 s): no request, switch or reload may
fail, RSS may not grow 5% after warm-up, and open files and threads may not grow
(``-m 'not soak'`` deselects it; ``python bench/soak.py`` runs the 10-minute version).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.soak import FD_SLACK, MIX, RSS_GROWTH_LIMIT_PCT, THREAD_SLACK

from ..conftest import REPO

MINUTES = 1
SWITCH_EVERY_S = 5
RELOAD_EVERY_S = 30
MIN_REQUESTS = 1000  # a sanity floor far below any real throughput: the soak is not a speed test


@pytest.mark.soak
def test_a_minute_of_load_with_switches_and_reloads_fails_nothing_and_leaks_nothing(tmp_path):
    record = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--minutes",
            str(MINUTES),
            "--switch-every",
            str(SWITCH_EVERY_S),
            "--reload-every",
            str(RELOAD_EVERY_S),
            "--json",
            str(record),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert record.exists(), done.stderr[-3000:]
    results = json.loads(record.read_text())
    print(f"\n{done.stdout}")

    assert results["failed_requests"] == 0, results["failure_samples"]
    assert set(results["answered_as_expected"]) == {call.name for call, _ in MIX}  # the bad requests got their 4xx
    assert results["requests"] >= MIN_REQUESTS
    assert results["failed_switches"] == 0 and results["switches"] >= 10, results["actions"]
    assert results["failed_reloads"] == 0 and results["reloads"] >= 3, results["actions"]
    assert results["rss_mib"]["growth_pct"] < RSS_GROWTH_LIMIT_PCT, results["rss_mib"]
    assert results["fds"]["end"] <= results["fds"]["start"] + FD_SLACK, results["fds"]
    assert results["threads"]["end"] <= results["threads"]["start"] + THREAD_SLACK, results["threads"]
    assert len(results["samples"]) >= MINUTES * 60 * 0.8  # about one a second
    assert results["passed"] and done.returncode == 0, done.stdout
