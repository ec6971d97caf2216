"""Install, remove and check the system service of this OS: the appliance serving from boot, for all users.

    sudo appliance service install [-- --host 0.0.0.0]   # macOS: the LaunchDaemon; Windows (administrator): sc.exe
    sudo appliance service uninstall [--purge]           # --purge: also its settings, token, models and logs
    appliance service status --wait 300                  # polls /health until the models are ready

- **macOS**: a .dmg has no install scripts, so this command does what the .deb's postinst does on Linux: the
  hidden system user ``_appliance`` (made with ``dscl``, as macOS's own daemons' accounts are), its folders, the
  token, ``/Library/LaunchDaemons/org.appliance.server.plist`` (from ``installer/macos``) and ``launchctl
  bootstrap system``. launchd has no readiness protocol: ``service status --wait`` polls ``/health``.
- **Windows**: the service ``appliance`` run by the virtual account ``NT SERVICE\\appliance``, started at boot,
  restarted on failure, with ``%ProgramData%\\appliance`` readable by it, SYSTEM and Administrators only (the
  discovery folder ``run`` by every user too). The SCM runs ``appliance-cli.exe service run``
  (:mod:`appliance.windows_service`). The Inno Setup installer's "Run as a service" task calls this command.
- **Linux**: the .deb ships the systemd unit (``installer/linux/appliance.service``): these print the systemctl
  commands.

The commands act on the system service, so its folders are used: the CLI sets ``APPLIANCE_SYSTEM=1`` before
calling these (see :mod:`appliance.paths`). The OS's tools are run as programs, so tests put stand-ins for them
on PATH.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import paths
from .access_token import load_or_create_token
from .client import http_json
from .config import DEFAULT_PORT
from .instance import _process_is_alive, read_discovery  # the check that is safe on Windows too

SERVICE_NAME = "appliance"
LAUNCHD_LABEL = "org.appliance.server"
PLIST_NAME = f"{LAUNCHD_LABEL}.plist"
LAUNCH_DAEMONS = Path("/Library/LaunchDaemons")
MACOS_USER = "_appliance"  # macOS names the accounts of daemons with a leading underscore (_www, _postgres)
MACOS_IDS = range(300, 500)  # below 500: hidden from the login window and System Settings' users
WINDOWS_ACCOUNT = f"NT SERVICE\\{SERVICE_NAME}"
# well-known SIDs (names differ with the system's language): LocalSystem, Administrators, Users
SYSTEM_SID, ADMINISTRATORS_SID, USERS_SID = "*S-1-5-18", "*S-1-5-32-544", "*S-1-5-32-545"
WINDOWS_SERVICE_MISSING = 1060  # ERROR_SERVICE_DOES_NOT_EXIST: what sc.exe exits with for an unknown service
LINUX_UNIT = Path("/usr/lib/systemd/system/appliance.service")


class ServiceError(Exception):
    """A step that failed, said in one line (the CLI prints it)."""


def service_program() -> list[str]:
    """The command that runs this appliance, as the service manager should start it: the frozen executable (on
    Windows its console twin, ``appliance-cli.exe``), or this Python running ``-m appliance``."""
    if not getattr(sys, "frozen", False):
        return [sys.executable, "-m", "appliance"]
    executable = Path(sys.executable)
    if executable.name.lower() == "appliance.exe":
        executable = executable.with_name("appliance-cli.exe")
    return [str(executable)]


def run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise ServiceError(f"{' '.join(command)} failed (exit status {result.returncode}): {' '.join(said)}")
    return result


# -- macOS: the LaunchDaemon


def plist_template() -> Path:
    """``installer/macos/org.appliance.server.plist``: beside the frozen app's files, or in this checkout."""
    if getattr(sys, "frozen", False):
        return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / PLIST_NAME
    return paths.PACKAGE_DIR.parent / "installer" / "macos" / PLIST_NAME


