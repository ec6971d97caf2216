"""A model whose warm-up can be counted: its default signature adds its input to a variable, a second one reads it.

    counter/N   serving_default  x float32 [None] -> count: the variable after adding sum(x) to it, one per row
                read             x float32 [None] -> count: the variable as it is, one per row (x is ignored)

Synthetic warm-up (a row of zeros) adds nothing, so after a load the variable holds the sum of the inputs the
version was warmed up with: with requests of x = [1.0], the number of requests replayed.

Usage:

    build_counter_model(tmp_path / "counter", version=1)   # -> the version's folder
    python tests/counter_models.py --out DIR --version 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tensorflow as tf


class Counter(tf.Module):
    def __init__(self):
        super().__init__()
        self.count = tf.Variable(0.0, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def add(self, x):
        total = self.count.assign_add(tf.reduce_sum(x))
        return {"count": tf.fill(tf.shape(x), total)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def read(self, x):
        return {"count": tf.fill(tf.shape(x), self.count.read_value())}


def build_counter_model(base_path: Path, version: int = 1) -> Path:
    """Write version ``version`` of the counter model under ``base_path``; returns the version's folder."""
    module = Counter()
    path = Path(base_path) / str(version)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.add, "read": module.read})
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the model's base path")
    parser.add_argument("--version", type=int, default=1)
    arguments = parser.parse_args(argv)
    build_counter_model(arguments.out, arguments.version)


if __name__ == "__main__":
    main()
