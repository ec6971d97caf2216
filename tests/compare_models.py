"""What the comparison tests replay: request logs of predict requests, and a model whose versions disagree on
which inputs they accept.

    sqrt/1   serving_default  x float32 [None] -> y = 2 * sqrt(x); fails ("x must be non-negative") when an x < 0
    sqrt/2   serving_default  x float32 [None] -> y = 2 * sqrt(|x|); answers every input
    slow/1   serving_default  x float32 [None] -> y = 2 * x
    slow/2   the same, after sleeping at least SLOW_SECONDS (in a TensorFlow op: the GIL is free meanwhile)

    write_request_log(path, "digits", [rows, rows, ...])   # a TFRecord of PredictionLog, one predict per item

Usage (the models):

    python tests/compare_models.py --out DIR
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tests.faulty_models import NEGATIVE_INPUT_MESSAGE, SCALE, CheckedSqrt

__all__ = [
    "NEGATIVE_INPUT_MESSAGE",
    "SCALE",
    "SLOW_SECONDS",
    "build_slow_model",
    "build_sqrt_model",
    "write_request_log",
]


class LenientSqrt(tf.Module):
    """SCALE * sqrt(|x|): the version that answers what CheckedSqrt refuses."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": SCALE * tf.sqrt(tf.abs(x))}


def build_sqrt_model(out: Path) -> Path:
    """Write sqrt/1 and sqrt/2 under ``out``; returns ``out``."""
    for version, module in ((1, CheckedSqrt()), (2, LenientSqrt())):
        path = Path(out) / "sqrt" / str(version)
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(out)


SLOW_SECONDS = 0.25


class Doubling(tf.Module):
    """2 * x, optionally after sleeping ``seconds``."""

    def __init__(self, seconds: float = 0.0):
        super().__init__()
        self.microseconds = int(seconds * 1e6)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        if self.microseconds:
            # A dataset op that sleeps: unlike tf.py_function, it survives saving and loading.
            from tensorflow.python.data.experimental.ops.testing import sleep

            x = tf.data.Dataset.from_tensors(x).apply(sleep(self.microseconds)).get_single_element()
        return {"y": 2 * x}


def build_slow_model(out: Path) -> Path:
    """Write slow/1 (quick) and slow/2 (sleeps) under ``out``; returns ``out``."""
    for version, module in ((1, Doubling()), (2, Doubling(SLOW_SECONDS))):
        path = Path(out) / "slow" / str(version)
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(out)


def write_request_log(path: Path, model: str, requests: Iterable[Mapping[str, np.ndarray]], version: int = 1) -> Path:
    """A TFRecord file of one ``PredictionLog`` per request (inputs by alias), as the request log records them."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for inputs in requests:
            log = prediction_log_pb2.PredictionLog()
            request = log.predict_log.request
            request.model_spec.name = model
            request.model_spec.version.value = version
            request.model_spec.signature_name = "serving_default"
            for alias, value in inputs.items():
                request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
            writer.write(log.SerializeToString())
    return Path(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the models into")
    build_sqrt_model(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
