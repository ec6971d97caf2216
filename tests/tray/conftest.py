"""A real X desktop for tray tests: Xvfb, a session D-Bus and trayer as the system tray, driven with xdotool.

    def test_x(x_desktop):
        proc = TrayProcess([sys.executable, "harness.py"], x_desktop.env)
        icon = x_desktop.icon_window(proc.pid)       # the tray icon, once trayer has embedded it
        x_desktop.open_menu(proc.pid, icon)
        x_desktop.screenshot("menu")                 # -> $APPLIANCE_TEST_ARTIFACTS/menu.png

Every process started here is stopped afterwards, also when a test fails; every wait is bounded.
The tests are skipped, saying why, only when a binary they need is missing (CI installs them all).
"""

from __future__ import annotations

import importlib.util
import os
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARIES = ("Xvfb", "dbus-daemon", "trayer", "xdotool", "import", "xclip")
PANEL_HEIGHT = 32
ARTIFACTS = Path(os.environ.get("APPLIANCE_TEST_ARTIFACTS", "/tmp/appliance-test-artifacts"))


class TimedOut(AssertionError):
    """A bounded wait ran out."""


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """``condition()``'s first truthy value, polling for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def read_line(stream, timeout: float, what: str) -> str:
    """One line from a child's pipe, waiting at most ``timeout`` seconds for it."""
    if not select.select([stream], [], [], timeout)[0]:
        raise TimedOut(f"timed out after {timeout:g} s waiting for {what}")
    return stream.readline().strip()


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@dataclass(frozen=True)
class Window:
    id: str
    x: int
    y: int
    width: int
    height: int


