"""The macOS LaunchDaemon (``installer/macos/org.appliance.server.plist``) as launchd runs it, without launchd.

macOS cannot run here: the test reads the plist with plistlib, builds the command ``appliance service install``
writes into it (:func:`appliance.system_service.launch_daemon_plist`, with this checkout's Python for the app)
and runs its ``ProgramArguments`` with its ``EnvironmentVariables`` as a real process, its output going to a file
as ``StandardErrorPath`` sends it. The system folders, /Library/... on a Mac, are pointed under tmp_path by the
variables that override them. It then waits for readiness the way docs/service.md says for launchd (``appliance
service status --wait``), predicts, and stops the process with SIGTERM as ``launchctl bootout`` does.
"""

from __future__ import annotations

import json
import os
import plistlib
import signal
import subprocess
import sys

import requests

from appliance import paths, system_service

from .conftest import MODELS, REPO

PLIST = REPO / "installer" / "macos" / "org.appliance.server.plist"
SAMPLE = json.loads((MODELS / "digits" / "samples" / "serving_default.json").read_text())["instances"]


def test_the_plist_is_a_system_daemon_restarted_on_failure(monkeypatch):
    daemon = plistlib.loads(PLIST.read_bytes())
    assert daemon["Label"] == PLIST.stem == system_service.LAUNCHD_LABEL
    assert daemon["ProgramArguments"] == ["/Applications/appliance.app/Contents/MacOS/appliance", "serve"]
    assert daemon["UserName"] == daemon["GroupName"] == system_service.MACOS_USER
    assert daemon["RunAtLoad"] is True
    assert daemon["KeepAlive"] == {"SuccessfulExit": False}  # restarted after a failure, not after a stop
    assert daemon["ThrottleInterval"] >= 5
    monkeypatch.setattr(sys, "platform", "darwin")  # where the service's log folder is on a Mac
    assert daemon["StandardErrorPath"] == str(paths.system_dir_defaults()["logs"] / "appliance.log")
    for name, value in daemon["EnvironmentVariables"].items():
        monkeypatch.setenv(name, value)
    assert paths.system_mode()


def test_the_daemons_command_and_environment_serve_and_stop(tmp_path):
    program = [sys.executable, "-m", "appliance"]  # for /Applications/appliance.app/Contents/MacOS/appliance
    daemon = plistlib.loads(system_service.launch_daemon_plist(program, ["--rest_api_port", "0", "--port", "0"]))
    folders = {
        "CONFIGURATION_DIRECTORY": tmp_path / "support",
        "STATE_DIRECTORY": tmp_path / "support",
        "CACHE_DIRECTORY": tmp_path / "caches",
        "LOGS_DIRECTORY": tmp_path / "logs",
        "RUNTIME_DIRECTORY": tmp_path / "support" / "run",
    }
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),  # stays empty: the daemon uses no user's folder
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        **daemon["EnvironmentVariables"],
        **{variable: str(folder) for variable, folder in folders.items()},
    }
    (tmp_path / "home").mkdir()
    log_file = tmp_path / "logs" / "appliance.log"
    log_file.parent.mkdir()
    with open(log_file, "wb") as output:
        proc = subprocess.Popen(daemon["ProgramArguments"], cwd="/", env=env, stdout=output, stderr=output)
    try:
        status = subprocess.run(
            [sys.executable, "-m", "appliance", "service", "status", "--wait", "120"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert status.returncode == 0, f"{status.stderr}\n{log_file.read_text()}"
        url = json.loads((tmp_path / "support" / "run" / "appliance.json").read_text())["url"]
        assert status.stdout.startswith(f"ready at {url}: ") and "digits" in status.stdout

        answer = requests.post(f"{url}/predict", json={"model": "digits", "input": SAMPLE}, timeout=30)
        assert answer.status_code == 200, answer.text
        # The expected class from the same server's TF Serving API, for the version /predict chose.
        chosen = answer.json()["version"]
        tfs = requests.post(
            f"{url}/v1/models/digits/versions/{chosen}:predict", json={"instances": SAMPLE}, timeout=30
        ).json()
        assert answer.json()["predictions"]["class"] == [p["class"] for p in tfs["predictions"]]
        assert (tmp_path / "support" / "token").exists() is False  # loopback: no token needed, none made

        proc.send_signal(signal.SIGTERM)  # launchctl bootout
        assert proc.wait(60) == 0  # a successful exit: KeepAlive does not start it again
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    said = log_file.read_text()
    assert "serving on http://127.0.0.1:" in said and "Traceback" not in said
    assert not (tmp_path / "support" / "run" / "appliance.json").exists()
    assert not any((tmp_path / "home").iterdir()), list((tmp_path / "home").rglob("*"))
