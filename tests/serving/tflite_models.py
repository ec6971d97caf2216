"""Build small TensorFlow Lite models for the tests of appliance/serving/runtime/tflite.py.

Each model is a tf.Module with fixed weights, converted with TensorFlow's own
converter, so a test can compare a .tflite file's answers with the same module
run in TensorFlow in-process (:data:`MODULES` holds those).

    dense.tflite    serving_default  x float32 [-1, 4] -> scores float32 [-1, 3] = x @ W + b,
                                                          total float32 [-1] = sum of x's row
    fixed.tflite    the same, with x float32 [1, 4] (a batch of one, fixed)
    nosig.tflite    dense.tflite without its SignatureDefs (as old converters wrote models)
    half.tflite     dense.tflite with float16 weights (its inputs and outputs stay float32)
    int8.tflite     dense.tflite quantized to int8: x int8 [-1, 4] -> scores int8 [-1, 3], total int8 [-1]
    two.tflite      add    a, b float32 [-1, 2] -> sum float32 [-1, 2] = a + b
                    triple n int32 [-1] -> tripled int32 [-1] = 3 * n
    mixed.tflite    text string [-1, 2], flag bool [-1] -> words string [-1, 2] = text,
                                                       negated bool [-1], half float16 [-1] = flag as 1.0 or 0.0

Usage:

    python tests/serving/tflite_models.py --out DIR
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

WEIGHTS = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3)
BIAS = np.array([0.5, -0.25, 0.125], np.float32)


class Dense(tf.Module):
    """scores = x @ WEIGHTS + BIAS and total = the sum of each row of x, for x of ``batch`` rows (None: any)."""

    def __init__(self, batch: int | None = None):
        super().__init__()
        self.weights = tf.constant(WEIGHTS)
        self.bias = tf.constant(BIAS)
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([batch, 4], tf.float32, name="x")])

    def _serve(self, x):
        return {"scores": tf.matmul(x, self.weights) + self.bias, "total": tf.reduce_sum(x, axis=1)}


class TwoSignatures(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 2], tf.float32)])
    def add(self, a, b):
        return {"sum": a + b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def triple(self, n):
        return {"tripled": 3 * n}


class Mixed(tf.Module):
    """Strings, booleans and float16: the dtypes a numeric model does not show."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.string), tf.TensorSpec([None], tf.bool)])
    def serve(self, text, flag):
        half = tf.cast(tf.cast(flag, tf.float32), tf.float16)
        return {"words": tf.reshape(text, [-1, 2]), "negated": tf.logical_not(flag), "half": half}


MODULES = {"dense": Dense(), "fixed": Dense(batch=1), "two": TwoSignatures(), "mixed": Mixed()}


def _convert(module: tf.Module, **options) -> bytes:
    with tempfile.TemporaryDirectory() as saved:
        signatures = {n: getattr(module, n) for n in ("serve", "add", "triple") if hasattr(module, n)}
        if "serve" in signatures:
            signatures = {"serving_default": signatures["serve"]}
        tf.saved_model.save(module, saved, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(signatures))
        for name, value in options.items():
            setattr(converter, name, value)
        return converter.convert()


def _representative_rows():
    rng = np.random.default_rng(0)
    for _ in range(50):
        yield [rng.uniform(-2.0, 2.0, (1, 4)).astype(np.float32)]


def _without_signatures(model: bytes) -> bytes:
    flat = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    flat.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


def build(out: Path) -> dict[str, Path]:
    """Write every model into ``out``; returns their paths by name (dense, fixed, ...)."""
    out.mkdir(parents=True, exist_ok=True)
    dense = _convert(MODULES["dense"])
    models = {
        "dense": dense,
        "fixed": _convert(MODULES["fixed"]),
        "nosig": _without_signatures(dense),
        "half": _convert(
            MODULES["dense"], optimizations=[tf.lite.Optimize.DEFAULT], target_spec=_float16_target_spec()
        ),
        "int8": _convert(
            MODULES["dense"],
            optimizations=[tf.lite.Optimize.DEFAULT],
            representative_dataset=_representative_rows,
            target_spec=_int8_target_spec(),
            inference_input_type=tf.int8,
            inference_output_type=tf.int8,
        ),
        "two": _convert(MODULES["two"]),
        "mixed": _convert(MODULES["mixed"]),
    }
    paths = {}
    for name, content in models.items():
        paths[name] = out / f"{name}.tflite"
        paths[name].write_bytes(content)
    return paths


def _float16_target_spec():
    spec = tf.lite.TargetSpec()
    spec.supported_types = [tf.float16]
    return spec


def _int8_target_spec():
    spec = tf.lite.TargetSpec()
    spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return spec


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    for path in build(parser.parse_args().out).values():
        print(path)
