"""The system service in the .deb: the unit passes ``systemd-analyze verify``, and the maintainer scripts do what
install, upgrade, removal and purge need, run here with stand-ins for systemctl, adduser & co.

None of this needs the PyInstaller bundle: the package is built by ``installer/linux/deb.py`` from a stand-in
bundle (a shell script named ``appliance``), and the scripts run against a file system root under tmp_path
(``$DPKG_ROOT``, which dpkg sets for installs into another root), recording the commands they call.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

LINUX = REPO / "installer" / "linux"
UNIT = "appliance.service"
# The commands the scripts may call that act on the machine: each stand-in logs its name and arguments.
STAND_INS = ("systemctl", "deb-systemd-helper", "deb-systemd-invoke", "adduser", "deluser", "delgroup", "chown")


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    """A .deb built by deb.py from a stand-in bundle."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("building a .deb needs dpkg-deb (Debian/Ubuntu's dpkg package)")
    bundle = tmp_path_factory.mktemp("bundle") / "appliance"
    bundle.mkdir()
    (bundle / "appliance").write_text("#!/bin/sh\necho stand-in\n")
    (bundle / "appliance").chmod(0o755)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, str(LINUX / "deb.py"), str(bundle), "--out", str(out), "-Z", "gzip"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def test_the_package_ships_the_unit_and_its_scripts(deb, tmp_path):
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines() if not line.startswith("l")}
    assert f"/usr/lib/systemd/system/{UNIT}" in files
    assert "/usr/share/doc/appliance/service.md" in files
    assert not any(name.startswith(("/etc", "/var", "/run")) for name in files)  # made at install, removed on purge
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
    for script in ("postinst", "prerm", "postrm"):
        assert (control / script).read_bytes() == (LINUX / "debian" / script).read_bytes()
        assert stat.S_IMODE((control / script).stat().st_mode) == 0o755


