"""Handing things to the desktop: open a URL, a folder or a file, and copy text, on Linux, macOS and Windows.

    open_in_desktop("http://127.0.0.1:8501/")    # the default browser
    open_in_desktop(Path.home() / "models")       # the file manager
    copy_text("http://127.0.0.1:8501")            # the clipboard

Each returns False (and logs why) when this desktop offers no way to do it;
none of them blocks. Files and folders go to the OS's own opener, in ``_linux``
(xdg-open), ``_windows`` (os.startfile) or ``_darwin`` (open).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import webbrowser
from pathlib import Path

log = logging.getLogger(__name__)

# Clipboard tools by preference; each reads the text on stdin.
CLIPBOARD_COMMANDS = (
    ["wl-copy"],
    ["xclip", "-selection", "clipboard"],
    ["xsel", "--clipboard", "--input"],
    ["pbcopy"],
    ["clip"],
)


# Set by PyInstaller's runtime hooks for the GTK inside a frozen bundle; programs it starts must not inherit them.
FROZEN_GTK_VARIABLES = (
    "GTK_PATH",
    "GTK_DATA_PREFIX",
    "GTK_EXE_PREFIX",
    "GI_TYPELIB_PATH",
    "GIO_MODULE_DIR",
    "GDK_PIXBUF_MODULE_FILE",
    "PANGO_LIBDIR",
    "PANGO_SYSCONFDIR",
    "FONTCONFIG_FILE",
)


def _child_environment() -> dict[str, str] | None:
    """The environment for programs we start: ours, minus what a frozen bundle set for itself."""
    if not getattr(sys, "frozen", False):
        return None
    bundle = getattr(sys, "_MEIPASS", "")
    env = {k: v for k, v in os.environ.items() if k not in FROZEN_GTK_VARIABLES}
    if "XDG_DATA_DIRS" in env:
        env["XDG_DATA_DIRS"] = os.pathsep.join(
            d for d in env["XDG_DATA_DIRS"].split(os.pathsep) if not (bundle and d.startswith(bundle))
        )
    return env


def _spawn(command: list[str], text: str | None = None) -> bool:
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if text is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=_child_environment(),
        )
    except OSError as e:
        log.warning("cannot run %s: %s", command[0], e)
        return False
    if text is not None:
        process.communicate(text.encode("utf-8"), timeout=10)
    return True


def open_in_desktop(target: str | Path) -> bool:
    """Open a URL in the browser, or a file or folder with the desktop's default application."""
    frozen_linux = getattr(sys, "frozen", False) and sys.platform.startswith("linux")
    if isinstance(target, str) and target.startswith(("http://", "https://")) and not frozen_linux:
        if webbrowser.open(target):
            return True
        log.warning("no browser available to open %s", target)
        return False
    path = str(target)
    if sys.platform == "win32":
        from ._windows import open_path
    elif sys.platform == "darwin":
        from ._darwin import open_path
    else:
        from ._linux import open_path
    return open_path(path)


def _open_with(opener: str, path: str) -> bool:
    """Run the desktop's ``opener`` program on ``path``, without waiting for it."""
    if shutil.which(opener) is None:
        log.warning("cannot open %s: %s is not installed", path, opener)
        return False
    return _spawn([opener, path])


def copy_text(text: str) -> bool:
    """Put ``text`` on the clipboard with the first clipboard tool this desktop has."""
    for command in CLIPBOARD_COMMANDS:
        if shutil.which(command[0]) is not None:
            return _spawn(command, text)
    log.warning("no clipboard tool found (install xclip, xsel or wl-clipboard)")
    return False
