"""Where log records go: stderr, and for the desktop app a rotating file too.

    configure_logging("INFO", log_file())    # stderr + ~/.local/state/appliance/log/appliance.log on Linux
    configure_logging("DEBUG")                # later: replaces the first setup, never adds to it

Handlers go on the root logger, so records from waitress and the other libraries land in the same places.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from .paths import ensure_dir

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_LOG_BYTES = 1024 * 1024
LOG_BACKUPS = 5
STDERR_HANDLER = "appliance.stderr"
FILE_HANDLER = "appliance.file"


def configure_logging(level: str, log_file: Path | None = None) -> None:
    """Log at ``level`` (a name such as "INFO") to stderr and, when given, to ``log_file`` (1 MiB x 5 backups).

    Calling it again replaces the handlers it added before; handlers added by others are left alone.
    """
    root = logging.getLogger()
    root.setLevel(level.upper())  # first, so that an unknown level (ValueError) leaves the setup as it was
    for handler in list(root.handlers):
        if handler.get_name() in (STDERR_HANDLER, FILE_HANDLER):
            root.removeHandler(handler)
            handler.close()

    handlers: list[logging.Handler] = []
    if sys.stderr is not None:  # None in a windowed app (pythonw.exe, a frozen GUI build)
        stderr = logging.StreamHandler(sys.stderr)
        stderr.set_name(STDERR_HANDLER)
        handlers.append(stderr)
    if log_file is not None:
        ensure_dir(log_file.parent)
        file = logging.handlers.RotatingFileHandler(log_file, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS,
                                                    encoding="utf-8")
        file.set_name(FILE_HANDLER)
        handlers.append(file)
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