class TrayProcess:
    """A child process whose stdout lines are collected as they come, to wait for a given one."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path | None = None):
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        """The first output line matching ``pattern`` (a regex), waiting at most ``timeout`` seconds."""
        regex = re.compile(pattern)

        def found():
            match = next(filter(None, map(regex.search, list(self.lines))), None)
            if match is None and not self._reader.is_alive():
                raise AssertionError(f"exited ({self.proc.poll()}) without printing {pattern!r}:\n{self.output}")
            return match

        try:
            return wait_for(found, timeout, f"{pattern!r} in the output")
        except TimedOut as error:
            raise TimedOut(f"{error}; output so far:\n{self.output}") from None

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        stop_process(self.proc)
        self._reader.join(10)


class XDesktop:
    """The display, its environment for children, and the few X operations the tray tests need."""

    def __init__(self, display: str, env: dict[str, str]):
        self.display = display
        self.env = env

    def xdotool(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=10)
        if check and result.returncode != 0:
            raise AssertionError(f"xdotool {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def visible_windows(self, pid: int) -> list[Window]:
        """The mapped windows of process ``pid`` (its tray icon, and its menus while they are open)."""
        windows = []
        for window_id in self.xdotool("search", "--onlyvisible", "--pid", str(pid), check=False).split():
            shell = self.xdotool("getwindowgeometry", "--shell", window_id, check=False)
            fields = dict(line.split("=", 1) for line in shell.split() if "=" in line)
            if {"X", "Y", "WIDTH", "HEIGHT"} <= fields.keys():
                windows.append(Window(window_id, *(int(fields[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))))
        return windows

    def icon_window(self, pid: int, timeout: float = 30) -> Window:
        """The tray icon of process ``pid``, once trayer has embedded it in its panel at the top of the screen."""

        def embedded():
            return next((w for w in self.visible_windows(pid) if w.y < PANEL_HEIGHT and w.width >= 16), None)

        return wait_for(embedded, timeout, f"the tray icon of process {pid} in trayer's panel")

    def menu_windows(self, pid: int) -> list[Window]:
        """The open (sub)menus of process ``pid``: its visible windows below the panel."""
        return [w for w in self.visible_windows(pid) if w.y >= PANEL_HEIGHT - 2 and w.height > 40]

    def open_menu(self, pid: int, icon: Window, timeout: float = 30, click_again_after: float = 5) -> Window:
        """Right-click the tray icon (both backends open the menu on it) and wait for the menu.

        A click that reaches the icon while its process is too busy to set up
        the menu's grab can be lost (seen once, on a loaded 2-core machine,
        with the frozen app): without a menu after ``click_again_after``
        seconds, the icon is clicked again, until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.xdotool("mousemove", "--window", icon.id, str(icon.width // 2), str(icon.height // 2), "click", "3")
            wait = min(click_again_after, max(deadline - time.monotonic(), 0))
            try:
                return wait_for(lambda: self.menu_windows(pid), wait, "the tray menu to open")[0]
            except TimedOut:
                if time.monotonic() >= deadline:
                    raise TimedOut(f"timed out after {timeout:g} s waiting for the tray menu to open") from None

    def keys(self, *names: str, pause: float = 0.15) -> None:
        """Press keys one at a time (the menus take the keyboard grab while open)."""
        for name in names:
            self.xdotool("key", name)
            time.sleep(pause)

    def clipboard(self) -> str:
        """The clipboard's text, "" when nothing owns it."""
        result = subprocess.run(
            ["xclip", "-o", "-selection", "clipboard"], env=self.env, capture_output=True, text=True, timeout=10
        )
        return result.stdout if result.returncode == 0 else ""

    def screenshot(self, name: str) -> Path:
        """The whole screen as ``$APPLIANCE_TEST_ARTIFACTS/<name>.png``."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, check=True, timeout=30)
        return path


def _start_xvfb(stack: ExitStack) -> str:
    """Xvfb on a display number it picks itself (``-displayfd``); returns ":N"."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(stop_process, proc)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = read_line(pipe, 20, "Xvfb to report its display number")
    if not number.isdigit():
        raise RuntimeError(f"Xvfb did not start (exit status {proc.poll()})")
    return f":{number}"


def _start_session_bus(stack: ExitStack, env: dict[str, str]) -> str:
    """A private session D-Bus (pystray's GTK backends connect to one); returns its address."""
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stack.callback(stop_process, proc)
    address = read_line(proc.stdout, 20, "dbus-daemon to print its address")
    if not address:
        raise RuntimeError(f"dbus-daemon did not start (exit status {proc.poll()})")
    return address


def _start_trayer(stack: ExitStack, env: dict[str, str]) -> None:
    """trayer as the system tray host, waiting until it owns the tray selection of screen 0."""
    from Xlib import X
    from Xlib.display import Display

    proc = subprocess.Popen(
        [
            "trayer",
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "request",
            "--height",
            str(PANEL_HEIGHT),
            "--transparent",
            "false",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(stop_process, proc)
    display = Display(env["DISPLAY"])
    try:
        selection = display.intern_atom("_NET_SYSTEM_TRAY_S0")
        wait_for(lambda: display.get_selection_owner(selection) != X.NONE, 20, "trayer to own the system tray")
    finally:
        display.close()


@pytest.fixture(scope="session")
def x_desktop():
    """Xvfb + session D-Bus + trayer, shared by the tray tests and torn down after them."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        packages = "xvfb, dbus-x11, trayer, xdotool, imagemagick, xclip"
        pytest.skip(f"real-tray tests need {', '.join(missing)} (Debian packages: {packages})")
    if importlib.util.find_spec("pystray") is None:  # not imported here: pystray needs a display to import
        pytest.skip("real-tray tests need pystray")
    with ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if k not in ("PYSTRAY_BACKEND", "WAYLAND_DISPLAY")}
        env["DISPLAY"] = _start_xvfb(stack)
        env["NO_AT_BRIDGE"] = "1"  # GTK would otherwise start an accessibility bus that outlives the test
        env["DBUS_SESSION_BUS_ADDRESS"] = _start_session_bus(stack, env)
        _start_trayer(stack, env)
        yield XDesktop(env["DISPLAY"], env)
