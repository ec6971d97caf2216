"""Whether a tray can be shown: tray_unavailable_reason() never crashes and says why not in a few words.

pystray picks its backend once per process, when it is imported, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import sys
import appliance.tray
assert "pystray" not in sys.modules, "importing appliance.tray must not import pystray"
reason = appliance.tray.tray_unavailable_reason()
print(reason if reason else "available: " + sys.modules["pystray"].Icon.__module__)
"""


def probe(env: dict[str, str]) -> str:
    """What tray_unavailable_reason() says in a fresh interpreter with ``env``."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def headless_env(**extra: str) -> dict[str, str]:
    hidden = ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND")
    return {**{k: v for k, v in os.environ.items() if k not in hidden}, **extra}


def unused_display() -> str:
    number = next(n for n in range(99, 999) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    return f":{number}"


def test_no_display_is_a_reason_not_a_crash():
    assert probe(headless_env()) == "no display (DISPLAY and WAYLAND_DISPLAY are unset)"


def test_a_display_that_does_not_answer_is_a_reason():
    reason = probe(headless_env(DISPLAY=unused_display()))
    assert reason.startswith("pystray's AppIndicator/GTK backends cannot be used (its xorg backend has no menus): ")


def test_the_dummy_backend_cannot_show_a_tray(x_desktop):
    assert probe({**x_desktop.env, "PYSTRAY_BACKEND": "dummy"}) == "pystray's dummy backend cannot show a tray"


def test_a_desktop_with_a_tray_can_show_one_with_the_appindicator_backend(x_desktop):
    assert probe(x_desktop.env) == "available: pystray._appindicator"


def test_pystray_backend_is_honoured(x_desktop):
    assert probe({**x_desktop.env, "PYSTRAY_BACKEND": "gtk"}) == "available: pystray._gtk"


def test_the_xorg_backend_has_no_menus(x_desktop):
    assert probe({**x_desktop.env, "PYSTRAY_BACKEND": "xorg"}) == "pystray's xorg backend has no menus"


def test_no_session_bus_is_a_reason(x_desktop, tmp_path):
    env = {**x_desktop.env, "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
    assert probe(env).startswith("no D-Bus session bus: ")


def test_tensorflow_still_imports_once_gtk_is_up_and_the_environment_is_as_it_was(x_desktop):
    """GTK's OpenGL probe would load Mesa's libLLVM, and TensorFlow's own LLVM then crashes on import."""
    code = (
        PROBE
        + """
import os
assert "GDK_GL" not in os.environ and "PYSTRAY_BACKEND" not in os.environ, "environment changed"
import tensorflow
print("tensorflow imported")
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**x_desktop.env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["available: pystray._appindicator", "tensorflow imported"]
