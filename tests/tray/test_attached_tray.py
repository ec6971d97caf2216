"""The desktop app launched while the system service runs: it shows a tray for the service and serves nothing.

The service is started from the unit's own lines as tests/test_service.py does (APPLIANCE_SYSTEM=1, its folders
under tmp_path, ``require_token_for_control = true`` so that switching needs its token); the desktop app
(``python -m appliance``, a user of its own) looks for it where ``$APPLIANCE_SYSTEM_RUNTIME_DIRECTORY`` and
``$APPLIANCE_SYSTEM_CONFIGURATION_DIRECTORY`` say, under Xvfb with trayer (tests/tray/conftest.py).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
import requests

from appliance import paths

from ..conftest import REPO, user_dirs_env
from ..test_service import ServiceRun
from .conftest import TrayProcess, XDesktop, wait_for


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    run = ServiceRun(tmp_path_factory.mktemp("service"), "--rest_api_port 0 --port 0")
    (run.config / "settings.toml").write_text("require_token_for_control = true\n")
    run.start()
    run.wait_message("READY=1")
    yield run
    run.close()


def health(url: str) -> dict:
    return requests.get(url + "/health", timeout=10).json()


def predicted_version(url: str) -> int:
    response = requests.post(url + "/predict", json={"model": "digits", "input": [[0.0] * 64]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["version"]


def chosen(url: str, model: str) -> int:
    return requests.get(f"{url}/v1/appliance/models/{model}/chosen", timeout=10).json()["chosen_version"]


def desktop_app(desktop: XDesktop, home: Path, service: ServiceRun, config_dir: Path) -> TrayProcess:
    env = {
        **desktop.env,
        **user_dirs_env(home),
        "PYTHONUNBUFFERED": "1",
        paths.SYSTEM_RUNTIME_ENV: str(service.runtime),
        paths.SYSTEM_CONFIG_ENV: str(config_dir),
    }
    env.pop(paths.SYSTEM_ENV, None)
    # Port 0: were the service not found, the app would serve on a port of its own and never say "attached".
    return TrayProcess([sys.executable, "-m", "appliance", "--rest_api_port", "0", "--port", "0"], env, cwd=REPO)


def listening_sockets(pid: int) -> set[str]:
    """The inodes of the TCP sockets process ``pid`` listens on (state 0A in /proc/net/tcp*)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                listening.add(fields[9])
    own = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            own.add(match.group(1))
    return own & listening


def open_model_submenu(desktop: XDesktop, pid: int, icon, index: int) -> None:
    desktop.open_menu(pid, icon)
    desktop.keys(*["Down"] * (index + 1), "Right")
    wait_for(lambda: len(desktop.menu_windows(pid)) >= 2, 10, "the model's submenu to open")


def close_from_menu(desktop: XDesktop, pid: int, icon) -> None:
    """ "Close (the service keeps running)" is the menu's last item: Up from an open menu selects it."""
    desktop.open_menu(pid, icon)
    desktop.keys("Up", "Return")


def test_the_desktop_app_shows_a_tray_for_the_running_service_and_switches_its_version(x_desktop, tmp_path, service):
    url = service.url()
    names = [m["name"] for m in health(url)["models"] if not m["unloaded"]]
    digits = next(m for m in health(url)["models"] if m["name"] == "digits")
    assert digits["chosen_version"] == 2 == predicted_version(url)
    app = desktop_app(x_desktop, tmp_path, service, service.config)  # the token is readable here
    try:
        line = app.wait_for_line(r"attached to the system service on (\S+?):? ", 60)
        assert line.group(1) == url and "read-only" not in line.string
        icon = x_desktop.icon_window(app.pid)
        assert listening_sockets(app.pid) == set()  # serves nothing
        assert not (tmp_path / "runtime" / "appliance" / "appliance.json").exists()  # no discovery of its own

        open_model_submenu(x_desktop, app.pid, icon, names.index("digits"))  # digits — v2 ▸ (v2), v1
        x_desktop.screenshot("attached-tray")
        x_desktop.keys("Down", "Return")
        wait_for(lambda: predicted_version(url) == 1, 60, "the service's POST /predict to answer with version 1")

        close_from_menu(x_desktop, app.pid, icon)
        assert app.wait(30) == 0, app.output
        assert "Traceback" not in app.output, app.output
    finally:
        app.stop()
    assert service.proc.poll() is None  # the service keeps serving
    assert predicted_version(url) == 1
    requests.put(  # as it was, for the next test
        f"{url}/v1/appliance/models/digits/chosen",
        json={"version": 2},
        headers={"Authorization": f"Bearer {(service.config / 'token').read_text().strip()}"},
        timeout=30,
    ).raise_for_status()


def test_without_the_token_the_tray_is_read_only_and_cannot_switch(x_desktop, tmp_path, service):
    url = service.url()
    assert requests.put(f"{url}/v1/appliance/models/digits/chosen", json={"version": 1}, timeout=10).status_code == 401
    unreadable = tmp_path / "etc"  # no token there: as for a user outside the appliance group
    unreadable.mkdir()
    before = chosen(url, "digits")
    app = desktop_app(x_desktop, tmp_path / "user", service, unreadable)
    try:
        line = app.wait_for_line(r"attached to the system service on (\S+?):? ", 60)
        assert line.group(1) == url and "(read-only)" in line.string
        icon = x_desktop.icon_window(app.pid)
        names = [m["name"] for m in health(url)["models"] if not m["unloaded"]]
        open_model_submenu(x_desktop, app.pid, icon, names.index("digits"))
        x_desktop.screenshot("attached-tray-read-only")
        x_desktop.keys("Down", "Return")  # the versions are greyed out: nothing to choose
        x_desktop.keys("Escape", "Escape")
        close_from_menu(x_desktop, app.pid, icon)
        assert app.wait(30) == 0, app.output
        assert "cannot switch" not in app.output  # no PUT was even tried
    finally:
        app.stop()
    assert chosen(url, "digits") == before
    assert service.proc.poll() is None


def test_when_the_service_stops_the_tray_says_so_and_keeps_waiting(x_desktop, tmp_path, service):
    """The module's last test: it stops the service."""
    url = service.url()
    app = desktop_app(x_desktop, tmp_path, service, service.config)
    try:
        app.wait_for_line(r"attached to the system service on ", 60)
        x_desktop.icon_window(app.pid)
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(60) == 0
        app.wait_for_line(rf"service unreachable at {re.escape(url)}, retrying", 30)
        assert app.proc.poll() is None  # still there, polling
        app.proc.send_signal(signal.SIGTERM)
        assert app.wait(30) == 0, app.output
        assert "Traceback" not in app.output, app.output
    finally:
        app.stop()
