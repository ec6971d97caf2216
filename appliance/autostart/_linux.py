"""Start at login on Linux and the BSDs: an entry in the freedesktop (XDG) autostart folder.

    autostart = XdgAutostart(launch_command())   # $XDG_CONFIG_HOME/autostart/appliance.desktop
    autostart.enable()
    print(desktop_entry(autostart.command))      # the entry's text

Plain files and text only, so it imports (and is tested) on every OS.
"""

from __future__ import annotations

import re
from pathlib import Path

import platformdirs

from ..paths import write_file_atomically
from . import Autostart

DESKTOP_ENTRY_GROUP = "[Desktop Entry]"

# The desktop entry spec's reserved characters: an Exec argument holding any of them must be quoted.
_EXEC_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")


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
