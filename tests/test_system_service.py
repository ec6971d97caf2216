"""``appliance service install/uninstall`` on macOS and Windows, run here with stand-ins for the OS's tools.

dscl, launchctl and chown (macOS) and sc.exe and icacls.exe (Windows) act on the machine's accounts and service
managers, and only exist on those systems: the tests put stand-ins first on PATH (Windows: in
``%SystemRoot%\\System32``, where the code looks for them) that record their arguments and keep the little state
the code asks about (does the user exist, is the daemon loaded, is the service running). ``sys.platform`` is
faked where the code picks the OS, and every system folder is pointed under tmp_path by the variables that
override it (as in tests/test_service.py). The commands themselves run for real on macOS and Windows in the
installers workflow (.github/workflows/installers.yml).
"""

from __future__ import annotations

import contextlib
import json
import os
import plistlib
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import instance, paths, system_service

from .conftest import REPO

# A stand-in: logs its name and arguments as one JSON line, then behaves as the real tool does for what the code
# asks (STATE is a folder of flag files).
STAND_IN = """#!{python}
import json, os, sys
from pathlib import Path
STATE = Path({state!r})
name, args = Path(sys.argv[0]).name, sys.argv[1:]
with open(STATE / "calls.log", "a") as log:
    log.write(json.dumps([name, *args]) + "\\n")
def flag(key): return (STATE / key).exists()
def put(key, on=True): (STATE / key).touch() if on else (STATE / key).unlink(missing_ok=True)
{behaviour}
"""
BEHAVIOUR = {
    "dscl": """
verb, record = args[1], args[2] if len(args) > 2 else ""
kind = record.split("/")[1] if record.count("/") == 2 else ""
if verb == "-list":
    print("root 0\\n_www 70\\n_taken 300\\nnobody -2")
elif verb == "-read":
    if not flag(kind):
        print("<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)", file=sys.stderr)
        sys.exit(56)
    if len(args) > 3:
        print(f"{args[3]}: " + (STATE / kind).read_text())
elif verb == "-create" and args[3] == {"Users": "UniqueID", "Groups": "PrimaryGroupID"}[kind]:
    (STATE / kind).write_text(args[4])
elif verb == "-delete":
    put(kind, False)
""",
    "launchctl": """
if args[0] == "print":
    sys.exit(0 if flag("loaded") else 113)
if args[0] == "bootstrap":
    put("loaded")
if args[0] == "bootout":
    if not flag("loaded"):
        print("Boot-out failed: 3: No such process", file=sys.stderr); sys.exit(3)
    put("loaded", False)
""",
    "chown": "",
    "sc.exe": """
verb = args[0]
if verb == "query":
    if not flag("service"):
        print("[SC] EnumQueryServicesStatus:OpenService FAILED 1060:"); sys.exit(1060)
    print("STATE : " + ("4  RUNNING" if flag("running") else "1  STOPPED"))
elif verb == "queryex":
    print("PID                : " + (str(os.getpid()) if flag("running") else "0"))
elif verb == "create":
    put("service")
elif verb == "start":
    put("running")
elif verb == "stop":
    if not flag("running"):
        print("[SC] ControlService FAILED 1062:"); sys.exit(1062)
    put("running", False)
elif verb == "delete":
    put("service", False)
""",
    "icacls.exe": """
if "/inheritance:r" in args:
    put("token-before-lockdown", (Path(args[0]) / "token").exists())
""",
}


class Tools:
    """The stand-ins, and what they were asked."""

    def __init__(self, tmp_path: Path, monkeypatch, names: list[str], folder: Path):
        self.state = tmp_path / "tool-state"
        self.state.mkdir()
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            script = STAND_IN.format(python=sys.executable, state=str(self.state), behaviour=BEHAVIOUR[name])
            (folder / name).write_text(script)
            (folder / name).chmod(0o755)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def clear(self) -> None:
        (self.state / "calls.log").unlink(missing_ok=True)

    def has(self, key: str) -> bool:
        return (self.state / key).exists()


@pytest.fixture
def system_folders(tmp_path, monkeypatch) -> dict[str, Path]:
    """The service's folders, under tmp_path (the variables that override each default)."""
    monkeypatch.setenv(paths.SYSTEM_ENV, "1")
    folders = {
        "CONFIGURATION_DIRECTORY": tmp_path / "Library/Application Support/appliance",
        "STATE_DIRECTORY": tmp_path / "Library/Application Support/appliance",
        "CACHE_DIRECTORY": tmp_path / "Library/Caches/appliance",
        "LOGS_DIRECTORY": tmp_path / "Library/Logs/appliance",
        "RUNTIME_DIRECTORY": tmp_path / "Library/Application Support/appliance/run",
    }
    for variable, folder in folders.items():
        monkeypatch.setenv(variable, str(folder))
    return folders


@pytest.fixture
def mac(tmp_path, monkeypatch, system_folders):
    monkeypatch.setattr(sys, "platform", "darwin")
    return Tools(tmp_path, monkeypatch, ["dscl", "launchctl", "chown"], tmp_path / "bin")