def launch_daemon_plist(program: list[str], flags: list[str]) -> bytes:
    """The plist of ``installer/macos`` running ``program serve FLAGS`` (the template names /Applications' app)."""
    daemon = plistlib.loads(plist_template().read_bytes())
    daemon["ProgramArguments"] = [*program, *daemon["ProgramArguments"][1:], *flags]
    return plistlib.dumps(daemon)


class MacLaunchDaemon:
    """The LaunchDaemon ``org.appliance.server``, run by launchd as ``_appliance``."""

    def __init__(self, daemons_dir: Path = LAUNCH_DAEMONS):
        self.plist = daemons_dir / PLIST_NAME
        self.target = f"system/{LAUNCHD_LABEL}"

    def install(self, program: list[str], flags: list[str]) -> str:
        ids = self._ensure_account()
        support, logs, cache, runtime = (
            paths.user_config_dir(),
            paths.user_log_dir(),
            paths.user_cache_dir(),
            paths.user_runtime_dir(),
        )
        # Owner-only, except what every user may read: the discovery file's folder and the path to it. The token
        # (0640, below), recorded requests and preferences are private in the support folder.
        for folder, mode in ((support, 0o755), (runtime, 0o755), (support / "models", 0o755), (logs, 0o700)):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(mode)
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        load_or_create_token(paths.token_file())
        # As the .deb's: the service and its group read it (a member's desktop tray switches versions), no one else
        paths.token_file().chmod(0o640)
        for folder in (support, logs, cache):
            run(["chown", "-R", f"{MACOS_USER}:{MACOS_USER}", str(folder)])
        paths.write_file_atomically(self.plist, launch_daemon_plist(program, flags), mode=0o644)  # launchd: root's
        if run(["launchctl", "print", self.target], check=False).returncode == 0:
            run(["launchctl", "bootout", self.target], check=False)  # installed before: the new plist replaces it
        run(["launchctl", "enable", self.target])
        run(["launchctl", "bootstrap", "system", str(self.plist)])
        return (
            f"installed {self.plist} (user {MACOS_USER}, uid {ids}); launchd starts it now and at every boot.\n"
            f"Settings, models and the token: {support}; its log: {logs / 'appliance.log'}.\n"
            "`appliance service status --wait 300` says when the models are ready."
        )

    def uninstall(self, purge: bool) -> str:
        run(["launchctl", "bootout", self.target], check=False)  # not loaded: nothing to stop
        self.plist.unlink(missing_ok=True)
        said = f"removed {self.plist}"
        if purge:
            for folder in (paths.user_config_dir(), paths.user_log_dir(), paths.user_cache_dir()):
                shutil.rmtree(folder, ignore_errors=True)
            for kind in ("Users", "Groups"):
                if run(["dscl", ".", "-read", f"/{kind}/{MACOS_USER}"], check=False).returncode == 0:
                    run(["dscl", ".", "-delete", f"/{kind}/{MACOS_USER}"])
            said += f", its folders and the user {MACOS_USER}"
        return said

    def _ensure_account(self) -> int:
        """The hidden group and user ``_appliance`` (one id for both), made when missing; returns the uid."""
        user = run(["dscl", ".", "-read", f"/Users/{MACOS_USER}", "UniqueID"], check=False)
        if user.returncode == 0:
            return int(user.stdout.split()[-1])
        taken = {
            int(line.split()[-1])
            for kind, key in (("Users", "UniqueID"), ("Groups", "PrimaryGroupID"))
            for line in run(["dscl", ".", "-list", f"/{kind}", key]).stdout.splitlines()
            if line.split() and line.split()[-1].lstrip("-").isdigit()
        }
        free = next((i for i in MACOS_IDS if i not in taken), None)
        if free is None:
            raise ServiceError(f"no free user and group id in {MACOS_IDS.start}-{MACOS_IDS.stop - 1}")
        group = f"/Groups/{MACOS_USER}"
        if run(["dscl", ".", "-read", group], check=False).returncode != 0:
            for key, value in (("PrimaryGroupID", str(free)), ("RealName", "appliance service"), ("Password", "*")):
                run(["dscl", ".", "-create", group, key, value])
        gid = run(["dscl", ".", "-read", group, "PrimaryGroupID"]).stdout.split()[-1]
        account = f"/Users/{MACOS_USER}"
        for key, value in (
            ("UniqueID", str(free)),
            ("PrimaryGroupID", gid),
            ("RealName", "appliance service"),
            ("NFSHomeDirectory", "/var/empty"),
            ("UserShell", "/usr/bin/false"),
            ("Password", "*"),
            ("IsHidden", "1"),
        ):
            run(["dscl", ".", "-create", account, key, value])
        return free


