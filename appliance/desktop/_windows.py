"""Opening files and folders on Windows: ``os.startfile``, which asks the shell for the default application.

    open_path(r"C:\\Users\\me\\models")   # Explorer

open_in_desktop() imports this on Windows only.
"""

from __future__ import annotations

import os
import sys

# Fails loudly if imported elsewhere, and tells mypy (which checks every file for the OS it runs on) to check the
# rest of this module only for Windows, where os.startfile exists.
assert sys.platform == "win32"


def open_path(path: str) -> bool:
    """Open ``path`` with the default application; the shell's OSError, if any, propagates (as it always has)."""
    os.startfile(path)
    return True
