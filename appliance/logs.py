"""Where log records go: stderr, and for the desktop app a rotating file too.

    configure_logging("INFO", log_file())    # stderr + ~/.local/state/appliance/log/appliance.log on Linux
    configure_logging("DEBUG")                # later: replaces the first setup, never adds to it

Handlers go on the root logger, so records from waitress and the other libraries land in the same places. When
stderr is the systemd journal (the service), each line carries its level as a ``<N>`` prefix instead of a time:
the journal stamps lines itself, and ``journalctl -p warning`` then picks the warnings.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
import tempfile
import threading
from pathlib import Path

from .paths import ensure_dir

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"  # the journal adds the time, and the level comes as a prefix
MAX_LOG_BYTES = 1024 * 1024
LOG_BACKUPS = 5
STDERR_HANDLER = "appliance.stderr"
FILE_HANDLER = "appliance.file"

_real_stderr_fd: int | None = None  # while native stderr is held back: a duplicate of the real stderr
_real_stderr_lock = threading.Lock()
_holding = threading.Lock()


class _JournalFormatter(logging.Formatter):
    """Lines for the journal: ``<4>appliance.x: text``, the syslog priority of the level first (sd-daemon(3))."""

    def format(self, record: logging.LogRecord) -> str:
        priority = 7 if record.levelno < logging.INFO else 6 if record.levelno < logging.WARNING else 4
        if record.levelno >= logging.ERROR:
            priority = 3 if record.levelno < logging.CRITICAL else 2
        # The journal makes an entry of each line: every line of a traceback gets the prefix.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def stderr_is_journal() -> bool:
    """Whether stderr is connected to the systemd journal: $JOURNAL_STREAM names its device and inode."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(2)
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


class _StderrHandler(logging.StreamHandler):
    """Logs to stderr; while native stderr is held back, straight to the real one, so no record is held back."""

    def emit(self, record: logging.LogRecord) -> None:
        with _real_stderr_lock:
            if _real_stderr_fd is not None:
                try:
                    os.write(_real_stderr_fd, (self.format(record) + self.terminator).encode("utf-8", "replace"))
                except Exception:
                    self.handleError(record)
                return
        super().emit(record)


@contextlib.contextmanager
def native_stderr_to_debug_log(logger: logging.Logger, prefix: str):
    """Hold back what native code writes to stderr (file descriptor 2) meanwhile, then log it at DEBUG.

    TensorFlow's C++ logs while it is imported, before any log level can be
    set. Log records written meanwhile by any thread still reach the real stderr.
    """
    global _real_stderr_fd
    with _holding:
        try:
            saved = os.dup(2)
        except OSError:  # no usable stderr: nothing to hold back
            yield
            return
        with tempfile.TemporaryFile() as captured:
            with _real_stderr_lock:
                _real_stderr_fd = saved
                os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                with _real_stderr_lock:
                    os.dup2(saved, 2)
                    _real_stderr_fd = None
                os.close(saved)
                captured.seek(0)
                for line in captured.read().decode("utf-8", "replace").splitlines():
                    logger.debug("%s%s", prefix, line)


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
        stderr = _StderrHandler(sys.stderr)
        stderr.set_name(STDERR_HANDLER)
        handlers.append(stderr)
    if log_file is not None:
        ensure_dir(log_file.parent)
        file = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=MAX_LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
        file.set_name(FILE_HANDLER)
        handlers.append(file)
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        journal = handler.get_name() == STDERR_HANDLER and stderr_is_journal()
        handler.setFormatter(_JournalFormatter(JOURNAL_FORMAT) if journal else formatter)
        root.addHandler(handler)
