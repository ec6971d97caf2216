"""Measure the installers: bundle size, .deb size, build time, and launch-to-first-/predict, frozen vs source.

    python installer/measure.py                       # measure dist/appliance (and dist/appliance_*.deb)
    python installer/measure.py --build --deb         # build first (installer/build.py), then measure
    python installer/measure.py --bundle DIR --runs 5 # another bundle, 5 launches of each

Start-up is measured from launching the process to the first ``POST /predict`` answered with 200 (polling every
20 ms), for the frozen ``appliance serve --rest_api_port 0 --port 0`` and for
``python -m appliance serve --rest_api_port 0 --port 0`` from this checkout, alternately, each with fresh
per-user folders and no display. ``--drop-caches`` (root) empties the page cache before every launch, for a
cold disk; otherwise the files are usually in memory already.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
URL_LINE = re.compile(r"serving on (http://\S+)")
BODY = json.dumps({"input": [[0.0, 0, 10, 14, 8, 1, 0, 0] * 8]}).encode()


def _isolated_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "APPLIANCE_TOKEN")}
    for variable, folder in (
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_RUNTIME_DIR", "runtime"),
    ):
        (home / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        env[variable] = str(home / folder)
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def time_to_first_predict(command: list[str], cwd: Path, timeout: float = 180) -> float:
    """Seconds from starting ``command`` (an appliance on port 0) to its first successful /predict."""
    with tempfile.TemporaryDirectory(prefix="appliance-measure-") as home:
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=_isolated_env(Path(home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        url: list[str] = []

        def read_url() -> None:
            for line in proc.stdout:
                match = URL_LINE.search(line)
                if match and not url:
                    url.append(match.group(1))

        threading.Thread(target=read_url, daemon=True).start()
        try:
            deadline = started + timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{command} exited with {proc.returncode}")
                if url:
                    request = urllib.request.Request(
                        url[0] + "/predict", data=BODY, headers={"Content-Type": "application/json"}
                    )
                    try:
                        with urllib.request.urlopen(request, timeout=30) as response:
                            if response.status == 200:
                                return time.monotonic() - started
                    except (urllib.error.URLError, ConnectionError):
                        pass
                time.sleep(0.02)
            raise RuntimeError(f"{command}: no successful /predict within {timeout} s")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    sys.path.insert(0, str(HERE))
    import build  # installer/build.py

    bundle = args.bundle.resolve()
    figures: dict[str, object] = _build(bundle, args.deb) if args.build else {}
    executable = build.executable(bundle)
    if not executable.is_file():
        raise SystemExit(f"measure: {executable} not found (build it: python installer/build.py, or use --build)")
    figures["bundle_bytes"] = build.tree_size(bundle)
    if "deb_bytes" not in figures:
        debs = sorted(bundle.parent.glob("appliance_*.deb"))
        if debs:
            figures["deb_bytes"] = debs[-1].stat().st_size
    figures.update(_startup_figures(executable, args.runs, args.drop_caches))
    _print_figures(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bundle", type=Path, default=REPO / "dist" / "appliance", help="the onedir bundle (default: %(default)s)"
    )
    parser.add_argument("--deb", action="store_true", help="with --build: build the .deb too")
    parser.add_argument(
        "--build", action="store_true", help="build first with installer/build.py (into the bundle's parent folder)"
    )
    parser.add_argument("--runs", type=int, default=3, help="launches of each, alternating (default: %(default)s)")
    parser.add_argument("--drop-caches", action="store_true", help="empty the page cache before each launch (root)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def _build(bundle: Path, deb: bool) -> dict[str, object]:
    """Build ``bundle`` (and the .deb) with installer/build.py; the size and time figures it reports."""
    report_file = Path(tempfile.mkstemp(suffix=".json")[1])
    command = [sys.executable, str(HERE / "build.py"), "--dist", str(bundle.parent), "--json", str(report_file)]
    subprocess.run(command + (["--deb"] if deb else []), check=True)
    report = json.loads(report_file.read_text())
    report_file.unlink()
    return {k: v for k, v in report.items() if k.endswith(("_seconds", "_bytes"))}


def _startup_figures(executable: Path, runs: int, drop_caches: bool) -> dict[str, object]:
    """Launch the frozen and the source appliance ``runs`` times each, alternately, to their first /predict."""
    commands = {
        "frozen": [str(executable), "serve", "--rest_api_port", "0", "--port", "0"],
        "source": [sys.executable, "-m", "appliance", "serve", "--rest_api_port", "0", "--port", "0"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    dropped = False
    for _ in range(runs):
        for name, command in commands.items():
            if drop_caches:
                dropped = _drop_caches()
            times[name].append(time_to_first_predict(command, cwd=REPO))
    figures: dict[str, object] = {}
    for name, values in times.items():
        figures[f"first_predict_{name}_seconds"] = round(statistics.median(values), 2)
        figures[f"first_predict_{name}_all"] = [round(v, 2) for v in values]
    figures["page_cache"] = "dropped before each launch" if dropped else "warm"
    return figures


def _print_figures(figures: dict[str, object]) -> None:
    for name, value in figures.items():
        if name.endswith("_bytes"):
            value = f"{value / 2**20:,.0f} MiB"
        elif name.endswith("_seconds"):
            value = f"{value:.2f} s" if name.startswith("first_predict") else f"{value:.0f} s"
        print(f"{name:32} {value}")


if __name__ == "__main__":
    sys.exit(main())
