"""Build a tiny SavedModel whose tensors are 16-bit floats, for the gRPC tests of half and bfloat16 inputs.

No bundled or TF Serving test model takes them; this one does, in both of TensorFlow's 16-bit types:

    half/1/   serving_default   x: DT_HALF [-1, 2]    -> y: DT_HALF      y = 2x + 1
              bfloat16          b: DT_BFLOAT16 [-1]   -> c: DT_BFLOAT16  c = 2b + 1

Usage:

    python tests/half_models.py --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tensorflow as tf


class _Half(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float16, name="x")])
    def halves(self, x):
        return {"y": 2 * x + 1}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.bfloat16, name="b")])
    def brain_floats(self, b):
        return {"c": 2 * b + 1}


def build_half_model(out: Path) -> Path:
    """Write ``out/half/1``; returns ``out/half`` (a model's base path)."""
    module = _Half()
    base = Path(out) / "half"
    signatures = {"serving_default": module.halves, "bfloat16": module.brain_floats}
    tf.saved_model.save(module, str(base / "1"), signatures=signatures)
    return base


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    print(build_half_model(parser.parse_args(argv).out))


if __name__ == "__main__":
    main()
