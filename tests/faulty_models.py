"""Build small SavedModels that fail on purpose, for the fault isolation tests (tests/test_fault_isolation.py).

Each model sits in TF Serving layout (``<out>/<name>/<version>/saved_model.pb``),
so one ``appliance serve --models_dir <out>`` serves them all:

    checked/1    serving_default  x float32 [None] -> y float32 [None] = SCALE * sqrt(x); fails with
                                  InvalidArgument "assertion failed: [x must be non-negative] ..." when an x < 0
    allocator/1  serving_default  size int64 [] -> total float32 [] = size * size, the sum of a
                                  [size, size] tensor of ones that it allocates (size 10**7: 400 TB)
    flaky/1      a copy of checked/1, the only version of flaky that loads
    flaky/2      a saved_model.pb of garbage bytes
    flaky/3      checked/1 without its variables/ folder
    flaky/4      checked/1 with its variables data cut short (a copy that never finished)
    broken/1     a saved_model.pb of garbage bytes: a model with no version that loads

Usage:

    python tests/faulty_models.py --out DIR
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import tensorflow as tf

SCALE = 2.0
NEGATIVE_INPUT_MESSAGE = "x must be non-negative"
GARBAGE = b"\x08\x01 this is not a SavedModel \xff\xfe"


class CheckedSqrt(tf.Module):
    """SCALE * sqrt(x), with a run-time check that every x is non-negative; SCALE is a variable."""

    def __init__(self):
        super().__init__()
        self.scale = tf.Variable(SCALE, name="scale")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        with tf.control_dependencies([tf.debugging.assert_non_negative(x, message=NEGATIVE_INPUT_MESSAGE)]):
            return {"y": self.scale * tf.sqrt(x)}


class Allocator(tf.Module):
    """Allocates a [size, size] float32 tensor of ones and returns its sum: size**2, or out of memory."""

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="size")])
    def serve(self, size):
        return {"total": tf.reduce_sum(tf.fill(tf.stack([size, size]), 1.0))}


def _save(module: tf.Module, path: Path) -> None:
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def _garbage_version(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(GARBAGE)


def build_faulty_models(out: Path) -> Path:
    """Write every model of the module docstring under ``out`` (which must not hold them yet); returns ``out``."""
    out = Path(out)
    _save(CheckedSqrt(), out / "checked" / "1")
    _save(Allocator(), out / "allocator" / "1")
    shutil.copytree(out / "checked" / "1", out / "flaky" / "1")
    _garbage_version(out / "flaky" / "2")
    shutil.copytree(out / "checked" / "1", out / "flaky" / "3")
    shutil.rmtree(out / "flaky" / "3" / "variables")
    shutil.copytree(out / "checked" / "1", out / "flaky" / "4")
    for data in (out / "flaky" / "4" / "variables").glob("variables.data-*"):
        data.write_bytes(data.read_bytes()[:3])
    _garbage_version(out / "broken" / "1")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the models into")
    build_faulty_models(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
