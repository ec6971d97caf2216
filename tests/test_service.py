"""The system service as systemd runs it, without systemd: the unit's own command line and environment.

The test reads ``ExecStart=``, ``Environment=`` and the ``*Directory=`` lines of ``installer/linux/appliance.service``,
gives the process the folders and ``$NOTIFY_SOCKET`` systemd would (under tmp_path), catches its readiness
messages on a datagram socket bound here, and drives it with the signals systemctl sends: SIGHUP for
``systemctl reload``, SIGTERM for ``systemctl stop``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from .conftest import MODELS, REPO, PredictLoad, wait_for

UNIT = REPO / "installer" / "linux" / "appliance.service"
IRIS_ROW = [[6.3, 3.3, 6.0, 2.5]]
# systemd.exec(5): where each *Directory= setting puts its folders, and the variable naming them
DIRECTORIES = {
    "ConfigurationDirectory": ("etc", "CONFIGURATION_DIRECTORY"),
    "StateDirectory": ("var/lib", "STATE_DIRECTORY"),
    "CacheDirectory": ("var/cache", "CACHE_DIRECTORY"),
    "RuntimeDirectory": ("run", "RUNTIME_DIRECTORY"),
}


def unit_service_section() -> list[tuple[str, str]]:
    """The (key, value) lines of the unit's [Service] section, in order."""
    lines, section = [], None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            lines.append((key, value))
    return lines


class ServiceRun:
    """The service started from the unit's lines, in a file system root of its own under ``root``; ``executable``
    stands for /usr/bin/appliance (default: this checkout's Python package)."""

    def __init__(self, root: Path, flags: str, executable: list[str] | None = None):
        self.root = root
        self.executable = executable or [sys.executable, "-m", "appliance"]
        service = unit_service_section()
        self.env = {
            "PATH": os.environ["PATH"],
            "LANG": "C.UTF-8",
            "HOME": str(root / "home"),  # must stay empty: the service uses no per-user folder
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        }
        (root / "home").mkdir()
        for key, value in service:
            if key == "Environment":
                name, _, assigned = value.partition("=")
                self.env[name] = assigned
            elif key in DIRECTORIES:
                base, variable = DIRECTORIES[key]
                folder = root / base / value
                folder.mkdir(parents=True, exist_ok=True)
                self.env[variable] = str(folder)
        self.config = Path(self.env["CONFIGURATION_DIRECTORY"])
        self.state = Path(self.env["STATE_DIRECTORY"])
        self.runtime = Path(self.env["RUNTIME_DIRECTORY"])
        self.runtime.chmod(0o755)  # RuntimeDirectoryMode=, as systemd makes it
        environment_file = dict(service)["EnvironmentFile"]
        assert environment_file.lstrip("-") == "/etc/appliance/environment"
        (self.config / "environment").write_text(f"APPLIANCE_FLAGS={flags}\n")
        self.env["APPLIANCE_FLAGS"] = flags  # what systemd reads from that file
        self.exec_start = dict(service)["ExecStart"]
        self.messages: list[str] = []
        self._socket_name = f"appliance-test-{os.getpid()}-{id(self)}"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind("\0" + self._socket_name)
        self.env["NOTIFY_SOCKET"] = "@" + self._socket_name
        self.proc: subprocess.Popen | None = None
        self.stderr_lines: list[str] = []

    def command(self) -> list[str]:
        """ExecStart= as systemd expands it: ``$NAME`` becomes the variable's words."""
        words = []
        for word in shlex.split(self.exec_start):
            if word.startswith("$"):
                words += self.env.get(word[1:], "").split()
            elif word == "/usr/bin/appliance":
                words += self.executable
            else:
                words.append(word)
        return words

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command(), cwd="/", env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._read_stderr, daemon=True).start()
        threading.Thread(target=self._receive, daemon=True).start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def _receive(self) -> None:
        while True:
            try:
                self.messages.append(self._notify.recv(4096).decode())
            except OSError:
                return

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def wait_message(self, field: str, after: int = 0, timeout: float = 120, exited: bool = False) -> int:
        """The index of the first message from ``after`` on holding the line ``field`` (e.g. "READY=1"); the
        process must run meanwhile unless it has ``exited`` on purpose (its last messages may still be arriving)."""

        def found():
            for index in range(after, len(self.messages)):
                if field in self.messages[index].split("\n"):
                    return index + 1  # truthy for wait_for
            assert exited or self.proc.poll() is None, f"the service exited ({self.proc.returncode}):\n{self.stderr}"
            return None

        index = wait_for(found, timeout)
        assert index, f"no {field} message in time: {self.messages}\n{self.stderr}"
        return index - 1

    def url(self) -> str:
        return json.loads((self.runtime / "appliance.json").read_text())["url"]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._notify.close()


@pytest.fixture
def service_root(tmp_path):
    runs: list[ServiceRun] = []

    def start(flags: str = "--rest_api_port 0 --port 0") -> ServiceRun:
        run = ServiceRun(tmp_path, flags)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


def models_config(models: dict[str, tuple[Path, int]]) -> str:
    """A TF Serving models.config serving version ``v`` of each ``name: (base_path, v)``."""
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" '
        f"model_version_policy {{ specific {{ versions: {version} }} }} }}\n"
        for name, (path, version) in models.items()
    )
    return f"model_config_list {{\n{entries}}}\n"


def predict(url: str, model: str, version: int | None = None) -> requests.Response:
    at = f"/versions/{version}" if version else ""
    return requests.post(f"{url}/v1/models/{model}{at}:predict", json={"instances": IRIS_ROW}, timeout=30)


