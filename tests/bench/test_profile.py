"""``bench/profile.py`` samples a loaded appliance with py-spy and ranks its frames, in a couple of seconds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.profile import ptrace_restriction

from ..conftest import REPO


def test_profile_ranks_the_frames_and_writes_the_flame_graph(tmp_path):
    restriction = ptrace_restriction()
    if restriction:
        pytest.skip(f"py-spy cannot read the appliance's memory here: {restriction}")
    done = subprocess.run(
        [sys.executable, "bench/profile.py", "--concurrency", "8", "--seconds", "2", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    assert "Top 30 by inclusive share" in done.stdout and "Top 30 by self share" in done.stdout
    assert "(appliance/" in done.stdout  # the appliance's own frames, with their files, are ranked
    assert "<svg" in (tmp_path / "flamegraph.svg").read_text()
    stacks = (tmp_path / "stacks.txt").read_text().splitlines()
    assert stacks and all(line.rsplit(" ", 1)[1].isdigit() for line in stacks)
