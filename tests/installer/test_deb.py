"""The Debian package: built from the bundle, its menu entry valid, installed with dpkg, run, removed cleanly.

Installing needs root (CI runs as root): without it only the package's contents are checked. The system service
is run by systemd only where systemd is PID 1 (the Linux workflow's runner, not a container).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests

from appliance import __version__

from ..conftest import REPO, PredictLoad, wait_for
from .conftest import MEASURED, Server, installer_tests

pytestmark = installer_tests

PACKAGE = "appliance"


def _run(*command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def deb(bundle) -> Path:
    """The .deb made from the session's bundle by ``installer/build.py --bundle ... --deb``."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("building the .deb needs dpkg-deb (Debian/Ubuntu's dpkg package)")
    started = time.monotonic()
    _run(
        sys.executable,
        str(REPO / "installer" / "build.py"),
        "--bundle",
        str(bundle.folder),
        "--deb",
        "--dist",
        str(bundle.dist),
        "--work",
        str(bundle.dist / "work"),
        timeout=600,
    )
    MEASURED["deb_seconds"] = round(time.monotonic() - started, 1)
    arch = _run("dpkg", "--print-architecture").stdout.strip()
    path = bundle.dist / f"{PACKAGE}_{__version__}_{arch}.deb"
    assert path.is_file(), sorted(p.name for p in bundle.dist.iterdir())
    MEASURED["deb_bytes"] = path.stat().st_size
    yield path
    path.unlink(missing_ok=True)


def _control(deb: Path) -> dict[str, str]:
    fields = {}
    for line in _run("dpkg-deb", "--field", str(deb)).stdout.splitlines():
        if line[:1] not in (" ", "") and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


def _members(deb: Path) -> dict[str, str]:
    """Path -> type ("d", "-", "l" and the link target) of every file in the package."""
    members = {}
    for line in _run("dpkg-deb", "--contents", str(deb)).stdout.splitlines():
        parts = line.split(None, 5)
        name = parts[5]
        if parts[0].startswith("l"):
            name, _, target = name.partition(" -> ")
            members[name.lstrip(".")] = f"l {target}"
        else:
            members[name.lstrip(".").rstrip("/") or "/"] = parts[0][0]
    return members


def test_package_fields_and_layout(deb):
    fields = _control(deb)
    assert fields["Package"] == PACKAGE
    assert fields["Version"] == __version__
    assert fields["Architecture"] == _run("dpkg", "--print-architecture").stdout.strip()
    # Only glibc is required (its floor read from the bundle); the display libraries PyInstaller leaves to the
    # host are recommended, for the tray.
    assert fields["Depends"].startswith("libc6 (>= 2."), fields
    assert "gir1.2" not in fields.get("Depends", "") + fields.get("Recommends", "")

    members = _members(deb)
    assert members["/opt/appliance/appliance"] == "-"
    assert members["/usr/bin/appliance"] == "l /opt/appliance/appliance"
    assert members["/usr/share/applications/appliance.desktop"] == "-"
    for size in (16, 32, 48, 256):
        assert members[f"/usr/share/icons/hicolor/{size}x{size}/apps/appliance.png"] == "-"
    assert members["/opt/appliance/_internal/models/digits/2/saved_model.pb"] == "-"
    assert members["/opt/appliance/_internal/models/digits/samples/3.png"] == "-"  # the start page's samples
    assert members["/usr/lib/systemd/system/appliance.service"] == "-"  # the system service, installed disabled
    assert members["/usr/share/doc/appliance/service.md"] == "-"
    assert not any(name.startswith(("/home", "/root", "/etc/xdg/autostart")) for name in members)