def test_macos_install_makes_the_user_folders_token_and_loads_the_daemon(mac, tmp_path, system_folders):
    daemons = tmp_path / "LaunchDaemons"
    daemon = system_service.MacLaunchDaemon(daemons)
    program = ["/Volumes/x/appliance.app/Contents/MacOS/appliance"]
    said = daemon.install(program, ["--host", "0.0.0.0"])

    calls = mac.calls()
    # One id free in users and groups alike (300 is taken): the group first, then the hidden user in it.
    creates = [c[3:] for c in calls if c[:2] == ["dscl", "."] and c[2] == "-create"]
    assert ["/Groups/_appliance", "PrimaryGroupID", "301"] in creates
    user = {key: value for path, key, value in creates if path == "/Users/_appliance"}
    assert user == {
        "UniqueID": "301",
        "PrimaryGroupID": "301",
        "RealName": "appliance service",
        "NFSHomeDirectory": "/var/empty",
        "UserShell": "/usr/bin/false",
        "Password": "*",
        "IsHidden": "1",
    }
    assert "uid 301" in said

    support = system_folders["CONFIGURATION_DIRECTORY"]
    token = support / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o640 and len(token.read_text().strip()) >= 40  # group _appliance
    modes = {
        support: 0o755,
        system_folders["RUNTIME_DIRECTORY"]: 0o755,
        system_folders["LOGS_DIRECTORY"]: 0o700,
        system_folders["CACHE_DIRECTORY"]: 0o700,
    }
    assert {folder: stat.S_IMODE(folder.stat().st_mode) for folder in modes} == modes
    for folder in (support, system_folders["LOGS_DIRECTORY"], system_folders["CACHE_DIRECTORY"]):
        assert ["chown", "-R", "_appliance:_appliance", str(folder)] in calls

    plist_file = daemons / "org.appliance.server.plist"
    assert stat.S_IMODE(plist_file.stat().st_mode) == 0o644  # launchd refuses a daemon others may write
    plist = plistlib.loads(plist_file.read_bytes())
    assert plist["ProgramArguments"] == [*program, "serve", "--host", "0.0.0.0"]
    assert plist["EnvironmentVariables"]["APPLIANCE_SYSTEM"] == "1"
    assert plist["UserName"] == plist["GroupName"] == "_appliance"
    launchctl = [c[1:] for c in calls if c[0] == "launchctl"]
    assert launchctl == [
        ["print", "system/org.appliance.server"],
        ["enable", "system/org.appliance.server"],
        ["bootstrap", "system", str(plist_file)],
    ]

    # Installed again (an update, other flags): the user and token stay, the loaded daemon is replaced.
    token_before = token.read_text()
    mac.clear()
    daemon.install(program, [])
    calls = mac.calls()
    assert not [c for c in calls if c[0] == "dscl" and c[2] == "-create"]
    assert [c[1] for c in calls if c[0] == "launchctl"] == ["print", "bootout", "enable", "bootstrap"]
    assert plistlib.loads(plist_file.read_bytes())["ProgramArguments"] == [*program, "serve"]
    assert token.read_text() == token_before


def test_macos_uninstall_unloads_and_purge_removes_folders_and_user(mac, tmp_path, system_folders):
    daemons = tmp_path / "LaunchDaemons"
    daemon = system_service.MacLaunchDaemon(daemons)
    daemon.install(["/Applications/appliance.app/Contents/MacOS/appliance"], [])
    support = system_folders["CONFIGURATION_DIRECTORY"]
    (support / "models" / "mine").mkdir(parents=True)

    mac.clear()
    daemon.uninstall(purge=False)
    assert [c[1:] for c in mac.calls()] == [["bootout", "system/org.appliance.server"]]
    assert not (daemons / "org.appliance.server.plist").exists() and not mac.has("loaded")
    assert (support / "models" / "mine").is_dir() and (support / "token").is_file()  # kept for a later install

    mac.clear()
    said = daemon.uninstall(purge=True)  # not loaded any more: bootout fails, and that is fine
    assert not any(folder.exists() for folder in system_folders.values())
    deletes = [c[3] for c in mac.calls() if c[0] == "dscl" and c[2] == "-delete"]
    assert deletes == ["/Users/_appliance", "/Groups/_appliance"]
    assert not mac.has("Users") and not mac.has("Groups")
    assert "_appliance" in said


def test_macos_install_needs_root(mac, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 501)  # this test machine runs the suite as root
    with pytest.raises(system_service.ServiceError, match=r"run it as root: sudo .* service install"):
        system_service.install([])
    assert mac.calls() == []


def posix_process_is_alive(pid: int) -> bool:
    with monkeypatch_platform("linux"):
        return instance._process_is_alive(pid)


@contextlib.contextmanager
def monkeypatch_platform(platform: str):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "platform", platform)
        yield


