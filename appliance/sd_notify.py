"""Tell systemd how the service is doing (``sd_notify(3)``): one datagram to ``$NOTIFY_SOCKET`` per message.

    notifier = Notifier.from_environment()   # does nothing when not started by systemd (no $NOTIFY_SOCKET)
    notifier.status("loading digits v2 (1/3)")
    notifier.ready("serving 2 models")        # Type=notify: `systemctl start` returns now
    notifier.reloading(); notifier.ready()    # around a reload (SIGHUP)
    notifier.stopping()

The protocol is newline-separated ``KEY=VALUE`` lines in one ``AF_UNIX`` datagram to the path in
``$NOTIFY_SOCKET`` (``@name``: Linux's abstract namespace), stable since systemd 209: too small for a dependency
(``systemd-python`` needs libsystemd's headers to build). A failed send is logged once and never raised: the
service must not stop serving because systemd went away.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes to the service manager at ``address``; with None, every method does nothing."""

    def __init__(self, address: str | None):
        self.address = address
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    def ready(self, status: str | None = None) -> None:
        """Started (or reloaded): systemd's start or reload job finishes."""
        self.send("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> None:
        """A line ``systemctl status`` shows."""
        self.send(_status(text))

    def reloading(self, status: str = "reloading the configuration") -> None:
        """A reload began; :meth:`ready` ends it. MONOTONIC_USEC is what Type=notify-reload (systemd 253+) wants."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}", _status(status))

    def stopping(self, status: str = "stopping: finishing the requests in flight") -> None:
        self.send("STOPPING=1", _status(status))

    def send(self, *lines: str) -> None:
        """Send ``lines`` as one message; nothing without an address."""
        if self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode("utf-8"), target)
        except OSError as e:
            if not self._failed:
                log.warning("cannot notify the service manager at %s: %s", self.address, e)
            self._failed = True


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.splitlines())  # one line: a newline would end the field