def test_desktop_entry_is_valid(deb, tmp_path):
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate not found (Debian package: desktop-file-utils)")
    # Extract only the menu entry, from the package's data archive.
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as tar_stream:
        with tarfile.open(fileobj=tar_stream.stdout, mode="r|") as archive:
            for member in archive:
                if member.name == "./usr/share/applications/appliance.desktop":
                    entry = tmp_path / "appliance.desktop"
                    entry.write_bytes(archive.extractfile(member).read())
                    break
        tar_stream.stdout.close()
        tar_stream.wait(60)
    result = _run("desktop-file-validate", str(entry), check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    text = entry.read_text()
    assert "\nExec=appliance\n" in text and "\nIcon=appliance\n" in text


def _status() -> str:
    """dpkg's status of the package: "installed", "config-files" (removed, not purged) or "not-installed"."""
    result = _run("dpkg-query", "-W", "-f", "${Status}", PACKAGE, check=False)
    return result.stdout.split()[-1] if result.returncode == 0 and result.stdout.split() else "not-installed"


def _installed() -> bool:
    return _status() == "installed"


@pytest.fixture
def installed_deb(deb):
    """The package installed with dpkg; removed (purged) afterwards even when the test fails."""
    if os.geteuid() != 0:
        pytest.skip("installing the .deb needs root (CI runs as root)")
    if shutil.which("dpkg") is None:
        pytest.skip("installing the .deb needs dpkg")
    if _status() != "not-installed" or Path("/opt/appliance").exists():
        pytest.skip("an appliance package (or /opt/appliance) is already on this machine: not touching it")
    try:
        started = time.monotonic()
        _run("dpkg", "-i", str(deb), timeout=300)
        MEASURED["dpkg_install_seconds"] = round(time.monotonic() - started, 1)
        yield deb
    finally:
        if _status() != "not-installed" or Path("/opt/appliance").exists():
            _run("dpkg", "--purge", PACKAGE, timeout=300, check=False)


def test_install_run_and_remove(installed_deb, tmp_path):
    assert Path("/usr/bin/appliance").resolve() == Path("/opt/appliance/appliance")
    assert Path("/usr/share/applications/appliance.desktop").is_file()
    assert Path("/usr/share/icons/hicolor/256x256/apps/appliance.png").is_file()

    app = Server.start(["/usr/bin/appliance", "serve", "--rest_api_port", "0", "--port", "0"], home=tmp_path)
    try:
        MEASURED["first_predict_installed_seconds"] = round(app.first_predict({"input": [[3.0] * 64]}), 2)
        health = app.wait_ready()
        assert {m["name"] for m in health["models"]} == {"digits", "iris"}
        assert all(m["base_path"].startswith("/opt/appliance/") for m in health["models"])
        iris = app.post("/v1/models/iris:predict", {"instances": [[6.3, 3.3, 6.0, 2.5]]})
        assert iris.status_code == 200 and iris.json()["predictions"][0]["class"] == 2, iris.text
        code = app.stop()
    finally:
        app.kill()
    assert code == 0, app.output
    assert "Traceback" not in app.output

    _run("dpkg", "-r", PACKAGE, timeout=300)
    assert not _installed()
    assert not Path("/opt/appliance").exists()
    assert not os.path.lexists("/usr/bin/appliance")
    assert not Path("/usr/share/applications/appliance.desktop").exists()
    assert not Path("/usr/share/icons/hicolor/256x256/apps/appliance.png").exists()
    # The user's own files are the user's: nothing of the run above was touched by the removal.
    assert (tmp_path / "config").is_dir()


def _models_config(version: int) -> str:
    iris = "/opt/appliance/_internal/models/iris"  # readable by the service's user; /home and /root are hidden
    return (
        f'model_config_list {{ config {{ name: "flower" base_path: "{iris}" model_platform: "tensorflow" '
        f"model_version_policy {{ specific {{ versions: {version} }} }} }} }}\n"
    )


def test_the_service_under_systemd(installed_deb):
    """dpkg -i, systemctl enable --now, /predict, systemctl reload under load, dpkg -r and --purge."""
    if not Path("/run/systemd/system").is_dir():
        pytest.skip("needs systemd as PID 1 (the Linux workflow's runner; not a container or this sandbox)")
    unit, wants = "appliance.service", Path("/etc/systemd/system/multi-user.target.wants/appliance.service")
    assert _run("systemctl", "is-enabled", unit, check=False).stdout.strip() == "disabled"  # installed disabled
    token = Path("/etc/appliance/token")
    assert token.stat().st_mode & 0o777 == 0o640 and token.owner() == "appliance" and token.group() == "appliance"
    Path("/etc/appliance/environment").write_text("APPLIANCE_FLAGS=--rest_api_port 0 --port 0\n")
    Path("/etc/appliance/models.config").write_text(_models_config(1))

    started = time.monotonic()
    _run("systemctl", "enable", "--now", unit, timeout=600)  # Type=notify: returns once the models loaded
    MEASURED["service_ready_seconds"] = round(time.monotonic() - started, 1)
    assert wants.is_symlink()
    assert _run("systemctl", "is-active", unit, check=False).stdout.strip() == "active"
    url = json.loads(Path("/run/appliance/appliance.json").read_text())["url"]
    health = requests.get(url + "/health", timeout=10).json()
    assert health["status"] == "ready" and {m["name"] for m in health["models"]} == {"digits", "iris", "flower"}
    row = {"instances": [[6.3, 3.3, 6.0, 2.5]]}
    expected_v2 = requests.post(f"{url}/v1/models/iris/versions/2:predict", json=row, timeout=30).json()

    def flower():
        return requests.post(f"{url}/v1/models/flower:predict", json=row, timeout=30).json()

    assert flower() != expected_v2
    with PredictLoad(url, clients=4, body={"model": "flower", "input": row["instances"]}) as load:
        assert wait_for(lambda: len(load.versions) >= 8)
        Path("/etc/appliance/models.config").write_text(_models_config(2))
        _run("systemctl", "reload", unit)
        assert wait_for(lambda: flower() == expected_v2, timeout=120)
        answered = len(load.versions)
        assert wait_for(lambda: len(load.versions) >= answered + 8)
    assert load.failures == []

    def journal() -> str:
        return _run("journalctl", "--no-pager", "-u", unit).stdout

    assert wait_for(lambda: "appliance.service: reloaded" in journal(), timeout=30), journal()
    assert "Traceback" not in journal()

    _run("dpkg", "-r", PACKAGE, timeout=300)  # stops and disables it, leaves the settings and models
    assert _run("systemctl", "is-active", unit, check=False).stdout.strip() != "active"
    assert not os.path.lexists(wants) and not Path("/usr/lib/systemd/system/appliance.service").exists()
    assert not Path("/opt/appliance").exists() and not Path("/run/appliance").exists()
    assert token.is_file()
    _run("dpkg", "--purge", PACKAGE, timeout=300)
    for folder in ("/etc/appliance", "/var/lib/appliance", "/var/cache/appliance"):
        assert not Path(folder).exists(), folder
    assert _run("getent", "passwd", "appliance", check=False).returncode != 0
