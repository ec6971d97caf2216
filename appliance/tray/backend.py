"""Pick and import pystray's backend, and say why no tray with menus can be shown when none can.

    pystray = load_pystray()          # raises TrayUnavailable("no display: ...") on a headless Linux box
    call_in_gui = gui_caller(pystray)
    call_in_gui(icon.update_menu)     # runs on the tray's GUI thread, whichever thread calls it

Importing pystray picks its backend once, and raises (not always ImportError) when there is no display, so
pystray is imported here only, lazily, inside :func:`load_pystray`, and GTK with OpenGL off (see
:func:`_import_pystray`: its OpenGL clashes with TensorFlow).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType

_LINUX_PREFERENCE = ("appindicator", "gtk")
_GLIB_BACKENDS = ("pystray._appindicator", "pystray._gtk")


class TrayUnavailable(Exception):
    """No tray with menus can be shown here; the message says why, in a few words."""


def load_pystray() -> ModuleType:
    """Import pystray with a backend that can show a tray with menus, or raise :class:`TrayUnavailable`.

    On Linux the AppIndicator backend is preferred (it falls back to an XEmbed icon when the desktop has no
    StatusNotifier host), then GTK; ``PYSTRAY_BACKEND``, when set, is honoured as pystray documents. pystray's
    ``xorg`` backend has no menus and its ``dummy`` backend cannot run: neither can carry this tray.
    """
    if "pystray" in sys.modules:
        return _usable(sys.modules["pystray"])
    if importlib.util.find_spec("pystray") is None:
        raise TrayUnavailable("pystray is not installed")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise TrayUnavailable("no display (DISPLAY and WAYLAND_DISPLAY are unset)")
    if os.environ.get("PYSTRAY_BACKEND") or not sys.platform.startswith("linux"):
        try:
            pystray = _import_pystray()
        except Exception as error:  # pystray raises ImportError, ValueError (gi) or Xlib errors
            raise TrayUnavailable(f"pystray cannot be imported: {error}") from error
    else:
        pystray = _import_preferred()
    return _usable(pystray)


def gui_caller(pystray: ModuleType) -> Callable[[Callable[[], object]], object]:
    """A function that runs a callable on the tray's GUI thread, callable from any thread.

    The GTK and AppIndicator backends run a GLib main loop: the call is queued with ``GLib.idle_add`` and runs
    once the loop is running (so a call made before ``Icon.run()`` waits for it). Other backends do their own
    marshalling, and the callable is called at once.
    """
    if pystray.Icon.__module__ not in _GLIB_BACKENDS:
        return lambda function: function()
    from gi.repository import GLib

    def call_in_gui(function: Callable[[], object]) -> None:
        def once() -> bool:
            function()
            return GLib.SOURCE_REMOVE

        GLib.idle_add(once)

    return call_in_gui


def _import_preferred() -> ModuleType:
    """Import pystray with the first of :data:`_LINUX_PREFERENCE` that imports, never with ``xorg``."""
    errors: dict[str, None] = {}  # each distinct message once, in order
    for name in _LINUX_PREFERENCE:
        try:
            return _import_pystray(backend=name)
        except Exception as error:
            errors[str(error)] = None
    raise TrayUnavailable(
        "pystray's AppIndicator/GTK backends cannot be used (its xorg backend has no menus): " + "; ".join(errors)
    )


def _import_pystray(backend: str | None = None) -> ModuleType:
    """Import pystray (with ``PYSTRAY_BACKEND=backend`` if given) and GTK without OpenGL.

    Both variables are read once, while pystray and GTK are imported; the environment is restored afterwards,
    so programs the application starts later (a browser, a file manager) do not inherit them.

    GTK is initialised with OpenGL off (``GDK_GL=disable`` while pystray is imported, unless ``GDK_GL`` is set):
    when GTK opens the display it otherwise probes OpenGL, and with Mesa drivers (Intel, AMD, llvmpipe under Xvfb)
    that loads ``libLLVM``, whose symbols clash with the LLVM built into TensorFlow: importing TensorFlow after
    that crashes (SIGSEGV), and importing it before makes the process abort on exit. The tray draws no OpenGL.
    """
    saved = {name: os.environ.get(name) for name in ("PYSTRAY_BACKEND", "GDK_GL")}
    if backend:
        os.environ["PYSTRAY_BACKEND"] = backend
    os.environ.setdefault("GDK_GL", "disable")
    try:
        return importlib.import_module("pystray")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _usable(pystray: ModuleType) -> ModuleType:
    """``pystray`` itself when its backend can show a tray with menus, else :class:`TrayUnavailable`."""
    backend = pystray.Icon.__module__.rpartition("._")[2]
    if backend == "base":  # the dummy backend is the abstract base icon
        raise TrayUnavailable("pystray's dummy backend cannot show a tray")
    if not pystray.Icon.HAS_MENU:
        raise TrayUnavailable(f"pystray's {backend} backend has no menus")
    if pystray.Icon.__module__ in _GLIB_BACKENDS:
        _require_session_bus()
    return pystray


def _require_session_bus() -> None:
    """pystray's GLib backends connect to the D-Bus session bus in ``Icon.run()``.

    Without one ``run()`` raises before the loop starts and leaves pystray's setup thread (not a daemon)
    waiting forever, so the process never exits.
    """
    from gi.repository import Gio, GLib

    try:
        Gio.bus_get_sync(Gio.BusType.SESSION, None)
    except GLib.Error as error:
        raise TrayUnavailable(f"no D-Bus session bus: {error.message}") from error
