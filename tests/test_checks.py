"""The project's own checks (``scripts/check``): ruff's lint and format, mypy, and the generated docs table.

They run here so that the README's test command, which CI runs, fails on a new finding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.mark.parametrize("check", ["lint", "format", "mypy", "docs"])
def test_check_passes(check):
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "check"), check],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"scripts/check {check}:\n{result.stdout}\n{result.stderr}"


def test_a_finding_fails_its_check(tmp_path):
    """A check that cannot fail checks nothing: a file with a lint finding must fail the lint check."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")  # F401: imported but unused
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--quiet", "--config", str(REPO / "pyproject.toml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "F401" in result.stdout