# -- Windows: the service


class WindowsService:
    """The service ``appliance`` in the SCM, set up with sc.exe and icacls.exe from ``%SystemRoot%\\System32``
    (by full path: this runs as administrator, PATH must not choose the program)."""

    def __init__(self) -> None:
        system32 = Path(os.environ.get("SYSTEMROOT") or "C:\\Windows") / "System32"
        self.sc = str(system32 / "sc.exe")
        self.icacls = str(system32 / "icacls.exe")

    def installed(self) -> bool:
        result = run([self.sc, "query", SERVICE_NAME], check=False)
        if result.returncode == 0:
            return True
        if result.returncode == WINDOWS_SERVICE_MISSING or f"FAILED {WINDOWS_SERVICE_MISSING}:" in result.stdout:
            return False
        said = " ".join((result.stdout.strip() or result.stderr.strip()).split())
        raise ServiceError(f"sc.exe query {SERVICE_NAME} failed (exit status {result.returncode}): {said}")

    def install(self, program: list[str], flags: list[str]) -> str:
        verb = "config" if self.installed() else "create"  # installed before: point it at this program
        command = subprocess.list2cmdline([*program, "service", "run", *flags])
        sc = self.sc
        # sc.exe first: it refuses without administrator rights, before anything is written.
        run([sc, verb, SERVICE_NAME, "binPath=", command, "start=", "auto", "obj=", WINDOWS_ACCOUNT,
             "DisplayName=", SERVICE_NAME])  # fmt: skip
        run([sc, "description", SERVICE_NAME, "Serves TensorFlow models over TF Serving's REST and gRPC APIs"])
        # Restarted after a failure (as systemd's Restart=on-failure): also when it stops with an error status.
        run([sc, "failure", SERVICE_NAME, "reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000"])
        run([sc, "failureflag", SERVICE_NAME, "1"])
        # The folder (and what a user may have put there before) owned by Administrators and readable only by
        # them, SYSTEM and the service's virtual account (which exists once the service does); then the token,
        # which inherits that. The discovery folder is readable by every user.
        base, runtime = paths.user_config_dir(), paths.user_runtime_dir()
        base.mkdir(parents=True, exist_ok=True)
        run([self.icacls, str(base), "/setowner", ADMINISTRATORS_SID, "/T", "/Q"])
        run([self.icacls, str(base), "/inheritance:r", "/grant:r", f"{SYSTEM_SID}:(OI)(CI)F",
             f"{ADMINISTRATORS_SID}:(OI)(CI)F", f"{WINDOWS_ACCOUNT}:(OI)(CI)M", "/T", "/Q"])  # fmt: skip
        for folder in (base / "models", paths.user_log_dir(), paths.user_cache_dir(), runtime):
            folder.mkdir(parents=True, exist_ok=True)
        load_or_create_token(paths.token_file())
        run([self.icacls, str(runtime), "/grant", f"{USERS_SID}:(OI)(CI)RX", "/Q"])
        run([sc, "start", SERVICE_NAME])
        return (
            f"installed and started the service {SERVICE_NAME} (account {WINDOWS_ACCOUNT}, starts at boot).\n"
            f"Settings, models and the token: {base}; its log: {paths.log_file()}.\n"
            "`appliance-cli service status --wait 300` says when the models are ready."
        )

    def _pid(self) -> int:
        """The running service's process id (``sc queryex``: "PID : 1234"), 0 when it runs none."""
        for line in run([self.sc, "queryex", SERVICE_NAME], check=False).stdout.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "PID" and value.strip().isdigit():
                return int(value)
        return 0

    def uninstall(self, purge: bool, stop_timeout: float = 90) -> str:
        said = f"the service {SERVICE_NAME} was not installed"
        if self.installed():
            pid = self._pid()
            run([self.sc, "stop", SERVICE_NAME], check=False)  # not running: nothing to stop
            deadline = time.monotonic() + stop_timeout
            while "STOPPED" not in run([self.sc, "query", SERVICE_NAME]).stdout and time.monotonic() < deadline:
                time.sleep(0.5)
            # STOPPED is said just before the process exits: wait for it, so that the uninstaller can remove its files
            while pid and _process_is_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            run([self.sc, "delete", SERVICE_NAME])
            said = f"removed the service {SERVICE_NAME}"
        if purge:
            shutil.rmtree(paths.user_config_dir(), ignore_errors=True)
            said += f" and {paths.user_config_dir()}"
        return said


