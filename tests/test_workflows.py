"""The GitHub Actions workflows in .github/workflows: valid against GitHub's schema, clean under zizmor's security
audit (offline: no GitHub API), every action pinned to a commit, and an installers workflow that smoke-tests each
installer (serve the frozen app, one checked ``/predict``) before it uploads it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
INSTALLERS = WORKFLOWS / "installers.yml"
#: the runner of each installer job: the Linux one is the oldest supported (glibc 2.35, as installer/README.md says)
INSTALLER_RUNNERS = ("ubuntu-22.04", "windows-latest", "macos-latest")

# `serve --rest_api_port` in a shell, or `"serve", "--rest_api_port"` in PowerShell's -ArgumentList
SERVES = re.compile(r"\bserve\W+--rest_api_port\b")
UPLOAD = "actions/upload-artifact@"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def tool(name: str) -> str:
    """The command ``name`` of this Python's environment (the test extra installs it), else the one on PATH."""
    suffix = ".exe" if os.name == "nt" else ""
    beside = Path(sys.executable).parent / f"{name}{suffix}"
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found, f"{name} not found beside {sys.executable} nor on PATH: pip install -e '.[test]'"
    return found


def run_tool(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def report(result: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(result.args)}\nexit status {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_there_are_workflows():
    assert workflow_files(), f"no workflow in {WORKFLOWS}"
    assert INSTALLERS in workflow_files()


def test_workflows_match_githubs_schema():
    files = [str(path) for path in workflow_files()]
    result = run_tool(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files)
    assert result.returncode == 0, report(result)


def test_workflows_are_zizmor_clean():
    files = [str(path) for path in workflow_files()]
    result = run_tool(tool("zizmor"), "--offline", "--no-progress", "--color", "never", *files)
    assert result.returncode == 0, report(result)


def uses_of(node) -> list[str]:
    """Every ``uses:`` value in a parsed workflow (steps and reusable-workflow jobs)."""
    if isinstance(node, dict):
        found = [node["uses"]] if isinstance(node.get("uses"), str) else []
        return found + [use for value in node.values() for use in uses_of(value)]
    if isinstance(node, list):
        return [use for item in node for use in uses_of(item)]
    return []


@pytest.mark.parametrize("path", workflow_files(), ids=lambda path: path.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path):
    """``uses: owner/repo@<40 hex> # vX.Y.Z``: a tag can be moved, a commit cannot; the comment says which tag."""
    text = path.read_text(encoding="utf-8")
    lines = [line.split("uses:", 1)[1].strip() for line in text.splitlines() if re.match(r"^\s*(- )?uses:", line)]
    assert len(lines) == len(uses_of(yaml.safe_load(text)))
    unpinned = [line for line in lines if not line.startswith("./") and not PINNED.match(line)]
    assert not unpinned, f"{path.name}: not pinned as owner/repo@<commit> # vX.Y.Z: {unpinned}"


def installer_jobs() -> dict[str, dict]:
    return yaml.safe_load(INSTALLERS.read_text(encoding="utf-8"))["jobs"]


@pytest.mark.parametrize("runner", INSTALLER_RUNNERS)
def test_each_installer_job_predicts_before_it_uploads(runner):
    jobs = {name: job for name, job in installer_jobs().items() if job.get("runs-on") == runner}
    assert jobs, f"{INSTALLERS.name}: no job runs on {runner}"
    for name, job in jobs.items():
        steps = job["steps"]
        uploads = [i for i, step in enumerate(steps) if str(step.get("uses", "")).startswith(UPLOAD)]
        smoke = [i for i, step in enumerate(steps) if "/predict" in step.get("run", "") and SERVES.search(step["run"])]
        assert uploads, f"{INSTALLERS.name}: job {name} ({runner}) uploads nothing"
        assert smoke, f"{INSTALLERS.name}: job {name} ({runner}) has no step that serves the app and calls /predict"
        assert smoke[0] < uploads[0], f"{INSTALLERS.name}: job {name} ({runner}) uploads before its /predict check"
        step = steps[smoke[0]]
        assert "if" not in step and not step.get("continue-on-error"), (
            f"{INSTALLERS.name}: job {name} ({runner}): the /predict step must always run and fail the job"
        )
