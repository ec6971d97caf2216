"""The Debian package of the appliance, made from the PyInstaller bundle with ``dpkg-deb --build``.

    deb = build_deb(Path("dist/appliance"), Path("dist"))    # -> dist/appliance_0.1.0_amd64.deb

Layout of the package:

    /opt/appliance/                                   the bundle (appliance + _internal/)
    /usr/bin/appliance -> /opt/appliance/appliance    the command (a symlink; the bootloader resolves it)
    /usr/share/applications/appliance.desktop         the menu entry
    /usr/share/icons/hicolor/<N>x<N>/apps/appliance.png   16 ... 256 px, drawn by appliance.tray.icon
    /usr/lib/systemd/system/appliance.service         the system service, installed disabled (docs/service.md)
    /usr/share/doc/appliance/copyright, service.md

Nothing is downloaded at install time and no maintainer script touches the user's files: autostart is the tray's
per-user "Start at login" toggle (~/.config/autostart/appliance.desktop), which stays the user's to switch off.
The menu and icon caches are refreshed by the dpkg triggers of desktop-file-utils and hicolor-icon-theme. The
maintainer scripts (``debian/``) make the service's system user and token, stop the service on removal and
around an upgrade, and on purge remove /etc/appliance, /var/lib/appliance and the user.

Dependencies: everything the server needs is in the bundle except glibc, whose version floor is read from the
bundle's ELF files (the Python and GTK built on the build machine raise it to that machine's glibc: 2.36 on
Debian 12). The GTK tray stack is bundled too, but PyInstaller leaves out on purpose the libraries that must match
the host's display server (libxcb, libwayland-*): those are Recommends, not Depends - every X11/Wayland desktop has
them, and without them (a headless edge box) the appliance serves headless as it does without a display.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from elfdeps import scan_bundle  # type: ignore[no-redef]
else:
    from .elfdeps import scan_bundle

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACKAGE = "appliance"
INSTALL_DIR = "/opt/appliance"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
MAINTAINER = "appliance maintainers <appliance@localhost>"
GLIBC_SONAMES = {
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
    "libanl.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "ld-linux-armhf.so.3",
    "ld-linux.so.2",
}
# Used when dpkg cannot tell (the library is not installed on the build machine).
KNOWN_PACKAGES = {
    "libxcb.so.1": "libxcb1",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libdrm.so.2": "libdrm2",
    "libcrypt.so.1": "libcrypt1",
}

MAINTAINER_SCRIPTS = ("postinst", "prerm", "postrm")
UNIT_DIR = "usr/lib/systemd/system"


def _run(command: list[str], **kwargs) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs).stdout.strip()


def architecture() -> str:
    """The Debian architecture of this machine (``dpkg --print-architecture``)."""
    return _run(["dpkg", "--print-architecture"])


def app_version() -> str:
    sys.path.insert(0, str(REPO))
    try:
        from appliance import __version__
    finally:
        sys.path.remove(str(REPO))
    return __version__


def _package_of(soname: str) -> str | None:
    """The Debian package holding ``soname`` on this machine, else a known name, else None."""
    try:
        for line in _run(["ldconfig", "-p"]).splitlines():
            name, _, path = line.strip().partition(" => ")
            if name.split(" (")[0] == soname and Path(path).exists():
                owner = _run(["dpkg", "-S", str(Path(path).resolve())]).split(":")[0]
                if owner:
                    return owner
    except (OSError, subprocess.CalledProcessError):
        pass
    return KNOWN_PACKAGES.get(soname)


def dependencies(bundle: Path) -> tuple[list[str], list[str], tuple[int, ...] | None]:
    """(Depends, Recommends, glibc floor) of the bundle, read from its ELF files."""
    needs = scan_bundle(bundle)
    floor = needs.glibc_floor
    depends = [f"libc6 (>= {'.'.join(map(str, floor))})" if floor else "libc6"]
    recommends: set[str] = set()
    for soname in sorted(needs.external - GLIBC_SONAMES):
        package = _package_of(soname)
        if package is None:
            print(
                f"deb: warning: no package known for {soname} (needed by {min(needs.needed[soname])})", file=sys.stderr
            )
        elif package != "libc6":
            recommends.add(package)
    return depends, sorted(recommends), floor


def _copy_tree(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``, hard-linking files when both are on one file system (1 GB in a second)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, symlinks=True, copy_function=link_or_copy)


def _normalise_modes(root: Path) -> None:
    """Directories 0755, files 0644 or 0755 (when executable by anyone): what dpkg installs as given."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            (Path(folder) / name).chmod(0o755)
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            status = path.stat()
            mode = status.st_mode & 0o777
            wanted = 0o755 if mode & 0o111 else 0o644
            if mode != wanted:
                if status.st_nlink > 1:  # a hard link into the bundle: change a copy, not the bundle
                    copy = path.with_name(path.name + ".copy")
                    shutil.copy2(path, copy)
                    os.replace(copy, path)
                path.chmod(wanted)


