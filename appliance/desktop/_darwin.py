"""Opening files and folders on macOS: ``open``, which asks Launch Services for the default application.

    open_path("/Users/me/models")   # the Finder

open_in_desktop() imports this on macOS only.
"""

from __future__ import annotations

from . import _open_with


def open_path(path: str) -> bool:
    """Open ``path`` with the default application."""
    return _open_with("open", path)
