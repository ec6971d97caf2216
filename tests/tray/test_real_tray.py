"""A real tray icon under Xvfb with trayer as the system tray, clicked and driven from the keyboard with xdotool.

First a harness (written to tmp_path) runs :class:`appliance.tray.Tray` with a fixed state and prints each
command it receives; then the real ``python -m appliance`` is driven the same way: the version chosen in its
menu must be the one that answers ``POST /predict``, and "Copy URL" must put its URL on the clipboard.
Screenshots of the open menus are saved under ``$APPLIANCE_TEST_ARTIFACTS`` (default
``/tmp/appliance-test-artifacts``).
"""

from __future__ import annotations

import re
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from appliance.tray.icon import STATUS_COLOURS

from ..conftest import user_dirs_env
from .conftest import PANEL_HEIGHT, TrayProcess, Window, XDesktop, wait_for

REPO = Path(__file__).resolve().parents[2]

HARNESS = textwrap.dedent(
    '''
    """Runs the appliance's tray with a fixed state and prints every command it receives, one per line."""

    import signal
    import threading

    from appliance.tray import ModelItem, Tray, TrayState, VersionItem

    chosen = {"digits": 2, "iris": 1}
    status = {"status": "degraded", "detail": "degraded: digits v4 failed to load"}


    def get_state():
        return TrayState(
            **status,
            url="http://127.0.0.1:8501",
            device="CPU (test harness)",
            backend="local",
            models=(
                ModelItem("digits", chosen["digits"], (
                    VersionItem(4, "END", error="Failed to load SavedModel: saved_model.pb is truncated"),
                    VersionItem(3, "LOADING"),
                    VersionItem(2, "AVAILABLE", labels=("canary",)),
                    VersionItem(1, "AVAILABLE", labels=("stable",)),
                    VersionItem(0, "END"),
                )),
                ModelItem("iris", chosen["iris"], (VersionItem(1, "AVAILABLE"),)),
            ),
            start_at_login=False,
        )


    class PrintingCommands:
        def switch_version(self, model, version):
            print("switch_version", model, version, flush=True)
            chosen[model] = version
            status.update(status="ready", detail="ready: 2 models")
            threading.Thread(target=tray.refresh).start()  # as the application does: from another thread

        def open_docs(self):
            print("open_docs", flush=True)

        def copy_url(self):
            print("copy_url", flush=True)

        def open_models_folder(self):
            print("open_models_folder", flush=True)

        def view_logs(self):
            print("view_logs", flush=True)

        def set_start_at_login(self, enabled):
            print("set_start_at_login", enabled, flush=True)

        def quit(self):
            print("quit", flush=True)
            tray.stop()


    def on_sigint(number, frame):
        print("SIGINT", flush=True)
        tray.stop()


    signal.signal(signal.SIGINT, on_sigint)  # the tray must keep it (pystray resets SIGINT to its default)
    tray = Tray(get_state, PrintingCommands())
    print("backend", tray.backend, flush=True)
    tray.run()
    print("stopped", flush=True)
    '''
)