def test_the_unit_runs_notifies_reloads_without_dropping_requests_and_stops(service_root, tmp_path):
    service = service_root()
    (service.config / "models.config").write_text(models_config({"flower": (MODELS / "iris", 1)}))
    (service.config / "settings.toml").write_text("require_token_for_control = true\n")
    service.start()

    ready = service.wait_message("READY=1")
    assert any(m.startswith("STATUS=") for m in service.messages[:ready]), service.messages  # said while loading
    assert "STATUS=serving 3 models on http://127.0.0.1:" in service.messages[ready]
    url = service.url()
    health = requests.get(url + "/health", timeout=10).json()
    assert {m["name"] for m in health["models"]} == {"digits", "iris", "flower"}  # bundled ones, and the config's
    assert all(v["state"] == "AVAILABLE" for m in health["models"] for v in m["versions"]), health

    # The system-wide discovery file: every user may read it; it names the URL, never the token.
    discovery = service.runtime / "appliance.json"
    assert stat.S_IMODE(discovery.stat().st_mode) == 0o644
    assert json.loads(discovery.read_text())["pid"] == service.proc.pid
    # settings.toml in the configuration folder was read: the control API needs the token made beside it.
    token_file = service.config / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in discovery.read_text()
    chosen = f"{url}/v1/appliance/models/iris/chosen"
    assert requests.put(chosen, json={"version": 1}, timeout=10).status_code == 401
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.put(chosen, json={"version": 1}, headers=headers, timeout=10).status_code == 200
    assert wait_for(lambda: (service.state / "preferences.json").is_file())  # the service's choices are state

    # The expected answers come from the same server's TF Serving API: version 2 of the bundled iris.
    expected_v2 = predict(url, "iris", 2).json()["predictions"]
    assert predict(url, "flower").json()["predictions"] != expected_v2

    assert not requests.get(f"{url}/v1/appliance/models/digits/shadow", timeout=10).json()["active"]
    # systemctl reload: a changed models.config and settings.toml are applied while clients keep predicting.
    body = {"model": "flower", "input": IRIS_ROW}
    with PredictLoad(url, clients=4, body=body) as load:
        assert wait_for(lambda: len(load.versions) >= 8)
        (service.config / "models.config").write_text(
            models_config({"flower": (MODELS / "iris", 2), "digits8": (MODELS / "digits", 1)})
        )
        (service.config / "settings.toml").write_text(
            "request_log_sampling = { flower = 1.0 }\nshadow = { digits = { version = 1, share = 1.0 } }\n"
        )
        before = len(service.messages)
        service.proc.send_signal(signal.SIGHUP)
        reloading = service.wait_message("RELOADING=1", before)
        reloaded = service.wait_message("READY=1", reloading)
        answered = len(load.versions)
        assert wait_for(lambda: len(load.versions) >= answered + 8)
    assert load.failures == []
    assert set(load.versions[: load.clients]) == {1} and set(load.answers_since(answered)) == {2}
    assert "serving 4 models" in service.messages[reloaded]
    assert predict(url, "flower").json()["predictions"] == expected_v2
    digits8 = requests.get(f"{url}/v1/models/digits8", timeout=10).json()
    assert digits8["model_version_status"][0]["state"] == "AVAILABLE", digits8
    # request_log_sampling and shadow applied at once; require_token_for_control (gone from the file) needs a
    # restart.
    assert wait_for(lambda: any((service.state / "request-log" / "flower").glob("*")))
    shadow = requests.get(f"{url}/v1/appliance/models/digits/shadow", timeout=10).json()
    assert shadow["active"] and shadow["version"] == 1, shadow
    assert "require_token_for_control changed: it takes effect at the next restart" in service.stderr

    # A broken models.config is refused on reload: the service says so and serves as before.
    (service.config / "models.config").write_text("model_config_list { config { name: ")
    before = len(service.messages)
    service.proc.send_signal(signal.SIGHUP)
    refused = service.wait_message("READY=1", service.wait_message("RELOADING=1", before))
    assert "reload refused" in service.messages[refused]
    assert predict(url, "flower").status_code == 200

    # systemctl stop: STOPPING=1, a clean exit, and the discovery file withdrawn.
    before = len(service.messages)
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(60) == 0, service.stderr
    assert service.wait_message("STOPPING=1", before, exited=True) >= before
    assert not discovery.exists()
    assert "Traceback" not in service.stderr
    assert not any((tmp_path / "home").iterdir()), list((tmp_path / "home").rglob("*"))


def test_desktop_mode_is_refused_where_the_service_environment_is_set(tmp_path):
    env = {**os.environ, "APPLIANCE_SYSTEM": "1", "CONFIGURATION_DIRECTORY": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--headless"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "appliance: error: APPLIANCE_SYSTEM=1 is for `appliance serve`, the system service; "
        "unset it to run the desktop app"
    )


def test_a_reload_asked_for_while_starting_is_carried_out_once_the_models_loaded(service_root):
    service = service_root()
    service.start()
    service.wait_message("STATUS=starting: importing TensorFlow")  # said once SIGHUP no longer ends the process
    service.proc.send_signal(signal.SIGHUP)
    ready = service.wait_message("READY=1")
    assert not any("RELOADING=1" in m.split("\n") for m in service.messages[:ready])
    service.wait_message("READY=1", service.wait_message("RELOADING=1", ready))
    assert requests.get(service.url() + "/health", timeout=10).json()["status"] == "ready"
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(60) == 0, service.stderr
