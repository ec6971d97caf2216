"""The tray icon and menu: shows the application's state and sends it named commands, nothing more.

    reason = tray_unavailable_reason()      # None, or e.g. "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    if reason is None:
        tray = Tray(app.tray_state, app)    # app implements TrayCommands; tray_state() returns a TrayState
        tray.run()                          # main thread, until tray.stop() (from any thread)

Importing this package never imports pystray (which fails without a display): that happens in
:func:`tray_unavailable_reason` and :class:`Tray`. The tray never touches TensorFlow, HTTP or the model manager.
"""

from __future__ import annotations

from .backend import TrayUnavailable, load_pystray
from .state import ComparisonItem, ModelItem, TrayCommands, TrayState, VersionItem
from .tray import Tray

__all__ = [
    "ComparisonItem",
    "ModelItem",
    "Tray",
    "TrayCommands",
    "TrayState",
    "TrayUnavailable",
    "VersionItem",
    "tray_unavailable_reason",
]


def tray_unavailable_reason() -> str | None:
    """None when a tray with menus can be shown here, else a short reason why not; never raises."""
    try:
        load_pystray()
    except TrayUnavailable as reason:
        return str(reason)
    return None