def start_harness(desktop: XDesktop, tmp_path: Path, backend: str) -> TrayProcess:
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    env = {**desktop.env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    if backend != "appindicator":  # the appindicator backend is what the tray picks by itself
        env["PYSTRAY_BACKEND"] = backend
    return TrayProcess([sys.executable, str(harness)], env)


def icon_colour(screenshot: Path, icon: Window) -> str:
    """The status whose colour covers most of the tray icon in a screenshot."""
    with Image.open(screenshot) as image:
        box = image.convert("RGB").crop((icon.x, icon.y, icon.x + icon.width, icon.y + icon.height))
    pixels = np.asarray(box, dtype=int)

    def share(colour):
        return int((np.abs(pixels - colour).max(axis=-1) < 40).sum())

    return max(STATUS_COLOURS, key=lambda status: share(STATUS_COLOURS[status]))


def open_digits_submenu(desktop: XDesktop, pid: int, icon) -> None:
    """Open the menu, then the first model's submenu, from the keyboard."""
    desktop.open_menu(pid, icon)
    desktop.keys("Down", "Right")
    wait_for(lambda: len(desktop.menu_windows(pid)) >= 2, 10, "the digits submenu to open")


def close_menus(desktop: XDesktop, pid: int) -> None:
    desktop.keys("Escape", "Escape")
    wait_for(lambda: not desktop.menu_windows(pid), 10, "the menus to close")


def quit_from_menu(desktop: XDesktop, pid: int, icon) -> None:
    """Quit is the menu's last item: Up from an open menu selects it."""
    desktop.open_menu(pid, icon)
    desktop.keys("Up", "Return")


@pytest.mark.parametrize("backend", ["appindicator", "gtk"])
def test_harness_tray_sends_the_chosen_version(x_desktop, tmp_path, backend):
    tray = start_harness(x_desktop, tmp_path, backend)
    try:
        assert tray.wait_for_line(r"^backend (\w+)$", 30).group(1) == backend
        icon = x_desktop.icon_window(tray.pid)

        open_digits_submenu(x_desktop, tray.pid, icon)  # digits — v2 ▸ v4 failed, v3 loading, (v2), v1
        shot = x_desktop.screenshot(f"tray-menu-{backend}")
        assert icon_colour(shot, icon) == "degraded"
        x_desktop.keys("Down", "Return")  # the disabled versions are skipped: v2, then v1
        tray.wait_for_line(r"^switch_version digits 1$", 10)

        open_digits_submenu(x_desktop, tray.pid, icon)  # now "digits — v1", v1 checked, and status "ready"
        shot = x_desktop.screenshot(f"tray-menu-{backend}-after-switch")
        assert icon_colour(shot, icon) == "ready"
        close_menus(x_desktop, tray.pid)

        quit_from_menu(x_desktop, tray.pid, icon)
        tray.wait_for_line(r"^quit$", 10)
        assert tray.wait(15) == 0, tray.output
        assert tray.lines[-1] == "stopped", tray.output
        assert "Traceback" not in tray.output, tray.output  # the teardown error is swallowed
    finally:
        tray.stop()


@pytest.mark.parametrize("backend", ["appindicator", "gtk"])
def test_a_sigint_handler_installed_before_run_still_runs(x_desktop, tmp_path, backend):
    tray = start_harness(x_desktop, tmp_path, backend)
    try:
        tray.wait_for_line(r"^backend ", 30)
        x_desktop.icon_window(tray.pid)  # the loop is running
        tray.proc.send_signal(signal.SIGINT)
        tray.wait_for_line(r"^SIGINT$", 10)
        assert tray.wait(15) == 0, tray.output
        assert tray.lines[-1] == "stopped", tray.output
    finally:
        tray.stop()


def test_stop_and_refresh_before_run_are_kept_until_the_loop_runs(x_desktop):
    """The application may fail (or quit) between creating the tray and running it: run() then returns at once."""
    code = """
from appliance.tray import Tray, TrayState
state = TrayState("loading", "loading models", "http://127.0.0.1:1", "CPU", "local", (), False)
tray = Tray(lambda: state, None)
tray.refresh()
tray.stop()
tray.run()
print("stopped", flush=True)
"""
    tray = TrayProcess([sys.executable, "-c", code], {**x_desktop.env, "PYTHONPATH": str(REPO)})
    try:
        assert tray.wait(20) == 0, tray.output
        assert tray.lines[-1] == "stopped", tray.output
    finally:
        tray.stop()


def predicted_version(url: str) -> int | None:
    response = requests.post(url + "/predict", json={"input": [[0.0] * 64]}, timeout=30)
    return response.json().get("version") if response.status_code == 200 else None


def test_choosing_a_version_in_the_real_apps_tray_changes_what_predict_serves(x_desktop, tmp_path):
    env = {**x_desktop.env, **user_dirs_env(tmp_path), "PYTHONUNBUFFERED": "1"}  # XDG_* folders in tmp_path
    app = TrayProcess([sys.executable, "-m", "appliance", "--rest_api_port", "0", "--port", "0"], env, cwd=REPO)
    try:
        url = app.wait_for_line(r"serving on (http://\S+)", 120).group(1)
        wait_for(
            lambda: requests.get(url + "/health", timeout=10).json()["status"] != "loading",
            120,
            "the bundled models to load",
        )
        assert predicted_version(url) == 2  # the newest version is chosen at first
        icon = x_desktop.icon_window(app.pid)

        open_digits_submenu(x_desktop, app.pid, icon)  # digits — v2 ▸ (v2), v1
        x_desktop.screenshot("app-tray-menu")
        x_desktop.keys("Down", "Return")
        wait_for(lambda: predicted_version(url) == 1, 60, "POST /predict to answer with version 1")

        open_digits_submenu(x_desktop, app.pid, icon)
        x_desktop.screenshot("app-tray-menu-after-switch")
        close_menus(x_desktop, app.pid)

        x_desktop.open_menu(app.pid, icon)
        x_desktop.keys("Up", "Up", "Up", "Up", "Up", "Up", "Return")  # Quit, Start at login, ..., Copy URL
        wait_for(lambda: x_desktop.clipboard() == url, 10, f"{url} on the clipboard")
        x_desktop.open_menu(app.pid, icon)
        x_desktop.keys("Up", "Up", "Up", "Up", "Up", "Return")  # ..., Open models folder, Copy gRPC address
        grpc_address = app.wait_for_line(r"gRPC on (\S+)", 10).group(1)
        wait_for(lambda: x_desktop.clipboard() == grpc_address, 10, f"{grpc_address} on the clipboard")

        quit_from_menu(x_desktop, app.pid, icon)
        assert app.wait(60) == 0, app.output
    finally:
        app.stop()

    # Restarted, the app keeps the version picked in the menu; SIGTERM ends it cleanly with the tray up.
    again = TrayProcess([sys.executable, "-m", "appliance", "--rest_api_port", "0", "--port", "0"], env, cwd=REPO)
    try:
        url = again.wait_for_line(r"serving on (http://\S+)", 120).group(1)
        wait_for(
            lambda: requests.get(url + "/health", timeout=10).json()["status"] != "loading",
            120,
            "the bundled models to load",
        )
        assert predicted_version(url) == 1
        x_desktop.icon_window(again.pid)
        again.proc.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0, again.output
        assert "Traceback" not in again.output
    finally:
        again.stop()


def test_the_tray_icon_shows_loading_before_tensorflow_is_imported(x_desktop, tmp_path):
    """TensorFlow's import (seconds) happens behind the icon: the icon is up first, and /health says loading."""
    env = {**x_desktop.env, **user_dirs_env(tmp_path), "PYTHONUNBUFFERED": "1"}
    app = TrayProcess(
        [sys.executable, "-m", "appliance", "--rest_api_port", "0", "--port", "0", "--log_level", "INFO"], env, cwd=REPO
    )
    try:
        shown = app.wait_for_line(r"tray icon shown (\S+) s after launch", 120)
        url = re.search(r"serving on (http://\S+)", app.output).group(1)
        x_desktop.icon_window(app.pid)
        device = app.wait_for_line(r"device: (.+)", 120)
        assert app.output.index(shown.group(0)) < app.output.index(device.group(0))
        wait_for(
            lambda: requests.get(url + "/health", timeout=10).json()["status"] != "loading",
            120,
            "the bundled models to load",
        )
        assert requests.get(url + "/health", timeout=10).json()["device"]["type"] in ("CPU", "GPU")
        assert predicted_version(url) == 2
        app.proc.send_signal(signal.SIGTERM)
        assert app.wait(60) == 0, app.output
    finally:
        app.stop()


def served_models(url: str) -> list[dict]:
    """The models the tray lists, in its order, as /health describes them."""
    return [m for m in requests.get(url + "/health", timeout=10).json()["models"] if not m["unloaded"]]


def recorded_predict_requests(log_root: Path, model: str) -> int:
    from appliance.serving.request_log import RequestLog, read_records

    return sum(1 for _ in read_records(RequestLog(root=log_root).files(model)))


def test_record_compare_and_switch_through_the_real_apps_tray(x_desktop, tmp_path):
    """The issue's tray flow: record digits' requests, compare v1 with the chosen v2, read the summary, switch."""
    env = {**x_desktop.env, **user_dirs_env(tmp_path), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "appliance", "--rest_api_port", "0", "--port", "0", "--log_level", "INFO"]
    app = TrayProcess(args, env, cwd=REPO)
    try:
        url = app.wait_for_line(r"serving on (http://\S+)", 120).group(1)
        wait_for(
            lambda: requests.get(url + "/health", timeout=10).json()["status"] != "loading",
            120,
            "the bundled models to load",
        )
        models = served_models(url)
        names = [m["name"] for m in models]
        digits = models[names.index("digits")]
        assert digits["chosen_version"] == 2
        # The keyboard counts the enabled items: each model, then "Record requests"; in digits' submenu its
        # available versions (radios), then "Compare with the chosen version", later "Switch to v1".
        available = [v["version"] for v in digits["versions"] if v["state"] == "AVAILABLE"]
        others = [v for v in available if v != 2]
        icon = x_desktop.icon_window(app.pid)

        x_desktop.open_menu(app.pid, icon)
        x_desktop.keys(*["Down"] * (len(names) + 1), "Right", *["Down"] * names.index("digits"), "Return")
        rng = np.random.default_rng(20)
        for _ in range(50):
            body = {"model": "digits", "input": rng.uniform(0, 16, (1, 64)).tolist()}
            assert requests.post(url + "/predict", json=body, timeout=30).status_code == 200
        log_root = tmp_path / "data" / "appliance" / "request-log"
        wait_for(lambda: recorded_predict_requests(log_root, "digits") == 50, 30, "the 50 requests to be recorded")

        open_digits_submenu_of(x_desktop, app.pid, icon, names.index("digits"))
        x_desktop.keys(*["Down"] * len(available), "Right")  # digits ▸ Compare with the chosen version ▸
        wait_for(lambda: len(open_menus(x_desktop, app.pid)) >= 3, 10, "the compare submenu to open")
        x_desktop.keys(*["Down"] * others.index(1), "Return")  # ▸ v1

        def comparison():
            return requests.get(url + "/v1/appliance/models/digits/compare", timeout=10).json()

        seen = wait_for(lambda: (c := comparison())["state"] != "none" and c, 30, "the comparison to start")
        assert (seen["version"], seen["against"], seen["total"]) == (1, 2, 50)
        done = wait_for(lambda: (c := comparison())["state"] != "running" and c, 120, "the comparison to finish")
        assert done["state"] == "done" and done["done"] == 50 and done["summary"].startswith("v1 ")
        # What the tray shows is the summary the application logs and the API gives.
        logged = app.wait_for_line(r"compared digits v1 with v2: (.+)$", 10).group(1)
        assert logged == done["summary"]

        open_digits_submenu_of(x_desktop, app.pid, icon, names.index("digits"))
        shot = x_desktop.screenshot("compare-summary")
        assert shot.stat().st_size > 0
        x_desktop.keys(*["Down"] * (len(available) + 1), "Return")  # past the radios and Compare: Switch to v1
        wait_for(lambda: predicted_version(url) == 1, 60, "POST /predict to answer with version 1")

        quit_from_menu(x_desktop, app.pid, icon)
        assert app.wait(60) == 0, app.output
        assert "Traceback" not in app.output, app.output
    finally:
        app.stop()


def open_digits_submenu_of(desktop: XDesktop, pid: int, icon, index: int) -> None:
    """Open the menu, then the submenu of the model at ``index``, from the keyboard."""
    desktop.open_menu(pid, icon)
    desktop.keys(*["Down"] * (index + 1), "Right")
    wait_for(lambda: len(desktop.menu_windows(pid)) >= 2, 10, "the model's submenu to open")


def open_menus(desktop: XDesktop, pid: int) -> list[Window]:
    """The open (sub)menus of process ``pid``, also a one-item submenu (lower than menu_windows counts)."""
    return [w for w in desktop.visible_windows(pid) if w.y >= PANEL_HEIGHT - 2 and w.height >= 20]
