"""The "Start at login" switch, written the way each desktop expects it.

    autostart = autostart_for_this_platform()   # launches launch_command() at login
    if not autostart.is_enabled():
        autostart.enable()

Each OS has its own module, imported only on that OS: ``_linux`` (Linux/BSD: a freedesktop autostart entry),
``_windows`` (the registry's Run key) and ``_darwin`` (a launchd agent). Enabling only registers the command
for the next login; it never starts a second appliance now.
"""

from __future__ import annotations

import abc
import subprocess
import sys


def launch_command() -> list[str]:
    """The command that starts this appliance: the frozen executable, or this Python running ``-m appliance``."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "appliance"]


class Autostart(abc.ABC):
    """Whether ``command`` runs when the user logs in."""

    def __init__(self, command: list[str]):
        self.command = list(command)

    @abc.abstractmethod
    def is_enabled(self) -> bool:
        """Whether the command is registered to run at login (and the user has not switched it off)."""

    @abc.abstractmethod
    def enable(self) -> None:
        """Register the command to run at login."""

    @abc.abstractmethod
    def disable(self) -> None:
        """Stop the command from running at login; nothing happens when it was not registered."""


def autostart_for_this_platform(command: list[str] | None = None) -> Autostart:
    """The :class:`Autostart` of this OS, for ``command`` (default: :func:`launch_command`)."""
    command = launch_command() if command is None else command
    if sys.platform == "win32":
        from ._windows import WindowsRunKey

        return WindowsRunKey(command)
    if sys.platform == "darwin":
        from ._darwin import MacLaunchAgent

        return MacLaunchAgent(command)
    from ._linux import XdgAutostart

    return XdgAutostart(command)


# Windows' half of the Run value, here rather than in _windows (which only Windows can import) because it is
# plain text that every OS can build and test.
def windows_command_line(command: list[str]) -> str:
    """``command`` as one Windows command line, quoted the way the C runtime splits it back."""
    return subprocess.list2cmdline(command)