def _installed_size_kib(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            total += path.lstat().st_size if path.is_symlink() else path.stat().st_size
    return (total + 1023) // 1024


def control_text(version: str, arch: str, depends: list[str], recommends: list[str], installed_kib: int) -> str:
    lines = [
        f"Package: {PACKAGE}",
        f"Version: {version}",
        f"Architecture: {arch}",
        f"Maintainer: {os.environ.get('APPLIANCE_DEB_MAINTAINER', MAINTAINER)}",
        f"Installed-Size: {installed_kib}",
        f"Depends: {', '.join(depends)}",
    ]
    if recommends:
        lines.append(f"Recommends: {', '.join(recommends)}")
    lines += [
        "Section: science",
        "Priority: optional",
        "Description: serve TensorFlow models on this computer over a local REST API",
        " appliance serves TensorFlow SavedModels on http://127.0.0.1:8501 with a REST API",
        " compatible with TensorFlow Serving, and shows a tray icon to see what is",
        " served and switch model versions. It bundles its own Python, TensorFlow",
        " and example models (digits, iris): nothing else needs to be installed.",
    ]
    return "\n".join(lines) + "\n"


def build_deb(
    bundle: Path, out_dir: Path, compression: str = "zstd", level: int | None = None, work_dir: Path | None = None
) -> Path:
    """Package the onedir ``bundle`` (the folder holding the ``appliance`` executable) as a .deb in ``out_dir``.

    ``compression`` and ``level`` go to dpkg-deb (``-Z``, ``-z``). Measured on the 1.3 GB bundle (2 cores): zstd
    level 3 (dpkg-deb's default) ~460 MiB in ~10 s; 9: ~417 MiB in ~40 s; 19: ~375 MiB in ~10 min.
    """
    bundle = bundle.resolve()
    if not (bundle / PACKAGE).is_file():
        raise FileNotFoundError(f"{bundle / PACKAGE} not found: build the bundle first (installer/build.py)")
    version, arch = app_version(), architecture()
    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / f"{PACKAGE}_{version}_{arch}.deb"
    # Stage next to the output so that hard links work (same file system as the bundle, usually).
    staging_parent = work_dir or out_dir
    staging_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deb-root-", dir=staging_parent) as staging:
        root = Path(staging)
        _copy_tree(bundle, root / INSTALL_DIR.lstrip("/"))
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin" / PACKAGE).symlink_to(f"{INSTALL_DIR}/{PACKAGE}")
        applications = root / "usr/share/applications"
        applications.mkdir(parents=True)
        shutil.copyfile(HERE / "appliance.desktop", applications / "appliance.desktop")
        sys.path.insert(0, str(REPO))
        try:
            from appliance.tray.icon import save_icon_png
        finally:
            sys.path.remove(str(REPO))
        for size in ICON_SIZES:
            folder = root / f"usr/share/icons/hicolor/{size}x{size}/apps"
            folder.mkdir(parents=True)
            save_icon_png(folder / "appliance.png", size=size)
        units = root / UNIT_DIR
        units.mkdir(parents=True)
        shutil.copyfile(HERE / "appliance.service", units / "appliance.service")
        doc = root / "usr/share/doc" / PACKAGE
        doc.mkdir(parents=True)
        shutil.copyfile(REPO / "docs" / "service.md", doc / "service.md")
        (doc / "copyright").write_text(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            "Upstream-Name: appliance\n\nFiles: *\nLicense: Apache-2.0\n"
            " The bundled Python, TensorFlow, GTK and other libraries keep their own licenses;\n"
            " see /opt/appliance/_internal/tensorflow/THIRD_PARTY_NOTICES.txt.\n"
            " On Debian systems the Apache-2.0 license is in /usr/share/common-licenses/Apache-2.0.\n",
            encoding="utf-8",
        )
        debian = root / "DEBIAN"
        debian.mkdir()
        for script in MAINTAINER_SCRIPTS:
            shutil.copyfile(HERE / "debian" / script, debian / script)
        root.chmod(0o755)
        _normalise_modes(root)
        for script in MAINTAINER_SCRIPTS:
            (debian / script).chmod(0o755)
        depends, recommends, _ = dependencies(bundle)
        (debian / "control").write_text(
            control_text(version, arch, depends, recommends, _installed_size_kib(root)), encoding="utf-8"
        )
        (debian / "control").chmod(0o644)
        options = [f"-Z{compression}"] + ([f"-z{level}"] if level is not None else [])
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", *options, "--build", str(root), str(deb)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return deb


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description="Package a built bundle as a .deb (installer/build.py --deb does this)."
    )
    parser.add_argument("bundle", type=Path, help="the onedir bundle, e.g. dist/appliance")
    parser.add_argument("--out", type=Path, default=None, help="where to write the .deb (default: next to the bundle)")
    parser.add_argument("-Z", dest="compression", default="zstd", choices=("zstd", "xz", "gzip"))
    parser.add_argument("-z", dest="level", type=int, default=None, help="compression level (dpkg-deb's -z)")
    arguments = parser.parse_args()
    print(build_deb(arguments.bundle, arguments.out or arguments.bundle.parent, arguments.compression, arguments.level))
