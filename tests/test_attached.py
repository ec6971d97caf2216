"""Finding the system service from the desktop side, and the tray state read from it.

The discovery file is a real one written under tmp_path (``$APPLIANCE_SYSTEM_RUNTIME_DIRECTORY``); the /health
probe talks to a real appliance (the shared bundled server) and to real HTTP servers that are not appliances.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import requests

from appliance import paths
from appliance.attached import AttachedService, Service, find_service, probe_health
from appliance.instance import Discovery, write_discovery

from .conftest import REPO, user_dirs_env
from .test_service import ServiceRun


@pytest.fixture
def system_runtime(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.SYSTEM_RUNTIME_ENV, str(tmp_path / "run"))
    monkeypatch.setenv(paths.SYSTEM_CONFIG_ENV, str(tmp_path / "etc"))
    return tmp_path / "run"


def discovery(url: str, pid: int) -> Discovery:
    return Discovery(url, 8501, pid, "test", "2026-01-01T00:00:00+00:00", "127.0.0.1:8500", 8500)


def test_the_system_discovery_file_is_found_whatever_this_process_mode(system_runtime, monkeypatch):
    monkeypatch.delenv(paths.SYSTEM_ENV, raising=False)
    assert paths.system_discovery_file() == system_runtime / "appliance.json"
    monkeypatch.delenv(paths.SYSTEM_RUNTIME_ENV)
    assert str(paths.system_discovery_file()) == "/run/appliance/appliance.json"


def test_a_discovery_file_naming_a_live_process_finds_the_service(system_runtime):
    write_discovery(paths.system_discovery_file(), discovery("http://127.0.0.1:18501", 1), mode=0o644)  # init: alive
    assert find_service(None) == Service("http://127.0.0.1:18501", "127.0.0.1:8500")


def test_a_discovery_file_naming_a_dead_process_is_ignored(system_runtime):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_discovery(paths.system_discovery_file(), discovery("http://127.0.0.1:18501", gone.pid), mode=0o644)
    assert find_service(None) is None


def test_an_appliance_answering_health_on_the_port_is_found(system_runtime, bundled_server):
    port = int(bundled_server.url.rsplit(":", 1)[1])
    assert find_service(port) == Service(f"http://127.0.0.1:{port}")
    assert probe_health(bundled_server.url) == requests.get(bundled_server.url + "/health", timeout=10).json()


class OtherProgram(http.server.BaseHTTPRequestHandler):
    """Another program on the port: answers every GET with ``self.server.answer``."""

    def do_GET(self):
        status, content_type, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "answer",
    [
        (200, "application/json", json.dumps({"status": "ok"}).encode()),  # another service's health check
        (200, "text/html", b"<html><body>hello</body></html>"),
        (404, "text/html", b"<h1>Not Found</h1>"),
    ],
)
def test_another_program_on_the_port_is_not_taken_for_the_service(system_runtime, answer):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OtherProgram)
    server.answer = answer
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert find_service(server.server_port) is None
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_listening_finds_nothing(system_runtime):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once closed
    assert find_service(port) is None


def test_the_attached_state_is_the_services_health(system_runtime, bundled_server):
    attached = AttachedService(Service(bundled_server.url))
    assert attached.read_only is None  # no token needed on loopback by default
    attached.poll()
    state = attached.tray_state()
    health = requests.get(bundled_server.url + "/health", timeout=10).json()
    assert state.attached and state.backend == "system service" and state.url == bundled_server.url
    assert [(m.name, m.chosen_version) for m in state.models] == [
        (m["name"], m["chosen_version"]) for m in health["models"] if not m["unloaded"]
    ]
    assert [[(v.version, v.state) for v in m.versions] for m in state.models] == [
        [(v["version"], v["state"]) for v in m["versions"]] for m in health["models"] if not m["unloaded"]
    ]
    assert state.device.startswith(f"{health['device']['type']} ({health['device']['name']})")
    assert state.status == health["status"] == "ready"
    assert not state.token_in_use  # no readable token here


def test_an_unreachable_service_is_said_and_polled_again(system_runtime):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    attached = AttachedService(Service(url))
    changes = []
    attached.subscribe(lambda: changes.append(attached.tray_state().detail))
    attached.poll()
    state = attached.tray_state()
    assert state.status == "error" and state.detail == f"service unreachable at {url}, retrying"
    assert state.models == ()
    attached.poll()
    assert len(changes) == 1  # told once, not at every poll


def test_without_a_display_the_desktop_app_says_the_service_runs_and_exits(tmp_path):
    """Found by its discovery file, then by /health alone on the port the app would take: exit 0, nothing served."""
    (tmp_path / "service").mkdir()
    service = ServiceRun(tmp_path / "service", "--rest_api_port 0 --port 0")
    try:
        service.start()
        service.wait_message("READY=1")
        url = service.url()
        port = url.rsplit(":", 1)[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", paths.SYSTEM_ENV)}
        env.update(user_dirs_env(tmp_path / "user"))
        nowhere = tmp_path / "nowhere"  # no discovery file there: only /health finds it
        for runtime, flags in ((service.runtime, ["--port", "0"]), (nowhere, ["--rest_api_port", port, "--port", "0"])):
            env[paths.SYSTEM_RUNTIME_ENV] = str(runtime)
            desktop = subprocess.run(
                [sys.executable, "-m", "appliance", *flags],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert desktop.returncode == 0, desktop.stderr
            assert desktop.stdout == f"appliance is running as a system service on {url}; nothing to start\n"
            assert not (tmp_path / "user" / "runtime" / "appliance" / "appliance.json").exists()
        assert service.proc.poll() is None
        assert requests.get(url + "/health", timeout=10).json()["status"] == "ready"
    finally:
        service.close()
