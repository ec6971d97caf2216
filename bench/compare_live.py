"""What a running comparison (issue 20's replay and compare) costs live requests: c=1 latency with it off and on.

    python bench/compare_live.py [--calls 1500] [--rounds 3] [--replayed 20000] [--pauses-ms 0,10]

Starts ``appliance serve`` on loopback, writes a request log of ``--replayed`` one-row digits requests, then in
``--rounds`` rounds times ``--calls`` sequential TF Serving ``:predict`` calls with no comparison, and again while
``POST .../compare`` replays the log against digits v1 and v2 (cancelled at the end of the round); off and on
alternate, so the machine's other load weighs on both alike. Live calls come back to back (pause 0: the comparison
yields and barely runs) and with a pause between them (sporadic traffic: the comparison runs in the gaps). Prints
p50/p99 per round and how many requests each comparison replayed meanwhile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: import bench from the repository, not from this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # whose profile.py would shadow the standard library's
from bench.predict_latency import percentile, start_appliance, time_http


def write_log(path: Path, rows: np.ndarray) -> Path:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            log = prediction_log_pb2.PredictionLog()
            request = log.predict_log.request
            request.model_spec.name = "digits"
            request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(row[None]))
            writer.write(log.SerializeToString())
    return path


def control(url: str, method: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replayed", type=int, default=20000)
    parser.add_argument("--pauses-ms", default="0,10", help="pauses between live calls to measure, in ms")
    args = parser.parse_args()
    rows = np.random.default_rng(1).uniform(0, 16, (args.replayed, 64)).astype(np.float32)
    log = write_log(Path(tempfile.mkdtemp()) / "requests.tfrecord", rows)
    body = json.dumps({"instances": rows[:1].tolist()}).encode()
    process, url = start_appliance()
    compare = f"{url}/v1/appliance/models/digits/compare"
    pauses = [float(p) / 1e3 for p in args.pauses_ms.split(",")]
    figures: dict[tuple[float, str], list[tuple[float, float]]] = {}
    replayed: dict[float, list[int]] = {pause: [] for pause in pauses}
    try:
        for pause in pauses:
            for _ in range(args.rounds):
                for state in ("off", "on"):
                    if state == "on":
                        body_ = {"version": 1, "against": 2, "log": str(log), "limit": args.replayed}
                        control(compare, "POST", body_)
                    samples = time_http(url, "/v1/models/digits:predict", body, args.calls, pause)
                    figures.setdefault((pause, state), []).append(
                        (statistics.median(samples) * 1e3, percentile(samples, 0.99) * 1e3)
                    )
                    if state == "on":
                        replayed[pause].append(control(compare, "DELETE")["done"])
    finally:
        process.terminate()
        process.wait(timeout=60)
    print(f"c=1 TF Serving :predict, digits, 1 row, {args.calls} calls per round; off and on alternating")
    for (pause, state), values in figures.items():
        p50s = " ".join(f"{p50:.3f}" for p50, _ in values)
        p99s = " ".join(f"{p99:.3f}" for _, p99 in values)
        print(f"pause {pause * 1e3:4.0f} ms, comparison {state:3}  p50 ms: {p50s}   p99 ms: {p99s}")
    for pause in pauses:
        off = statistics.median(p50 for p50, _ in figures[pause, "off"])
        on = statistics.median(p50 for p50, _ in figures[pause, "on"])
        print(
            f"pause {pause * 1e3:4.0f} ms: p50 on/off {on / off:.2f}; "
            f"requests replayed per round while on: {replayed[pause]}"
        )


if __name__ == "__main__":
    main()