@pytest.fixture
def windows(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv(paths.SYSTEM_ENV, "1")
    for variable in ("CONFIGURATION_DIRECTORY", "STATE_DIRECTORY", "CACHE_DIRECTORY", "LOGS_DIRECTORY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path / "ProgramData"))
    monkeypatch.setenv("SYSTEMROOT", str(tmp_path / "Windows"))
    return Tools(tmp_path, monkeypatch, ["sc.exe", "icacls.exe"], tmp_path / "Windows" / "System32")


def test_windows_install_creates_starts_and_locks_down_the_service(windows, tmp_path):
    program = ["C:\\Program Files\\appliance\\appliance-cli.exe"]
    service = system_service.WindowsService()
    said = service.install(program, ["--rest_api_port", "8501"])
    base = tmp_path / "ProgramData" / "appliance"
    calls = windows.calls()
    sc = [c[1:] for c in calls if c[0] == "sc.exe"]
    bin_path = subprocess.list2cmdline([*program, "service", "run", "--rest_api_port", "8501"])
    assert sc[0] == ["query", "appliance"]
    assert sc[1] == ["create", "appliance", "binPath=", bin_path, "start=", "auto", "obj=", "NT SERVICE\\appliance",
                     "DisplayName=", "appliance"]  # fmt: skip
    assert bin_path == '"C:\\Program Files\\appliance\\appliance-cli.exe" service run --rest_api_port 8501'
    assert ["failureflag", "appliance", "1"] in sc
    assert next(c for c in sc if c[0] == "failure")[-1] == "restart/5000/restart/5000/restart/60000"
    assert sc[-1] == ["start", "appliance"] and windows.has("running")
    icacls = [c[1:] for c in calls if c[0] == "icacls.exe"]
    assert calls.index(["icacls.exe", *icacls[0]]) > calls.index(["sc.exe", *sc[1]])  # after sc.exe's admin check
    assert icacls[0] == [str(base), "/setowner", "*S-1-5-32-544", "/T", "/Q"]
    assert icacls[1][:3] == [str(base), "/inheritance:r", "/grant:r"]
    assert "NT SERVICE\\appliance:(OI)(CI)M" in icacls[1] and "*S-1-5-32-545:(OI)(CI)RX" not in icacls[1]
    assert not windows.has("token-before-lockdown")  # the token is made in the locked folder, never before
    assert icacls[2][:3] == [str(base / "run"), "/grant", "*S-1-5-32-545:(OI)(CI)RX"]  # Users: discovery only
    assert all((base / name).is_dir() for name in ("models", "logs", "cache", "run"))
    assert (base / "token").read_text().strip()
    assert "NT SERVICE\\appliance" in said

    windows.clear()
    service.install(program, [])  # again: the existing service is reconfigured, not created twice
    assert [c[1] for c in windows.calls() if c[0] == "sc.exe"][:2] == ["query", "config"]


def test_windows_uninstall_stops_deletes_and_purges(windows, tmp_path, monkeypatch):
    # Whether the service's process still runs: Windows asks the kernel (ctypes), which cannot run here; the POSIX
    # check of instance.py answers the same question for the stand-in's pid.
    monkeypatch.setattr(system_service, "_process_is_alive", posix_process_is_alive)
    service = system_service.WindowsService()
    assert "not installed" in service.uninstall(purge=False)
    assert [c[1] for c in windows.calls()] == ["query"]

    service.install(["appliance-cli.exe"], [])
    windows.clear()
    said = service.uninstall(purge=True)
    # The pid of the running service (a stand-in's, gone by then) is awaited after STOPPED, before the delete.
    assert [c[1] for c in windows.calls()] == ["query", "queryex", "stop", "query", "delete"]
    assert not windows.has("service") and not (tmp_path / "ProgramData" / "appliance").exists()
    assert said.startswith("removed the service appliance")


def test_windows_install_without_administrator_rights_writes_nothing(windows, tmp_path):
    sc = tmp_path / "Windows" / "System32" / "sc.exe"
    sc.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "if sys.argv[1] == 'query':\n    print('[SC] EnumQueryServicesStatus:OpenService FAILED 1060:')\n"
        "    sys.exit(1060)\n"
        "print('[SC] OpenSCManager FAILED 5:\\n\\nAccess is denied.')\nsys.exit(5)\n"
    )
    with pytest.raises(
        system_service.ServiceError, match=r"sc.exe create appliance .* failed \(exit status 5\): .*Access is denied"
    ):
        system_service.WindowsService().install(["appliance-cli.exe"], [])
    assert not (tmp_path / "ProgramData").exists()  # no folder nor token a user could have made first


def test_linux_points_at_systemctl(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    assert "sudo systemctl enable --now appliance" in system_service.install([])
    assert "sudo apt purge appliance" in system_service.uninstall(purge=True)


def test_the_plist_template_is_the_one_the_frozen_app_carries():
    assert system_service.plist_template() == REPO / "installer" / "macos" / "org.appliance.server.plist"
    spec = (REPO / "installer" / "appliance.spec").read_text()
    assert "org.appliance.server.plist" in spec
