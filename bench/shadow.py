"""What shadow traffic (issue 20) costs live requests: c=1 ``/predict`` latency with it off and on.

    python bench/shadow.py [--calls 1000] [--rounds 3] [--json results.json]

Starts ``appliance serve`` on loopback with per-user folders of its own, serving the bundled models (digits v2
answers ``/predict``), and in ``--rounds`` rounds times ``--calls`` sequential one-row ``/predict`` calls with no
shadow traffic, then with digits shadowed to v1 at share 1.0 and at share 0.1 (``PUT .../shadow``); the three
alternate, so the machine's other load weighs on each alike. Prints p50/p99 per state (over every round's calls),
their ratio to off, and what the shadow figures say (requests compared, dropped).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import bench from the repository, not from this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # whose profile.py would shadow the standard library's
from bench.predict_latency import percentile, time_http
from bench.request_log import start

STATES = {"off": None, "share 1.0": 1.0, "share 0.1": 0.1}


def control(url: str, method: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def measure(calls: int, rounds: int) -> dict:
    """Per state: every call's latency in seconds, and the shadow figures of each round that had shadow traffic."""
    body = json.dumps({"model": "digits", "input": [[float(i % 17) for i in range(64)]]}).encode()
    samples: dict[str, list[float]] = {state: [] for state in STATES}
    figures: dict[str, list[dict]] = {state: [] for state in STATES if STATES[state]}
    with tempfile.TemporaryDirectory() as home:
        process, url = start(Path(home), recorded=False)
        shadow = f"{url}/v1/appliance/models/digits/shadow"
        try:
            for _ in range(rounds):
                for state, share in STATES.items():
                    if share:
                        control(shadow, "PUT", {"version": 1, "share": share})
                    samples[state] += time_http(url, "/predict", body, calls)
                    if share:
                        time.sleep(0.2)  # a few rounds of the worker: what is queued gets compared
                        figures[state].append(control(shadow, "DELETE"))
        finally:
            process.terminate()
            process.wait(timeout=60)
    return {"samples": samples, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    measured = measure(args.calls, args.rounds)
    off = statistics.median(measured["samples"]["off"])
    print(f"c=1 /predict, digits v2, 1 row; {args.rounds} rounds of {args.calls} calls per state, alternating")
    print(f"{'shadow to v1':14} {'p50 ms':>8} {'p99 ms':>8} {'p50 / off':>10}  compared  dropped")
    results = {}
    for state, values in measured["samples"].items():
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        rounds = measured["figures"].get(state, [])
        compared, dropped = sum(f["compared"] for f in rounds), sum(f["dropped"] for f in rounds)
        counts = f"{compared:9d} {dropped:8d}" if rounds else ""
        print(f"{state:14} {p50 * 1e3:8.3f} {p99 * 1e3:8.3f} {p50 / off:10.3f}  {counts}")
        results[state] = {"p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3, "compared": compared, "dropped": dropped}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