# -- every OS


def install(flags: list[str]) -> str:
    """Install (or update) and start the system service serving with ``flags``; returns what to tell the user."""
    if sys.platform == "darwin":
        _need_root("install")
        return MacLaunchDaemon().install(service_program(), flags)
    if sys.platform == "win32":
        return WindowsService().install(service_program(), flags)
    return (
        f"The Debian package installs the systemd service disabled ({LINUX_UNIT}). Turn it on with:\n"
        "  sudo systemctl enable --now appliance\n"
        "Flags go in /etc/appliance/environment (APPLIANCE_FLAGS=...), then: sudo systemctl restart appliance"
    )


def uninstall(purge: bool) -> str:
    if sys.platform == "darwin":
        _need_root("uninstall")
        return MacLaunchDaemon().uninstall(purge)
    if sys.platform == "win32":
        return WindowsService().uninstall(purge)
    return "Stop it and keep it from starting at boot:\n  sudo systemctl disable --now appliance\n" + (
        "Remove it with its settings, token and models:\n  sudo apt purge appliance" if purge else ""
    )


def _need_root(action: str) -> None:
    if os.geteuid() != 0:
        raise ServiceError(f"run it as root: sudo {service_program()[0]} service {action}")


def status(url: str | None, wait: float) -> tuple[int, str]:
    """The exit status and a line: 0 once ``/health`` says ready (or degraded), 3 while loading, 1 when nothing
    answers; asks again until ``wait`` seconds have passed. Without ``url``, the one the service's discovery file
    names (read on each try: a starting service writes it once it listens), else the default port's."""
    deadline = time.monotonic() + wait
    while True:
        code, line = _health((url or _discovered_url()).rstrip("/"))
        if code == 0 or time.monotonic() >= deadline:
            return code, line
        time.sleep(1)


def _discovered_url() -> str:
    found = read_discovery(paths.discovery_file())
    return found.url if found is not None and found.url else f"http://127.0.0.1:{DEFAULT_PORT}"


def _health(url: str) -> tuple[int, str]:
    try:
        _, health = http_json(url + "/health", timeout=10)  # 503 while loading, with the same document
    except OSError as e:
        return 1, f"no appliance answers at {url} ({getattr(e, 'reason', e)}); {_where_to_look()}"
    names = ", ".join(m["name"] for m in health.get("models", []))
    state = health.get("status", "unknown")
    return (0 if state in ("ready", "degraded") else 3), f"{state} at {url}: {names or 'no models'}"


def _where_to_look() -> str:
    if sys.platform == "darwin":
        return f"see `sudo launchctl print system/{LAUNCHD_LABEL}` and /Library/Logs/appliance/appliance.log"
    if sys.platform == "win32":
        return f"see `sc query {SERVICE_NAME}` and {paths.log_file()}"
    return "see `systemctl status appliance` and `journalctl -u appliance`"
