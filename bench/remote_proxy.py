"""The cost of the remote proxy hop, and how fast the appliance falls back and recovers, measured in one run.

    python bench/remote_proxy.py [--calls 1000]

Starts a "remote" appliance (TF Serving's REST API) and a front appliance with
``--remote_url`` pointing at it, all on loopback. Prints median and p99 latency
of ``:predict`` sent to the remote directly and through the front; then kills
the remote and times how long until the front reports it down (every request in
between is answered locally), restarts it on the same port and times how long
until the front sends traffic to it again.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BODY = {"instances": [[float(i % 17) for i in range(64)]]}
PATH = "/v1/models/digits/versions/2:predict"


def start(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve", "--log_level", "WARNING", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().split("serving on ", 1)[1].strip()
    while requests.get(url + "/health", timeout=10).json()["status"] != "ready":
        time.sleep(0.1)
    return process, url


def latencies(session: requests.Session, url: str, calls: int) -> list[float]:
    samples = []
    for i in range(calls + calls // 10):
        started = time.perf_counter()
        response = session.post(url + PATH, json=BODY, timeout=30)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        if i >= calls // 10:
            samples.append(elapsed)
    return samples


def remote_state(front: str) -> str:
    return requests.get(front + "/health", timeout=10).json()["remote"]["state"]


def time_until(condition, poll: float = 0.01, limit: float = 120) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise RuntimeError("condition never held")
        time.sleep(poll)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--probe_seconds", type=float, default=0.5)
    args = parser.parse_args()
    remote, remote_url = start("--rest_api_port", "0")
    port = remote_url.rsplit(":", 1)[1]
    front, front_url = start(
        "--rest_api_port",
        "0",
        "--remote_url",
        remote_url,
        "--remote_probe_seconds",
        str(args.probe_seconds),
        "--remote_timeout_seconds",
        "2",
    )
    try:
        time_until(lambda: remote_state(front_url) == "up")
        with requests.Session() as session:
            direct = latencies(session, remote_url, args.calls)
            proxied = latencies(session, front_url, args.calls)
            assert session.post(front_url + PATH, json=BODY).headers["X-Appliance-Backend"] == "remote"
        print(f"{args.calls} sequential :predict calls, digits v2, one keep-alive connection")
        for name, samples in (("remote directly", direct), ("through the front (proxy hop)", proxied)):
            print(
                f"  {name:32} median {statistics.median(samples) * 1e3:6.3f} ms   "
                f"p99 {statistics.quantiles(samples, n=100)[98] * 1e3:6.3f} ms"
            )
        print(
            f"  added by the hop: median {(statistics.median(proxied) - statistics.median(direct)) * 1e3:.3f} ms, "
            f"p99 {(statistics.quantiles(proxied, n=100)[98] - statistics.quantiles(direct, n=100)[98]) * 1e3:.3f} ms"
        )

        remote.send_signal(signal.SIGKILL)
        remote.wait()
        down = time_until(lambda: remote_state(front_url) == "down")
        answered = requests.post(front_url + PATH, json=BODY, timeout=30)
        print(
            f"remote killed: front reports it down after {down:.2f} s (probe every {args.probe_seconds} s); "
            f"requests meanwhile answered {answered.status_code} by {answered.headers['X-Appliance-Backend']}"
        )
        remote, _ = start("--rest_api_port", port)
        back = time_until(
            lambda: requests.post(front_url + PATH, json=BODY, timeout=30).headers["X-Appliance-Backend"] == "remote"
        )
        print(f"remote restarted (ready): traffic back on it after {back:.2f} s")
    finally:
        for process in (front, remote):
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
