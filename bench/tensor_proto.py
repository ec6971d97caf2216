"""Per-call cost of the gRPC API's tensor codec (``appliance/api/tensor_proto.py``), beside TensorFlow's own.

    python bench/tensor_proto.py [--repeat 5] [--json results.json]

For a (1, 64) float32 input, a (1, 10) float32 output and a (1, 224, 224, 3) float32 image, in both wire forms
(the typed ``float_val`` and ``tensor_content``): ``to_array`` of the tensor as a request brings it (parsed with
``TensorProto.FromString``, as grpcio does) and ``from_array``, with ``tf.make_ndarray`` and
``tf.make_tensor_proto`` (which writes ``tensor_content`` only) for comparison. Prints microseconds per call, the
best of ``--repeat`` timeit runs of at least 0.2 s each.
"""

from __future__ import annotations

import argparse
import json
import timeit

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from appliance.api.tensor_proto import from_array, to_array

SHAPES = {"input (1, 64)": (1, 64), "output (1, 10)": (1, 10), "image (1, 224, 224, 3)": (1, 224, 224, 3)}
FORMS = {"float_val": False, "tensor_content": True}


def microseconds(call, repeat: int) -> float:
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number * 1e6


def measure(repeat: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"tensor": label, "form": form, **timings(rng.random(shape, dtype=np.float32), tensor_content, repeat)}
        for label, shape in SHAPES.items()
        for form, tensor_content in FORMS.items()
    ]


def timings(array: np.ndarray, tensor_content: bool, repeat: int) -> dict:
    received = tensor_pb2.TensorProto.FromString(from_array(array, tensor_content).SerializeToString())
    return {
        "to_array_us": microseconds(lambda: to_array(received, "x"), repeat),
        "from_array_us": microseconds(lambda: from_array(array, tensor_content), repeat),
        "tf_make_ndarray_us": microseconds(lambda: tf.make_ndarray(received), repeat),
        "tf_make_tensor_proto_us": microseconds(lambda: tf.make_tensor_proto(array), repeat)
        if tensor_content
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = measure(args.repeat)
    print(
        f"{'tensor':24} {'form':15} {'to_array':>10} {'from_array':>11} {'make_ndarray':>13} {'make_tensor_proto':>18}"
    )
    for row in rows:
        reference = row["tf_make_tensor_proto_us"]
        print(
            f"{row['tensor']:24} {row['form']:15} {row['to_array_us']:8.1f}us {row['from_array_us']:9.1f}us "
            f"{row['tf_make_ndarray_us']:11.1f}us {'-' if reference is None else f'{reference:.1f}us':>18}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"rows": rows}, out, indent=1)


if __name__ == "__main__":
    main()
