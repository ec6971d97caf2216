"""Large JSON tensors: images as nested lists, parsed, decoded and served, against orjson alone and the raw call.

    python bench/large_json.py [--calls 20] [--json results.json]

Builds a small image model (a 1x1 convolution and a mean over the pixels, any height and width) as a SavedModel
in a temporary folder and serves it with ``appliance serve --rest_api_port 0 --port 0``. For each body
(1x224x224x3 and 1x360x480x3 floats; row ``instances``, columnar ``inputs``, and ``/predict``'s ``input``;
and the 1x224x224x3 image as integers 0-255, row) it times, in this process after
``gc.freeze()`` as the server does: ``orjson.loads`` alone, the appliance's ``parse_predict_document`` +
decode, and the raw signature call; then the served request over one keep-alive connection. Goal per body:
served p50 <= raw call p50 + 1.5 x orjson p50. The served answers are checked against the raw call's.
Last, the time to write a large answer: ``encode_predict_response`` of a 1x224x224 float32 and int64 output.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import orjson

import appliance
from appliance.api import codec

SHAPES = [(1, 224, 224, 3), (1, 360, 480, 3)]
FORMATS = ["row", "columnar", "predict"]  # {"instances": ...}, {"inputs": ...}, POST /predict {"input": ...}
INTS = "row-uint8"  # {"instances": ...} of integer literals: a uint8 image sent to the float input
MODEL = "image"


def build_model(path: Path) -> None:
    import tensorflow as tf

    class ImageModel(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(tf.random.stateless_normal([1, 1, 3, 8], seed=[1, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="image")])
        def serve(self, image):
            features = tf.nn.relu(tf.nn.conv2d(image, self.kernel, 1, "SAME"))
            return {"scores": tf.reduce_mean(features, axis=[1, 2])}

    model = ImageModel()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})


def body_of(image: np.ndarray, fmt: str) -> bytes:
    if fmt == INTS:
        return orjson.dumps({"instances": image.astype(np.uint8).tolist()})
    if fmt == "row":
        return orjson.dumps({"instances": image.tolist()})
    if fmt == "columnar":
        return orjson.dumps({"inputs": image.tolist()})
    return orjson.dumps({"model": MODEL, "input": image.tolist()})


def decoded(body: bytes, fmt: str) -> np.ndarray:
    """What the appliance does with the body before calling the model: parse_predict_document, then the codec."""
    document = codec.parse_predict_document(body)
    if fmt == "predict":
        return codec.decode_input_value(document["input"], {"image": "DT_FLOAT"})["image"]
    return codec.decode_predict_inputs(document, {"image": "DT_FLOAT"})[0]["image"]


def timed(calls: int, function, *args) -> list[float]:
    function(*args)  # warm-up
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        function(*args)
        samples.append(time.perf_counter() - started)
    return samples


def encode_times(calls: int) -> dict[str, float]:
    """Median ms to write {"predictions": ...} for a 1x224x224 output (a segmentation map), float32 and int64."""
    rng = np.random.default_rng(1)
    outputs = {"float32": rng.random((1, 224, 224), dtype=np.float32), "int64": rng.integers(0, 21, (1, 224, 224))}
    return {
        name: statistics.median(timed(calls, codec.encode_predict_response, {"mask": tensor}, codec.ROW)) * 1e3
        for name, tensor in outputs.items()
    }


def start_appliance(models: Path, home: Path) -> tuple[subprocess.Popen, str]:
    """``appliance serve`` on a free loopback port, serving only `models`, with per-user folders under `home`."""
    env = dict(os.environ, PYTHONPATH=str(Path(appliance.__file__).resolve().parents[1]))
    for variable in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        folder = home / variable.lower()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        env[variable] = str(folder)
    command = [
        sys.executable,
        "-m",
        "appliance",
        "serve",
        "--rest_api_port",
        "0",
        "--port",
        "0",
        "--models_dir",
        str(models),
    ]
    process = subprocess.Popen(
        [*command, "--log_level", "WARNING"], cwd=home, env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().split("serving on ", 1)[1].strip()
    parts = urlsplit(url)
    for _ in range(600):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        connection.request("GET", "/health")
        if json.loads(connection.getresponse().read())["status"] == "ready":
            return process, url
        time.sleep(0.1)
    raise RuntimeError("the appliance did not become ready")


def time_served(url: str, fmt: str, body: bytes, calls: int) -> tuple[list[float], np.ndarray]:
    """Sequential requests over one keep-alive connection; the samples and the answer's scores."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    path = "/predict" if fmt == "predict" else f"/v1/models/{MODEL}:predict"
    answer = b""

    def request():
        nonlocal answer
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {answer[:300]!r}")

    samples = timed(calls, request)
    connection.close()
    document = json.loads(answer)
    scores = document["outputs"] if fmt == "columnar" else document["predictions"]
    return samples, np.asarray(scores, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = [rng.random(shape, dtype=np.float32) for shape in SHAPES]
    pixels = np.floor(images[0] * 256)  # 0-255 as float32: what the integer body decodes to
    cases = [(image, FORMATS) for image in images] + [(pixels, [INTS])]
    with tempfile.TemporaryDirectory(prefix="large-json-") as folder:
        root = Path(folder)
        build_model(root / "models" / MODEL / "1")
        signature = tf.saved_model.load(str(root / "models" / MODEL / "1")).signatures["serving_default"]
        gc.collect()
        gc.freeze()  # as the appliance does once its models are loaded

        rows, bodies = [], []
        for image, formats in cases:
            tensor = tf.constant(image)
            raw = statistics.median(timed(args.calls, lambda image: signature(image=image), tensor))
            expected = signature(image=tensor)["scores"].numpy()
            for fmt in formats:
                body = body_of(image, fmt)
                bodies.append(body)
                assert np.array_equal(decoded(body, fmt), image), "decoded tensor differs from the image"
                rows.append(
                    {
                        "shape": list(image.shape),
                        "format": fmt,
                        "body_mb": len(body) / 1e6,
                        "orjson_ms": statistics.median(timed(args.calls, orjson.loads, body)) * 1e3,
                        "parse_decode_ms": statistics.median(timed(args.calls, decoded, body, fmt)) * 1e3,
                        "raw_ms": raw * 1e3,
                        "expected": expected,
                    }
                )

        process, url = start_appliance(root / "models", root / "home")
        try:
            for row, body in zip(rows, bodies):
                samples, scores = time_served(url, row["format"], body, args.calls)
                row["served_ms"] = statistics.median(samples) * 1e3
                row["answer_matches_raw"] = bool(np.allclose(scores, row.pop("expected"), rtol=1e-6, atol=0))
        finally:
            process.terminate()
            process.wait(timeout=60)

    for row in rows:
        row["parse_decode_over_orjson"] = row["parse_decode_ms"] / row["orjson_ms"]
        row["goal_ms"] = row["raw_ms"] + 1.5 * row["orjson_ms"]
        row["goal_met"] = row["served_ms"] <= row["goal_ms"]
    print(f"{args.calls} calls each (medians, ms); goal: served <= raw call + 1.5 x orjson")
    header = f"{'body':>24} {'MB':>5} {'orjson':>7} {'parse+decode':>12} {'÷orjson':>7} {'raw call':>8}"
    print(header + f" {'served':>7} {'goal':>7}  met")
    for row in rows:
        name = "x".join(map(str, row["shape"])) + " " + row["format"]
        print(
            f"{name:>24} {row['body_mb']:5.1f} {row['orjson_ms']:7.1f} {row['parse_decode_ms']:12.1f}"
            f" {row['parse_decode_over_orjson']:7.2f} {row['raw_ms']:8.1f} {row['served_ms']:7.1f}"
            f" {row['goal_ms']:7.1f}  {'yes' if row['goal_met'] else 'NO'}"
        )
    encode_ms = encode_times(args.calls)
    print("writing a 1x224x224 answer: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in encode_ms.items()))
    if args.json:
        args.json.write_text(json.dumps({"calls": args.calls, "rows": rows, "encode_ms": encode_ms}, indent=2))


if __name__ == "__main__":
    main()