def test_systemd_analyze_verify_is_clean_on_the_unit_as_installed(deb, tmp_path):
    """Verified in a root holding the package's files, the host's systemd units, and /bin/kill (ExecReload)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not found (Debian package: systemd)")
    units = Path("/usr/lib/systemd/system")
    if not (units / "multi-user.target").exists():
        pytest.skip(f"no systemd units in {units} to verify the unit's dependencies against")
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(root)], check=True)
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    (root / "bin").mkdir()
    shutil.copy2(shutil.which("kill") or "/bin/kill", root / "bin" / "kill")
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", UNIT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr

    unit = (root / "usr/lib/systemd/system" / UNIT).read_text()
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "Environment=APPLIANCE_SYSTEM=1",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "NoNewPrivileges=true",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "WantedBy=multi-user.target",
    ):
        assert f"\n{line}\n" in unit, line


class Scripts:
    """The maintainer scripts run as dpkg runs them, in ``root``, with stand-ins logging to ``calls``."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "root"
        self.root.mkdir()
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "calls.log"
        self.active = tmp_path / "active"  # exists while the stand-in systemctl says the service runs
        for name in STAND_INS:
            status = f'[ "$1 $2" = "--quiet is-active" ] && {{ [ -e "{self.active}" ]; exit $?; }}\n'
            (self.bin / name).write_text(
                f'#!/bin/sh\necho "{name} $*" >>"{self.log}"\n' + (status if name == "systemctl" else "") + "exit 0\n"
            )
            (self.bin / name).chmod(0o755)
        # getent: the user exists once adduser was called (and until deluser)
        (self.bin / "getent").write_text(
            f'#!/bin/sh\n[ -e "{tmp_path}/user" ] && echo "appliance:x:999:999::/var/lib/appliance:/usr/sbin/nologin"'
            f" && exit 0\nexit 2\n"
        )
        (self.bin / "getent").chmod(0o755)
        (self.bin / "adduser").write_text(
            (self.bin / "adduser").read_text().replace("exit 0", f'touch "{tmp_path}/user"\nexit 0')
        )
        (self.bin / "deluser").write_text(
            (self.bin / "deluser").read_text().replace("exit 0", f'rm -f "{tmp_path}/user"\nexit 0')
        )

    def systemd_runs(self) -> None:
        (self.root / "run/systemd/system").mkdir(parents=True, exist_ok=True)

    def run(self, script: str, *args: str) -> list[str]:
        """Run ``script`` with dpkg's ``args``; returns the commands it called."""
        self.log.write_text("")
        env = {"PATH": f"{self.bin}:{os.environ['PATH']}", "DPKG_ROOT": str(self.root), "DPKG_MAINTSCRIPT_NAME": script}
        result = subprocess.run(
            ["sh", "-e", str(LINUX / "debian" / script), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return self.log.read_text().splitlines()


@pytest.fixture
def scripts(tmp_path) -> Scripts:
    return Scripts(tmp_path)


def test_install_makes_the_user_and_a_group_readable_token_and_leaves_the_service_disabled(scripts):
    scripts.systemd_runs()
    calls = scripts.run("postinst", "configure")
    assert calls[0].startswith("adduser --system --group --home /var/lib/appliance")
    token = scripts.root / "etc/appliance/token"
    # The service and the appliance group (whose members' desktop trays switch versions) read it, no one else.
    assert stat.S_IMODE(token.stat().st_mode) == 0o640
    assert len(token.read_text().strip()) >= 43  # 32 random bytes, URL-safe base64
    assert f"chown appliance:appliance {token}.new" in calls
    assert f"deb-systemd-helper update-state {UNIT}" in calls
    assert "systemctl --system daemon-reload" in calls
    assert not any(c.startswith(("deb-systemd-helper enable", "systemctl enable")) for c in calls)  # disabled
    assert not any(c.startswith("deb-systemd-invoke") for c in calls)  # and not started

    first_token = token.read_text()
    calls = scripts.run("postinst", "configure", "0.1.0")  # reconfigured: the user and token are kept
    assert not any(c.startswith("adduser") for c in calls)
    assert token.read_text() == first_token


def test_without_systemd_running_the_scripts_do_not_ask_it_anything(scripts):
    calls = scripts.run("postinst", "configure")
    assert not any(c.startswith(("systemctl --system", "deb-systemd-invoke")) for c in calls)
    assert not any(c.startswith("deb-systemd-invoke") for c in scripts.run("prerm", "remove"))


def test_an_upgrade_restarts_a_running_service_only(scripts):
    scripts.systemd_runs()
    scripts.run("postinst", "configure")

    scripts.active.touch()  # the service runs: stopped before the files change, started after
    assert f"deb-systemd-invoke stop {UNIT}" in scripts.run("prerm", "upgrade", "0.2.0")
    scripts.active.unlink()
    assert f"deb-systemd-invoke start {UNIT}" in scripts.run("postinst", "configure", "0.1.0")

    # Not running: left alone.
    assert not any(c.startswith("deb-systemd-invoke") for c in scripts.run("prerm", "upgrade", "0.2.0"))
    assert not any(c.startswith("deb-systemd-invoke") for c in scripts.run("postinst", "configure", "0.1.0"))


def test_removal_stops_and_disables_and_purge_removes_settings_state_and_user(scripts):
    scripts.systemd_runs()
    scripts.run("postinst", "configure")
    for folder in ("etc/appliance", "var/lib/appliance/models/digits", "var/cache/appliance", "opt/appliance"):
        (scripts.root / folder).mkdir(parents=True, exist_ok=True)

    calls = scripts.run("prerm", "remove")
    assert calls.index(f"deb-systemd-invoke stop {UNIT}") < calls.index(f"systemctl --quiet disable {UNIT}")
    scripts.run("postrm", "remove")
    assert not (scripts.root / "opt/appliance").exists()
    # Removed, not purged: the settings, token and models stay for a reinstall.
    assert (scripts.root / "etc/appliance/token").is_file() and (scripts.root / "var/lib/appliance/models").is_dir()

    calls = scripts.run("postrm", "purge")
    assert f"deb-systemd-helper purge {UNIT}" in calls
    assert "deluser --system --quiet appliance" in calls
    for folder in ("etc/appliance", "var/lib/appliance", "var/cache/appliance"):
        assert not (scripts.root / folder).exists(), folder
    left = list(scripts.root.rglob("*"))
    assert not [p for p in left if not p.is_dir() or "appliance" in p.name], left  # only the system's own folders
