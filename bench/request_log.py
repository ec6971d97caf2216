"""What the request log costs a live request: c=1 ``/predict`` latency with the model recorded (rate 1.0) and not.

    python bench/request_log.py [--calls 500] [--rounds 6]

Starts two ``appliance serve`` processes on loopback, each with per-user folders of its own (one with
``request_log_sampling = { digits = 1.0 }`` in its settings.toml), and times ``--rounds`` alternating rounds of
``--calls`` sequential ``/predict`` calls on each, so both see the same machine load; prints medians and p90s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.predict_latency import REPO, percentile, time_http


def start(home: Path, recorded: bool) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ)
    for variable, folder in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state")):
        (home / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        env[variable] = str(home / folder)
    if recorded:
        (home / "config" / "appliance").mkdir(mode=0o700)
        (home / "config" / "appliance" / "settings.toml").write_text("request_log_sampling = { digits = 1.0 }\n")
    command = ["serve", "--rest_api_port", "0", "--port", "0", "--log_level", "WARNING"]
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", *command, "--models_dir", str(REPO / "models")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = process.stdout.readline().split("serving on ", 1)[1].strip()
    for _ in range(600):
        try:
            urllib.request.urlopen(url + "/health", timeout=10).close()
            return process, url
        except urllib.error.HTTPError:  # 503 while loading
            time.sleep(0.1)
    raise RuntimeError("the appliance did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    body = json.dumps({"model": "digits", "input": [[float(i % 17) for i in range(64)]]}).encode()
    samples: dict[str, list[float]] = {"not recorded": [], "recorded (rate 1.0)": []}
    with tempfile.TemporaryDirectory() as home:
        servers = {name: start(Path(home) / str(i), i == 1) for i, name in enumerate(samples)}
        try:
            for _ in range(args.rounds):
                for name, (_, url) in servers.items():
                    samples[name] += time_http(url, "/predict", body, args.calls)
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=60)
    print(f"{args.rounds} alternating rounds of {args.calls} sequential /predict calls, digits, one connection each")
    print(f"{'':22} {'median ms':>10} {'p90 ms':>8}")
    for name, values in samples.items():
        print(f"{name:22} {statistics.median(values) * 1e3:10.3f} {percentile(values, 0.9) * 1e3:8.3f}")


if __name__ == "__main__":
    main()
