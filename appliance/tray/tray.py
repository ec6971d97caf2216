"""The tray icon: a pystray icon showing the application's state, with the menu that sends its commands.

    tray = Tray(app.tray_state, app)    # raises TrayUnavailable when no tray can be shown
    app.subscribe(tray.refresh)         # any thread: redraw icon, title and menu from app.tray_state()
    app.on_quit(tray.stop)              # any thread: end run()
    app.on_notification(tray.notify)    # any thread: a desktop notification, where the desktop shows them
    tray.run()                          # on the main thread; blocks until stop()

With pystray's GTK and AppIndicator backends the icon lives in a GLib main loop on the thread that calls
:meth:`Tray.run`: :meth:`Tray.refresh` and :meth:`Tray.stop` only queue work for that loop, so any thread may
call them, even before ``run()`` has started the loop. Commands from the menu are called on that thread too.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from .backend import gui_caller, load_pystray
from .icon import draw_icon
from .state import TrayCommands, TrayState

log = logging.getLogger(__name__)

ICON_NAME = "appliance"


def tray_title(state: TrayState) -> str:
    """The tooltip: "appliance — ready: 2 models"."""
    return f"{ICON_NAME} — {state.detail}"


class Tray:
    """A tray icon for the application: shows ``get_state()`` and sends ``commands``."""

    def __init__(self, get_state: Callable[[], TrayState], commands: TrayCommands):
        pystray = load_pystray()
        from .menu import build_menu  # imports pystray: only once a backend is known to work

        self._get_state = get_state
        self._call_in_gui = gui_caller(pystray)
        self._lock = threading.Lock()
        self._refresh_pending = False
        self._stopping = False
        state = get_state()
        self._status = state.status
        self._icon = pystray.Icon(
            ICON_NAME, draw_icon(state.status), tray_title(state), build_menu(get_state, commands)
        )

    @property
    def backend(self) -> str:
        """The pystray backend in use, e.g. "appindicator" or "gtk"."""
        return type(self._icon).__module__.rpartition("._")[2]

    def run(self) -> None:
        """Show the icon and run the GUI loop until :meth:`stop`; call it on the main thread."""
        self._keep_sigint_handler()
        try:
            self._icon.run()
        except Exception:
            # pystray's GLib backends close a desktop notification on the way out, which fails where no
            # notification service runs (Xvfb, minimal desktops): harmless once stop() was asked for.
            if not self._stopping:
                raise
            log.debug("error while tearing the tray icon down (ignored)", exc_info=True)

    def refresh(self) -> None:
        """Redraw the icon, title and menu from ``get_state()``; safe from any thread, bursts coalesce."""
        with self._lock:
            if self._refresh_pending:
                return
            self._refresh_pending = True
        self._call_in_gui(self._apply_state)

    def notify(self, message: str) -> None:
        """Show ``message`` as a desktop notification where the backend has them; safe from any thread.

        Where no notification service runs (Xvfb, minimal desktops) nothing is shown and nothing fails: the
        GLib backends drop the failed D-Bus call, and any other backend's error is logged here.
        """
        if self._icon.HAS_NOTIFICATION:
            self._call_in_gui(lambda: self._notify(message))

    def _notify(self, message: str) -> None:
        try:
            self._icon.notify(message, ICON_NAME)
        except Exception:
            log.debug("no desktop notification could be shown", exc_info=True)

    def stop(self) -> None:
        """End :meth:`run`; safe from any thread (with the GLib backends also before ``run()`` starts the loop)."""
        self._stopping = True
        self._call_in_gui(self._icon.stop)

    def _apply_state(self) -> None:
        with self._lock:
            self._refresh_pending = False
        state = self._get_state()
        if state.status != self._status:
            self._status = state.status
            self._icon.icon = draw_icon(state.status)
        self._icon.title = tray_title(state)
        self._icon.update_menu()

    def _keep_sigint_handler(self) -> None:
        """Undo pystray's reset of SIGINT to the default action (which kills the process) once its loop runs."""
        handler = signal.getsignal(signal.SIGINT)
        if handler is not None and threading.current_thread() is threading.main_thread():
            self._call_in_gui(lambda: signal.signal(signal.SIGINT, handler))
