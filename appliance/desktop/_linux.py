"""Opening files and folders on Linux and the BSDs: freedesktop's ``xdg-open``, which asks the session's default.

    open_path("/home/me/models")   # the file manager; False (and a warning) without xdg-open

open_in_desktop() imports this on every OS but Windows and macOS.
"""

from __future__ import annotations

from . import _open_with


def open_path(path: str) -> bool:
    """Open ``path`` with the desktop's default application."""
    return _open_with("xdg-open", path)
