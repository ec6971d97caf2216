"""The raw in-process signature call, and the memory of a bare process holding TensorFlow and the bundled models.

    python -m bench.inprocess [--calls 2000] [--seconds 2] [--batches 1 32]

Loads every bundled SavedModel version (as the appliance does) with
``tf.saved_model.load``, calls each ``serving_default`` once, reads this
process's RSS, then times ``signatures["serving_default"](pixels=...)`` of each
model's newest version (the one the appliance answers with) per batch size,
for ``--calls`` calls or ``--seconds``, whichever ends first. Prints one JSON
object on stdout.
"""

from __future__ import annotations

import argparse
import json
import time

import tensorflow as tf

from bench.bodies import INSTANCES
from bench.loadgen import summarize
from bench.procstat import rss_mib
from bench.servers.models import SavedModel, bundled_model_names, version_dirs


def time_calls(model: SavedModel, tensor: tf.Tensor, calls: int, seconds: float) -> dict:
    for _ in range(min(100, calls)):  # warm-up
        model.call(tensor)
    samples = []
    started = time.perf_counter()
    while len(samples) < calls and time.perf_counter() - started < seconds:
        before = time.perf_counter()
        model.call(tensor)
        samples.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    return {"calls": len(samples), "calls_per_s": len(samples) / elapsed, **summarize(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()

    loaded = {name: [SavedModel(path) for path in version_dirs(name)] for name in bundled_model_names()}
    for name, versions in loaded.items():
        for model in versions:
            model.call(tf.constant([INSTANCES[name]], tf.float32))
    result = {"rss_mib": rss_mib("self"), "versions_loaded": sum(len(v) for v in loaded.values()), "calls": []}
    for name, versions in loaded.items():
        for batch in args.batches:
            tensor = tf.constant([INSTANCES[name]] * batch, tf.float32)
            timing = time_calls(versions[-1], tensor, args.calls, args.seconds)
            result["calls"].append({"model": name, "version": int(versions[-1].path.name), "batch": batch, **timing})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
