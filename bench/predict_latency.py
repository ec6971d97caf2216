"""Latency of one served ``/predict`` call against the raw in-process signature call, measured in one run.

    python bench/predict_latency.py [--calls 2000] [--model digits] [--version 2]

Starts ``appliance serve --rest_api_port 0 --port 0`` on loopback, sends ``--calls`` sequential
requests over one keep-alive connection (``/predict`` and TF Serving's
``:predict``), then times the same signature called in process through
``tf.saved_model.load`` (the usual way) and prints medians, p99s and ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_http(url: str, path: str, body: bytes, calls: int, pause: float = 0.0) -> list[float]:
    """Latencies of ``calls`` sequential POSTs (after a tenth more to warm up), ``pause`` seconds apart."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    samples = []
    for i in range(calls + calls // 10):
        started = time.perf_counter()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        if i >= calls // 10:  # the first tenth warms up
            samples.append(elapsed)
        if pause:
            time.sleep(pause)
    connection.close()
    return samples


def time_in_process(model_dir: Path, pixels: list[list[float]], calls: int) -> list[float]:
    import tensorflow as tf

    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    tensor = tf.constant(pixels, tf.float32)
    samples = []
    for i in range(calls + calls // 10):
        started = time.perf_counter()
        signature(pixels=tensor)
        elapsed = time.perf_counter() - started
        if i >= calls // 10:
            samples.append(elapsed)
    return samples


def start_appliance() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve", "--rest_api_port", "0", "--port", "0", "--log_level", "WARNING"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().split("serving on ", 1)[1].strip()
    for _ in range(600):
        connection = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=10)
        connection.request("GET", "/health")
        if json.loads(connection.getresponse().read())["status"] == "ready":
            return process, url
        time.sleep(0.1)
    raise RuntimeError("the appliance did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--model", default="digits")
    parser.add_argument("--version", type=int, default=2)
    args = parser.parse_args()
    pixels = [[float(i % 17) for i in range(64)]]
    simple = json.dumps({"model": args.model, "version": args.version, "input": pixels}).encode()
    tfs = json.dumps({"instances": pixels}).encode()

    process, url = start_appliance()
    try:
        served = time_http(url, "/predict", simple, args.calls)
        served_tfs = time_http(url, f"/v1/models/{args.model}/versions/{args.version}:predict", tfs, args.calls)
    finally:
        process.terminate()
        process.wait(timeout=60)
    raw = time_in_process(REPO / "models" / args.model / str(args.version), pixels, args.calls)

    rows = [("raw signature call (in process)", raw), ("POST /predict", served), ("POST /v1/...:predict", served_tfs)]
    raw_median = statistics.median(raw)
    print(f"{args.calls} sequential calls each, {args.model} v{args.version}, batch 1, one keep-alive connection")
    print(f"{'':34} {'median ms':>10} {'p99 ms':>8} {'median / raw':>13}")
    for name, samples in rows:
        median = statistics.median(samples)
        print(f"{name:34} {median * 1e3:10.3f} {percentile(samples, 0.99) * 1e3:8.3f} {median / raw_median:13.2f}")


if __name__ == "__main__":
    main()
