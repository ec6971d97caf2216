"""Build the double-click installers of the appliance.

    python installer/build.py                  # -> dist/appliance/ (the onedir bundle: dist/appliance/appliance)
    python installer/build.py --deb            # + dist/appliance_<version>_<arch>.deb            (Linux)
    python installer/build.py --setup          # + dist/appliance-<version>-setup.exe (Inno Setup, Windows)
    python installer/build.py --dmg            # + dist/appliance-<version>.dmg (from dist/appliance.app, macOS)
    python installer/build.py --bundle DIR --deb --dist OUT   # package an existing bundle, no PyInstaller run

Run it with the Python whose environment has the appliance's dependencies and PyInstaller
(``pip install -e '.[installer]'``). ``--dist`` (default ``dist/``) and ``--work`` (default ``build/installer/``)
are git-ignored. Each step prints what it made, its size and how long it took; ``--json FILE`` writes the same.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPEC = HERE / "appliance.spec"
ISS = HERE / "windows" / "appliance.iss"


def version() -> str:
    sys.path.insert(0, str(REPO))
    try:
        from appliance import __version__
    finally:
        sys.path.remove(str(REPO))
    return __version__


def tree_size(path: Path) -> int:
    """Bytes on disk of the files under ``path`` (symlinks count as themselves)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            file = Path(folder) / name
            total += file.lstat().st_size
    return total


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def executable(bundle: Path, console: bool = True) -> Path:
    """The appliance's executable in a onedir bundle (the console one on Windows when ``console``)."""
    if sys.platform == "win32":
        return bundle / ("appliance-cli.exe" if console else "appliance.exe")
    return bundle / "appliance"


def build_bundle(dist: Path, work: Path, clean: bool = False) -> tuple[Path, float]:
    """Run PyInstaller on installer/appliance.spec; returns the bundle folder and the seconds it took."""
    command = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level",
        "WARN",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
        str(SPEC),
    ]
    if clean:
        command.insert(3, "--clean")
    started = time.monotonic()
    # PyInstaller imports TensorFlow in helper processes: keep its C++ start-up logs out of the build's output.
    subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    seconds = time.monotonic() - started
    bundle = dist / "appliance"
    check_bundle(bundle)
    return bundle, seconds


def check_bundle(bundle: Path) -> None:
    """The bundle's executable starts and reports the package's version."""
    exe = executable(bundle)
    if not exe.is_file():
        raise SystemExit(f"build: {exe} is missing")
    result = subprocess.run([str(exe), "--version"], check=False, capture_output=True, text=True, timeout=120)
    expected = f"appliance {version()}"
    if result.returncode != 0 or result.stdout.strip() != expected:
        raise SystemExit(
            f"build: `{exe} --version` printed {result.stdout!r} {result.stderr!r} "
            f"(exit {result.returncode}), expected {expected!r}"
        )


def build_deb(bundle: Path, dist: Path, work: Path, compression: str, level: int | None) -> tuple[Path, float]:
    sys.path.insert(0, str(HERE))
    try:
        from linux.deb import build_deb as make_deb
    finally:
        sys.path.remove(str(HERE))
    started = time.monotonic()
    deb = make_deb(bundle, dist, compression=compression, level=level, work_dir=work)
    return deb, time.monotonic() - started


