"""Start at login: the XDG entry for real under a temporary config home; Windows and macOS by their content."""

from __future__ import annotations

import json
import plistlib
import shutil
import subprocess
import sys
import time

import pytest

from appliance.autostart import autostart_for_this_platform, launch_command, windows_command_line
from appliance.autostart._darwin import MacLaunchAgent, launch_agent_plist
from appliance.autostart._linux import XdgAutostart, desktop_exec_value

# Every character the desktop entry spec reserves, a field code's %, and an empty argument.
AWKWARD_ARGUMENTS = [
    "two words",
    'say "hi"',
    "it's",
    "$HOME",
    "`date`",
    "back\\slash",
    "100% %f",
    "tab\there",
    "line\nbreak",
    "~",
    "a;b|c&d",
    "*?#()<>",
    "--key=value",
    "",
]

WRITE_ARGV = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def test_xdg_enable_and_disable(config_home):
    autostart = XdgAutostart(["/usr/bin/appliance"])
    assert autostart.path == config_home / "autostart" / "appliance.desktop"
    assert not autostart.is_enabled()
    autostart.enable()
    autostart.enable()
    assert autostart.is_enabled()
    assert "Exec=/usr/bin/appliance\n" in autostart.path.read_text()
    autostart.disable()
    autostart.disable()
    assert not autostart.is_enabled() and not autostart.path.exists()


@pytest.mark.parametrize("switched_off", ["Hidden=true", "X-GNOME-Autostart-enabled = false"])
def test_xdg_entry_switched_off_by_the_session_settings_is_not_enabled(config_home, switched_off):
    autostart = XdgAutostart(["/usr/bin/appliance"])
    autostart.enable()
    text = autostart.path.read_text().replace("X-GNOME-Autostart-enabled=true\n", "")
    autostart.path.write_text(text + switched_off + "\n")
    assert not autostart.is_enabled()


def test_xdg_entry_passes_desktop_file_validate(config_home):
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        pytest.skip("desktop-file-validate is not installed (Debian package desktop-file-utils)")
    autostart = XdgAutostart([sys.executable, "-m", "appliance", *AWKWARD_ARGUMENTS])
    autostart.enable()
    result = subprocess.run([validator, str(autostart.path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout + result.stderr, result.stdout + result.stderr


def test_exec_line_round_trips_by_the_spec(config_home):
    command = ["/opt/my apps/appliance", *AWKWARD_ARGUMENTS]
    assert parse_exec_value(desktop_exec_value(command)) == command


def test_exec_line_round_trips_through_a_real_launcher(tmp_path, config_home):
    """GLib's ``gio launch`` reads the written entry and runs it; the program records the argv it got."""
    gio = shutil.which("gio")
    if gio is None:
        pytest.skip("gio (GLib) is not installed, so no desktop launcher can run the entry")
    python = tmp_path / "folder with space" / "python"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    received = tmp_path / "argv.json"
    autostart = XdgAutostart([str(python), "-c", WRITE_ARGV, str(received), *AWKWARD_ARGUMENTS])
    autostart.enable()
    subprocess.run([gio, "launch", str(autostart.path)], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not received.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert json.loads(received.read_text()) == AWKWARD_ARGUMENTS


def parse_exec_value(value: str) -> list[str]:
    """The desktop entry spec's reading of an Exec value: string escapes first, then quotes, then %%."""
    line = value.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")
    line = line.replace("\0", "\\")
    arguments, current, quoted, in_argument = [], "", False, False
    characters = iter(line)
    for character in characters:
        if quoted and character == "\\":
            current += next(characters)
        elif character == '"':
            quoted, in_argument = not quoted, True
        elif character == " " and not quoted:
            if in_argument:
                arguments.append(current)
            current, in_argument = "", False
        else:
            current, in_argument = current + character, True
    if in_argument:
        arguments.append(current)
    return [argument.replace("%%", "%") for argument in arguments]


def test_windows_command_line():
    """Only the text of the Run value: the registry and Windows' own argument splitting cannot run here."""
    assert (
        windows_command_line([r"C:\Program Files\appliance\appliance.exe"])
        == r'"C:\Program Files\appliance\appliance.exe"'
    )
    assert (
        windows_command_line([r"C:\Python\python.exe", "-m", "appliance", 'say "hi"', "ends in\\", ""])
        == r'C:\Python\python.exe -m appliance "say \"hi\"" "ends in\\" ""'
    )


def test_mac_launch_agent(tmp_path):
    """The plist's content and where it goes, under a temporary home: launchd itself cannot run here."""
    command = ["/Applications/appliance.app/Contents/MacOS/appliance", "two words"]
    expected = {
        "Label": "org.appliance.appliance",
        "ProgramArguments": command,
        "RunAtLoad": True,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
    }
    assert plistlib.loads(launch_agent_plist(command)) == expected
    agent = MacLaunchAgent(command, home=tmp_path)
    assert agent.path == tmp_path / "Library" / "LaunchAgents" / "org.appliance.appliance.plist"
    assert not agent.is_enabled()
    agent.enable()
    assert agent.is_enabled() and plistlib.loads(agent.path.read_bytes()) == expected
    assert agent.path.stat().st_mode & 0o022 == 0
    agent.disable()
    assert not agent.is_enabled()


def test_launch_command_runs_this_python_or_the_frozen_executable(monkeypatch):
    assert launch_command() == [sys.executable, "-m", "appliance"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert launch_command() == [sys.executable]


def test_this_platform_is_the_xdg_one(config_home):
    autostart = autostart_for_this_platform()
    assert isinstance(autostart, XdgAutostart) and autostart.command == launch_command()
    assert autostart_for_this_platform(["/usr/bin/appliance"]).command == ["/usr/bin/appliance"]
