"""Start at login on Windows: the value "appliance" under ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``.

    autostart = WindowsRunKey(launch_command())
    autostart.enable()   # Explorer runs windows_command_line(command) at the next login

Windows only: it needs ``winreg``, and only autostart_for_this_platform() imports it, on Windows.
"""

from __future__ import annotations

import sys

# Fails loudly if imported elsewhere, and tells mypy (which checks every file for the OS it runs on) to check the
# rest of this module only for Windows, where winreg exists.
assert sys.platform == "win32"

import winreg  # noqa: E402 (after the platform assert, which must come first)

from . import Autostart, windows_command_line  # noqa: E402

WINDOWS_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
WINDOWS_STARTUP_APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
WINDOWS_VALUE_NAME = "appliance"


class WindowsRunKey(Autostart):
    """The per-user Run key of the registry, which Explorer reads at login."""

    def is_enabled(self) -> bool:
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY) as key:
                winreg.QueryValueEx(key, WINDOWS_VALUE_NAME)
        except FileNotFoundError:
            return False
        return not _switched_off_in_task_manager()

    def enable(self) -> None:
        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            winreg.SetValueEx(key, WINDOWS_VALUE_NAME, 0, winreg.REG_SZ, windows_command_line(self.command))
        # Task Manager's "Disable" outlives the Run value; without clearing it, enabling here would do nothing.
        _delete_value(WINDOWS_STARTUP_APPROVED_KEY)

    def disable(self) -> None:
        _delete_value(WINDOWS_RUN_KEY)


def _switched_off_in_task_manager() -> bool:
    """Whether Task Manager's Startup tab disabled the entry: its StartupApproved flag has the low bit set."""
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_STARTUP_APPROVED_KEY) as key:
            flags, _ = winreg.QueryValueEx(key, WINDOWS_VALUE_NAME)
    except FileNotFoundError:
        return False
    return bool(flags) and bool(flags[0] & 1)


def _delete_value(key_path: str) -> None:
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key_path, 0, winreg.KEY_SET_VALUE) as key:
            winreg.DeleteValue(key, WINDOWS_VALUE_NAME)
    except FileNotFoundError:
        pass