def find_iscc() -> str:
    candidates = [shutil.which("iscc"), shutil.which("ISCC")]
    for variable in ("ProgramFiles(x86)", "ProgramFiles", "LOCALAPPDATA"):
        base = os.environ.get(variable)
        if base:
            candidates += [
                str(Path(base) / "Inno Setup 6" / "ISCC.exe"),
                str(Path(base) / "Programs" / "Inno Setup 6" / "ISCC.exe"),
            ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("build: Inno Setup's ISCC.exe not found (choco install innosetup)")


def build_setup(bundle: Path, dist: Path, work: Path) -> tuple[Path, float]:
    """The Windows installer: Inno Setup compiles installer/windows/appliance.iss around the bundle."""
    from PIL import Image

    sys.path.insert(0, str(REPO))
    try:
        from appliance.tray.icon import save_icon_png
    finally:
        sys.path.remove(str(REPO))
    work.mkdir(parents=True, exist_ok=True)
    icon = work / "setup-icon.ico"
    Image.open(save_icon_png(work / "setup-icon.png", size=256)).save(
        icon, sizes=[(16, 16), (32, 32), (48, 48), (256, 256)]
    )
    started = time.monotonic()
    subprocess.run(
        [
            find_iscc(),
            f"/DAppVersion={version()}",
            f"/DBundleDir={bundle.resolve()}",
            f"/DOutputDir={dist.resolve()}",
            f"/DSetupIcon={icon.resolve()}",
            str(ISS),
        ],
        check=True,
    )
    return dist / f"appliance-{version()}-setup.exe", time.monotonic() - started


def build_dmg(dist: Path, work: Path) -> tuple[Path, float]:
    """The macOS disk image: appliance.app beside a link to /Applications, compressed (UDZO) by hdiutil."""
    app = dist / "appliance.app"
    if not app.is_dir():
        raise SystemExit(f"build: {app} is missing (the spec makes it when run on macOS)")
    started = time.monotonic()
    staging = work / "dmg"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    subprocess.run(["ditto", str(app), str(staging / "appliance.app")], check=True)
    (staging / "Applications").symlink_to("/Applications")
    dmg = dist / f"appliance-{version()}.dmg"
    subprocess.run(
        ["hdiutil", "create", "-volname", "appliance", "-srcfolder", str(staging), "-ov", "-format", "UDZO", str(dmg)],
        check=True,
    )
    shutil.rmtree(staging, ignore_errors=True)
    return dmg, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dist", type=Path, default=REPO / "dist", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / "build" / "installer",
        help="PyInstaller's work folder (default: %(default)s)",
    )
    parser.add_argument("--bundle", type=Path, help="package this existing bundle instead of running PyInstaller")
    parser.add_argument("--clean", action="store_true", help="empty PyInstaller's cache and work folder first")
    parser.add_argument("--deb", action="store_true", help="also build the Debian package (Linux)")
    parser.add_argument(
        "--deb-compression",
        default="zstd",
        choices=("zstd", "xz", "gzip"),
        help="dpkg-deb compression (default: %(default)s; xz for dpkg older than 1.21.18)",
    )
    parser.add_argument(
        "--deb-level",
        type=int,
        default=None,
        help="compression level (default: dpkg-deb's; zstd 3: ~460 MiB in ~10 s, 9: ~417 MiB "
        "in ~40 s, 19: ~375 MiB in ~10 min on 2 cores)",
    )
    parser.add_argument("--setup", action="store_true", help="also build the Inno Setup installer (Windows)")
    parser.add_argument("--dmg", action="store_true", help="also build the disk image (macOS)")
    parser.add_argument("--json", type=Path, help="write what was built (paths, sizes, seconds) to this file")
    args = parser.parse_args(argv)

    dist, work = args.dist.resolve(), args.work.resolve()
    report: dict[str, object] = {"version": version()}
    if args.bundle:
        bundle = args.bundle.resolve()
        check_bundle(bundle)
    else:
        bundle, seconds = build_bundle(dist, work, clean=args.clean)
        report["build_seconds"] = round(seconds, 1)
        print(f"bundle: built in {seconds:.0f} s")
    report["bundle"] = str(bundle)
    report["bundle_bytes"] = tree_size(bundle)
    print(f"bundle: {bundle} ({mib(report['bundle_bytes'])})")
    if args.deb:
        deb, seconds = build_deb(bundle, dist, work, args.deb_compression, args.deb_level)
        report.update(deb=str(deb), deb_bytes=deb.stat().st_size, deb_seconds=round(seconds, 1))
        print(f"deb: {deb} ({mib(deb.stat().st_size)}, {seconds:.0f} s)")
    if args.setup:
        setup, seconds = build_setup(bundle, dist, work)
        report.update(setup=str(setup), setup_bytes=setup.stat().st_size, setup_seconds=round(seconds, 1))
        print(f"setup: {setup} ({mib(setup.stat().st_size)}, {seconds:.0f} s)")
    if args.dmg:
        dmg, seconds = build_dmg(dist, work)
        report.update(dmg=str(dmg), dmg_bytes=dmg.stat().st_size, dmg_seconds=round(seconds, 1))
        print(f"dmg: {dmg} ({mib(dmg.stat().st_size)}, {seconds:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
