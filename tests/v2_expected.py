"""What the v2 client tests expect, found without the v2 API: the same process's TF Serving REST API (``POST
/v1/models/<name>:predict``, ``GET /v1/models/<name>/metadata``, ``GET /v1/models/<name>``), TensorFlow itself on
a SavedModel, or the digit a sample image shows; and the checks of an answer against it.

    expected = tfs_predict(server, "digits", {"pixels": pixels})     # {"probabilities": ..., "class": ...}
    assert_same("class", result.as_numpy("class"), expected["class"])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import requests
import tensorflow as tf
from tritonclient.utils import triton_to_np_dtype

from .conftest import ApplianceProcess
from .test_tfserving_example_client import SAMPLES, label_of, pixels_of

TIMEOUT = 30
UNKNOWN = "no_such_model"
# The protocol's datatype of each TensorFlow dtype (the Open Inference Protocol's tensor data types).
V2_DATATYPES = {
    "DT_BOOL": "BOOL",
    "DT_UINT8": "UINT8",
    "DT_INT8": "INT8",
    "DT_INT16": "INT16",
    "DT_INT32": "INT32",
    "DT_INT64": "INT64",
    "DT_HALF": "FP16",
    "DT_FLOAT": "FP32",
    "DT_DOUBLE": "FP64",
    "DT_STRING": "BYTES",
}
CONCURRENCY = 32
ROUNDS = 3


# -- what the same process says through TF Serving's REST API ------------------------------------------------------


def tfs_predict(server: ApplianceProcess, model: str, inputs: dict, signature: str | None = None) -> dict:
    """``POST /v1/models/<model>:predict`` (columnar ``inputs``): the outputs by name, as arrays of the dtypes
    the signature declares."""
    body: dict = {
        "inputs": {name: value if isinstance(value, list) else value.tolist() for name, value in inputs.items()}
    }
    if signature:
        body["signature_name"] = signature
    response = requests.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    described = tfs_signature(server, model, signature or "serving_default")[1]
    if not isinstance(outputs, dict):  # a signature with one output: TF Serving answers its value alone
        (name,) = described
        outputs = {name: outputs}
    return {name: np.asarray(value, triton_to_np_dtype(described[name][0])) for name, value in outputs.items()}


def tfs_signature(server: ApplianceProcess, model: str, signature: str = "serving_default") -> tuple[dict, dict]:
    """The signature's inputs and outputs from ``GET /v1/models/<model>/metadata``: name -> (v2 datatype, shape),
    the shape None when its rank is unknown."""
    response = requests.get(f"{server.url}/v1/models/{model}/metadata", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    definition = response.json()["metadata"]["signature_def"]["signature_def"][signature]

    def tensors(infos: dict) -> dict:
        described = {}
        for alias, info in infos.items():
            shape = info.get("tensor_shape")
            known = shape is not None and not shape.get("unknown_rank", False)
            dims = [int(d["size"]) for d in shape.get("dim", [])] if known else None
            described[alias] = (V2_DATATYPES[info["dtype"]], dims)
        return described

    return tensors(definition["inputs"]), tensors(definition["outputs"])


def available_versions(server: ApplianceProcess, model: str) -> set[str]:
    """The model's AVAILABLE versions, from ``GET /v1/models/<model>``."""
    response = requests.get(f"{server.url}/v1/models/{model}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return {s["version"] for s in response.json()["model_version_status"] if s["state"] == "AVAILABLE"}


def assert_metadata_matches(server: ApplianceProcess, model: str, name, versions, platform, inputs, outputs) -> None:
    """A v2 model metadata answer (its fields, inputs/outputs as name -> (datatype, shape)) against TF Serving's."""
    expected_inputs, expected_outputs = tfs_signature(server, model)
    assert name == model, f"name {name!r}, not {model!r}"
    expected_versions = available_versions(server, model)
    assert set(versions) == expected_versions, f"versions {sorted(versions)}, not {sorted(expected_versions)}"
    assert platform == "tensorflow_savedmodel", f"platform {platform!r}"
    for got, expected in ((inputs, expected_inputs), (outputs, expected_outputs)):
        assert set(got) == set(expected), f"tensors {sorted(got)}, not {sorted(expected)}"
        for tensor, (datatype, shape) in expected.items():
            assert got[tensor][0] == datatype, f"{tensor}: datatype {got[tensor][0]}, not {datatype}"
            if shape is not None:
                assert got[tensor][1] == shape, f"{tensor}: shape {got[tensor][1]}, not {shape}"


# -- requests and their expected answers ---------------------------------------------------------------------------


def digit_pixels() -> tuple[np.ndarray, list[int]]:
    """The digits samples' pixels (one row each) and the digit each shows."""
    return np.stack([pixels_of(s) for s in SAMPLES]).astype(np.float32), [label_of(s) for s in SAMPLES]


def random_pixels(rows: int, seed: int = 7) -> np.ndarray:
    """Rows of 64 pixels in the digits' range (0..16)."""
    return np.random.default_rng(seed).uniform(0.0, 16.0, (rows, 64)).astype(np.float32)


def load_multi_io(tfs_testdata: Path):
    """generated/multi_io's serving_default signature, to call with TensorFlow directly."""
    return tf.saved_model.load(str(tfs_testdata / "generated" / "multi_io" / "1")).signatures["serving_default"]


def tfs_cases(server: ApplianceProcess, multi_io) -> list[tuple[str, dict, dict]]:
    """(model, inputs, expected outputs) for TF Serving's test models, inputs in several datatypes."""
    x = np.array([[1.0], [2.0], [-3.5]], np.float32)
    matrix = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    cases = [
        ("default", {"x": x}, tfs_predict(server, "default", {"x": x})),
        ("matrix", {"x": matrix}, tfs_predict(server, "matrix", {"x": matrix})),
        ("half_plus_three", {"x": x}, tfs_predict(server, "half_plus_three", {"x": x})),
    ]
    inputs = {
        "a": np.array([[1.0, 2.5], [-4.0, 0.5], [0.0, 0.0]], np.float32),
        "b": np.array([3, -7, 0], np.int32),
        "tag": np.array([b"alpha", "\u00e9t\u00e9".encode(), b""], dtype=object),
    }
    computed = multi_io(**{name: tf.constant(value) for name, value in inputs.items()})
    cases.append(("multi_io", inputs, {name: tensor.numpy() for name, tensor in computed.items()}))
    return cases


def assert_same(name: str, got: np.ndarray | None, expected: np.ndarray) -> None:
    """An output as expected: its shape, its dtype, and its values (floats to 1e-4; BYTES as bytes, str being
    UTF-8)."""
    assert got is not None, f"no output {name!r} in the answer"
    assert got.shape == expected.shape, f"{name}: shape {got.shape}, not {expected.shape}"
    assert got.dtype == expected.dtype or expected.dtype == object, f"{name}: dtype {got.dtype}, not {expected.dtype}"
    if expected.dtype == object:
        as_bytes = [v.encode() if isinstance(v, str) else bytes(v) for v in got.reshape(-1)]
        expected_bytes = [v.encode() if isinstance(v, str) else bytes(v) for v in expected.reshape(-1)]
        assert as_bytes == expected_bytes, f"{name}: {as_bytes}, not {expected_bytes}"
    elif expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, err_msg=name)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=name)


def assert_rows(results, expected: dict, first: int) -> None:
    """Each answer of a load is the one for its row of ``expected``: row ``first`` for the first answer, on."""
    for i, result in enumerate(results, first):
        for name, value in expected.items():
            assert_same(f"row {i}: {name}", result.as_numpy(name), value[i : i + 1])
