"""Entry script of the frozen appliance (PyInstaller): the same as the ``appliance`` command.

    dist/appliance/appliance serve --rest_api_port 0 --port 0

Only the frozen app runs this file; from source, use ``python -m appliance``.
"""

import multiprocessing
import os
import sys


def _restore_library_path() -> None:
    """Give programs this app starts (browser, file manager, clipboard tool) the user's own library path.

    On Linux PyInstaller's bootloader points ``LD_LIBRARY_PATH`` at the bundle (keeping the user's value as
    ``LD_LIBRARY_PATH_ORIG``) so that the bundled libraries are found. The dynamic loader of this process has
    read it already; children inheriting it would load the bundle's GTK, GLib and libstdc++ instead of their own.
    """
    if not sys.platform.startswith("linux") or not getattr(sys, "frozen", False):
        return
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)


if __name__ == "__main__":
    multiprocessing.freeze_support()
    _restore_library_path()
    from appliance.cli import main

    sys.exit(main())
