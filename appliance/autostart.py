"""The "Start at login" switch, written the way each desktop expects it.

    autostart = autostart_for_this_platform()   # launches launch_command() at login
    if not autostart.is_enabled():
        autostart.enable()

- Linux/BSD: a freedesktop autostart entry, ``$XDG_CONFIG_HOME/autostart/appliance.desktop``;
- Windows: the value "appliance" under ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``;
- macOS: a launchd agent, ``~/Library/LaunchAgents/org.appliance.appliance.plist``.

Enabling only registers the command for the next login; it never starts a second appliance now.
"""

from __future__ import annotations

import abc
import plistlib
import re
import subprocess
import sys
from pathlib import Path

import platformdirs

from .paths import write_file_atomically

DESKTOP_ENTRY_GROUP = "[Desktop Entry]"
LAUNCH_AGENT_LABEL = "org.appliance.appliance"
WINDOWS_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
WINDOWS_STARTUP_APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
WINDOWS_VALUE_NAME = "appliance"

# The desktop entry spec's reserved characters: an Exec argument holding any of them must be quoted.
_EXEC_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")


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
        return WindowsRunKey(command)
    if sys.platform == "darwin":
        return MacLaunchAgent(command)
    return XdgAutostart(command)


# --- freedesktop (Linux, BSD) ---------------------------------------------------------------------------------


def desktop_exec_value(command: list[str]) -> str:
    """``command`` as the value of a desktop entry's Exec key, quoted and escaped as the spec requires."""
    line = " ".join(_quote_exec_argument(argument) for argument in command)
    # Exec is also a "string" value, whose escapes a reader undoes before the quoting, so they go on last.
    return line.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _quote_exec_argument(argument: str) -> str:
    if argument and _EXEC_RESERVED.isdisjoint(argument):
        quoted = argument
    else:
        quoted = '"' + re.sub(r'(["`$\\])', r"\\\1", argument) + '"'
    return quoted.replace("%", "%%")  # a lone % would start a field code such as %f


def desktop_entry(command: list[str]) -> str:
    """The text of the autostart entry that runs ``command``."""
    return "\n".join(
        [
            DESKTOP_ENTRY_GROUP,
            "Type=Application",
            "Name=appliance",
            "Comment=Serve TensorFlow models on this computer over a local REST API",
            f"Exec={desktop_exec_value(command)}",
            "Icon=appliance",
            "Terminal=false",
            "Categories=Utility;",
            "X-GNOME-Autostart-enabled=true",
            "",
        ]
    )


class XdgAutostart(Autostart):
    """An entry in the XDG autostart folder, which GNOME, KDE, Xfce and the other freedesktop sessions read."""

    def __init__(self, command: list[str], config_home: Path | None = None):
        super().__init__(command)
        config_home = Path(platformdirs.user_config_dir()) if config_home is None else config_home
        self.path = config_home / "autostart" / "appliance.desktop"

    def is_enabled(self) -> bool:
        # Session settings tools switch an entry off in place (Hidden=true, X-GNOME-Autostart-enabled=false).
        try:
            entry = _desktop_entry_keys(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        return entry.get("Hidden") != "true" and entry.get("X-GNOME-Autostart-enabled") != "false"

    def enable(self) -> None:
        write_file_atomically(self.path, desktop_entry(self.command).encode("utf-8"), mode=0o644)

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)


def _desktop_entry_keys(text: str) -> dict[str, str]:
    """The keys and raw values of the ``[Desktop Entry]`` group."""
    keys: dict[str, str] = {}
    group = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            group = line
        elif group == DESKTOP_ENTRY_GROUP and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            keys[key.strip()] = value.strip()
    return keys


# --- Windows --------------------------------------------------------------------------------------------------


def windows_command_line(command: list[str]) -> str:
    """``command`` as one Windows command line, quoted the way the C runtime splits it back."""
    return subprocess.list2cmdline(command)


class WindowsRunKey(Autostart):
    """The per-user Run key of the registry, which Explorer reads at login."""

    def is_enabled(self) -> bool:
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY) as key:
                winreg.QueryValueEx(key, WINDOWS_VALUE_NAME)
        except FileNotFoundError:
            return False
        return not _switched_off_in_task_manager()

    def enable(self) -> None:
        import winreg

        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            winreg.SetValueEx(key, WINDOWS_VALUE_NAME, 0, winreg.REG_SZ, windows_command_line(self.command))
        # Task Manager's "Disable" outlives the Run value; without clearing it, enabling here would do nothing.
        _delete_value(WINDOWS_STARTUP_APPROVED_KEY)

    def disable(self) -> None:
        _delete_value(WINDOWS_RUN_KEY)


def _switched_off_in_task_manager() -> bool:
    """Whether Task Manager's Startup tab disabled the entry: its StartupApproved flag has the low bit set."""
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_STARTUP_APPROVED_KEY) as key:
            flags, _ = winreg.QueryValueEx(key, WINDOWS_VALUE_NAME)
    except FileNotFoundError:
        return False
    return bool(flags) and bool(flags[0] & 1)


def _delete_value(key_path: str) -> None:
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key_path, 0, winreg.KEY_SET_VALUE) as key:
            winreg.DeleteValue(key, WINDOWS_VALUE_NAME)
    except FileNotFoundError:
        pass


# --- macOS ----------------------------------------------------------------------------------------------------


def launch_agent_plist(command: list[str]) -> bytes:
    """The launchd agent that runs ``command`` once when the user logs in to the graphical session."""
    return plistlib.dumps(
        {
            "Label": LAUNCH_AGENT_LABEL,
            "ProgramArguments": list(command),
            "RunAtLoad": True,
            "ProcessType": "Interactive",
            "LimitLoadToSessionType": "Aqua",
        }
    )


class MacLaunchAgent(Autostart):
    """A per-user launchd agent, which launchd loads at the next login."""

    def __init__(self, command: list[str], home: Path | None = None):
        super().__init__(command)
        home = Path.home() if home is None else home
        self.path = home / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"

    def is_enabled(self) -> bool:
        return self.path.is_file()

    def enable(self) -> None:
        # launchd ignores an agent that others can write to.
        write_file_atomically(self.path, launch_agent_plist(self.command), mode=0o644)

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)
