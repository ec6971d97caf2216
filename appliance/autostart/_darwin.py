"""Start at login on macOS: a per-user launchd agent, ``~/Library/LaunchAgents/org.appliance.appliance.plist``.

    autostart = MacLaunchAgent(launch_command())
    autostart.enable()   # launchd loads launch_agent_plist(command) at the next login

A plist file only (plistlib is in every Python), so it imports (and is tested) on every OS.
"""

from __future__ import annotations

import plistlib
from pathlib import Path

from ..paths import write_file_atomically
from . import Autostart

LAUNCH_AGENT_LABEL = "org.appliance.appliance"


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
