"""The frozen appliance, built once per session with installer/build.py, and real processes of it.

    def test_x(bundle, tmp_path):
        server = Server.start([str(bundle.executable), "serve", "--rest_api_port", "0", "--port", "0"], home=tmp_path)
        server.predict({"input": [[0.0] * 64]})
        assert server.stop() == 0

The build takes ~2 minutes and ~1.3 GB in a temporary folder, removed after the session. Set
``APPLIANCE_BUNDLE_DIR`` to a built bundle (the folder holding the ``appliance`` executable) to test that one
instead, and ``APPLIANCE_SKIP_INSTALLER_TESTS=1`` to skip these tests. Every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from ..conftest import REPO, user_dirs_env
from ..tray.conftest import x_desktop  # noqa: F401 (the X desktop fixture, for the frozen tray test)

SKIP_VARIABLE = "APPLIANCE_SKIP_INSTALLER_TESTS"
BUNDLE_VARIABLE = "APPLIANCE_BUNDLE_DIR"
BUILD_TIMEOUT = 900
URL_LINE = re.compile(r"serving on (http://\S+)")

installer_tests = [
    pytest.mark.installer,
    pytest.mark.skipif(
        os.environ.get(SKIP_VARIABLE, "") not in ("", "0"),
        reason=f"installer tests skipped: {SKIP_VARIABLE} is set (they build the 1.3 GB PyInstaller bundle, ~2 min)",
    ),
]

MEASURED: dict[str, object] = {}  # figures the tests measured, printed in the terminal summary


@dataclass
class Bundle:
    folder: Path
    build_seconds: float | None  # None when APPLIANCE_BUNDLE_DIR named an existing build
    dist: Path  # where packages built from it go

    @property
    def executable(self) -> Path:
        return self.folder / "appliance"


def _tree_bytes(path: Path) -> int:
    return sum((Path(root) / name).lstat().st_size for root, _, files in os.walk(path) for name in files)


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Bundle:
    """The onedir bundle: APPLIANCE_BUNDLE_DIR's, or one built now into a temporary folder (removed afterwards)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the installer tests build and run the Linux bundle")
    given = os.environ.get(BUNDLE_VARIABLE)
    if given:
        folder = Path(given).resolve()
        if not (folder / "appliance").is_file():
            pytest.fail(
                f"{BUNDLE_VARIABLE}={given} holds no 'appliance' executable: build one with "
                f"`python installer/build.py --dist DIR` and point {BUNDLE_VARIABLE} at DIR/appliance"
            )
        MEASURED["bundle_bytes"] = _tree_bytes(folder)
        yield Bundle(folder, None, tmp_path_factory.mktemp("installer-dist"))
        return
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.fail(f"PyInstaller is not installed: `pip install -e '.[test]'` (or set {SKIP_VARIABLE}=1)")
    base = tmp_path_factory.mktemp("installer-build")
    dist, work, log = base / "dist", base / "work", base / "build.log"
    started = time.monotonic()
    with open(log, "w") as output:
        try:
            result = subprocess.run(
                [sys.executable, str(REPO / "installer" / "build.py"), "--dist", str(dist), "--work", str(work)],
                check=False,
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"installer/build.py took over {BUILD_TIMEOUT} s; log: {log}")
    seconds = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)  # ~1 GB of stripped library copies and PyInstaller's caches
    if result.returncode != 0:
        pytest.fail(f"installer/build.py failed ({result.returncode}):\n{log.read_text()[-6000:]}")
    folder = dist / "appliance"
    MEASURED.update(build_seconds=round(seconds, 1), bundle_bytes=_tree_bytes(folder))
    try:
        yield Bundle(folder, seconds, dist)
    finally:
        shutil.rmtree(dist, ignore_errors=True)


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an appliance with its own per-user folders under ``home`` and no display."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND", "APPLIANCE_TOKEN")
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(user_dirs_env(home), HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Server:
    """A real appliance process (frozen or from source) on a free port, its output collected as it comes."""

    proc: subprocess.Popen
    started: float
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    url: str | None = None

    @classmethod
    def start(
        cls,
        command: list[str],
        home: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> Server:
        """Start ``command`` and wait (at most ``timeout`` s) for it to print the URL it serves on."""
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=cwd or home,
            env=env or isolated_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        server = cls(proc, started)
        for stream, lines in ((proc.stdout, server.stdout), (proc.stderr, server.stderr)):
            threading.Thread(target=_collect, args=(stream, lines), daemon=True).start()
        deadline = started + timeout
        while server.url is None:
            match = next(filter(None, map(URL_LINE.search, list(server.stdout))), None)
            if match:
                server.url = match.group(1)
            elif proc.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"{command} printed no URL (exit {proc.poll()}):\n{server.output}")
            else:
                time.sleep(0.02)
        return server

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=60)

    def first_predict(self, body: dict, timeout: float = 120) -> float:
        """Seconds from launch until ``POST /predict`` with ``body`` first answers 200 (polling every 20 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.post("/predict", body).status_code == 200:
                    return time.monotonic() - self.started
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"the appliance exited ({self.proc.returncode}):\n{self.output}")
            time.sleep(0.02)
        raise AssertionError(f"no successful /predict within {timeout} s:\n{self.output}")

    def wait_ready(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = requests.get(self.url + "/health", timeout=10).json()
            if health["status"] != "loading":
                return health
            time.sleep(0.05)
        raise AssertionError(f"still loading after {timeout} s:\n{self.output}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, and the exit status (the process is killed if it has not exited within ``timeout`` s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the appliance did not exit within {timeout} s of SIGTERM:\n{self.output}") from None
        time.sleep(0.1)  # let the reader threads take the last lines
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _collect(stream, lines: list[str]) -> None:
    lines.extend(stream)  # one line at a time, as they come


def pytest_terminal_summary(terminalreporter) -> None:
    if not MEASURED:
        return
    figures = dict(MEASURED)
    terminalreporter.section("installer measurements")
    for name, value in figures.items():
        if name.endswith("_bytes"):
            value = f"{value / 2**20:,.0f} MiB"
        elif name.endswith("_seconds"):
            value = f"{value:.1f} s"
        terminalreporter.write_line(f"{name}: {value}")
    artifacts = Path(os.environ.get("APPLIANCE_TEST_ARTIFACTS", "/tmp/appliance-test-artifacts"))
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "installer-measurements.json").write_text(json.dumps(figures, indent=2) + "\n")
    except OSError:
        pass
