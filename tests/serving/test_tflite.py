"""TensorFlow Lite models served through LiteRT: answers equal TensorFlow's, signatures, batches, errors, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from appliance.errors import Code, FailedPrecondition, InvalidArgument, NotFound, ServingError
from appliance.serving.batching import BatchingParameters, BatchingServable, is_batchable
from appliance.serving.runtime.local_tf import LocalTFRuntime
from appliance.serving.runtime.tflite import load_tflite
from appliance.serving.runtime.warmup import warm_up

from . import tflite_models
from .tflite_models import MODULES

RNG = np.random.default_rng(17)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return tflite_models.build(tmp_path_factory.mktemp("tflite"))


def in_tensorflow(module: str, function: str = "serve", **inputs) -> dict[str, np.ndarray]:
    """The tf.Module the .tflite file was converted from, run in TensorFlow."""
    return {k: v.numpy() for k, v in getattr(MODULES[module], function)(**inputs).items()}


def rows(n: int) -> np.ndarray:
    return RNG.uniform(-2.0, 2.0, (n, 4)).astype(np.float32)


def test_outputs_equal_tensorflow_and_the_signature_is_batchable(files):
    servable = load_tflite(files["dense"])
    signature = servable.signatures["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert {a: (t.dtype, t.shape) for a, t in signature.inputs.items()} == {"x": ("DT_FLOAT", (-1, 4))}
    assert {a: (t.dtype, t.shape) for a, t in signature.outputs.items()} == {
        "scores": ("DT_FLOAT", (-1, 3)),
        "total": ("DT_FLOAT", (-1,)),
    }
    assert is_batchable(signature)
    for n in (1, 7, 1, 3, 3, 0):  # a dynamic batch: the input resized to each request's rows
        x = rows(n)
        outputs = servable.predict("", {"x": x})
        expected = in_tensorflow("dense", x=x)
        assert set(outputs) == {"scores", "total"}
        for alias in outputs:
            assert outputs[alias].shape == expected[alias].shape
            np.testing.assert_allclose(outputs[alias], expected[alias], rtol=1e-5, atol=1e-6)
    assert set(servable.predict("serving_default", {"x": rows(2)}, output_filter=["total"])) == {"total"}
    servable.close()


def test_a_model_fixed_to_one_row_answers_several_rows_one_call_each(files):
    servable = load_tflite(files["fixed"])
    signature = servable.signatures["serving_default"]
    assert signature.inputs["x"].shape == (1, 4) and not is_batchable(signature)
    for n in (1, 5):
        x = rows(n)
        outputs = servable.predict("", {"x": x})
        expected = in_tensorflow("dense", x=x)  # the same weights, any batch
        np.testing.assert_allclose(outputs["scores"], expected["scores"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outputs["total"], expected["total"], rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidArgument, match=r'^input "x" expects float32 \[1, 4\]; got \[2, 3\]$'):
        servable.predict("", {"x": np.zeros((2, 3), np.float32)})
    with pytest.raises(InvalidArgument, match=r'input "x" expects float32 \[1, 4\]; got \[0, 4\]'):
        servable.predict("", {"x": np.zeros((0, 4), np.float32)})


def test_a_model_without_signatures_is_one_serving_default_of_its_tensor_names(files):
    servable = load_tflite(files["nosig"])
    assert list(servable.signatures) == ["serving_default"]
    signature = servable.signatures["serving_default"]
    plain = Interpreter(model_path=str(files["nosig"]))
    assert plain.get_signature_list() == {}
    assert list(signature.inputs) == [d["name"] for d in plain.get_input_details()]
    assert sorted(signature.outputs) == sorted(d["name"] for d in plain.get_output_details())
    (x_alias,) = signature.inputs
    for n in (3, 3, 1, 3):  # resized when the rows change, not when they stay
        x = rows(n)
        outputs = servable.predict("", {x_alias: x})
        expected = in_tensorflow("dense", x=x)
        for value in outputs.values():
            name = "scores" if value.ndim == 2 else "total"
            np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6)


def test_every_signature_of_a_model_runs(files):
    servable = load_tflite(files["two"])
    assert sorted(servable.signatures) == ["add", "triple"]
    assert servable.signatures["triple"].inputs["n"].dtype == "DT_INT32"
    a, b = RNG.normal(size=(4, 2)).astype(np.float32), RNG.normal(size=(4, 2)).astype(np.float32)
    np.testing.assert_allclose(
        servable.predict("add", {"a": a, "b": b})["sum"], in_tensorflow("two", "add", a=a, b=b)["sum"]
    )
    n = np.array([1, -2, 40], np.int32)
    tripled = servable.predict("triple", {"n": n})["tripled"]
    assert tripled.dtype == np.int32
    np.testing.assert_array_equal(tripled, in_tensorflow("two", "triple", n=n)["tripled"])
    with pytest.raises(FailedPrecondition, match=r'Serving signature key "serving_default" not found.*add, triple'):
        servable.predict("", {"n": n})


def test_float16_weights_and_int8_quantized_models(files):
    x = rows(6)
    half = load_tflite(files["half"]).predict("", {"x": x})
    np.testing.assert_allclose(half["scores"], in_tensorflow("dense", x=x)["scores"], rtol=1e-2, atol=1e-2)

    servable = load_tflite(files["int8"])
    signature = servable.signatures["serving_default"]
    assert signature.inputs["x"].dtype == "DT_INT8" and signature.outputs["scores"].dtype == "DT_INT8"
    # the model takes and returns integers: quantize and dequantize with the file's own parameters
    plain = Interpreter(model_path=str(files["int8"])).get_signature_runner()
    (x_scale, x_zero), (s_scale, s_zero) = (
        plain.get_input_details()["x"]["quantization"],
        plain.get_output_details()["scores"]["quantization"],
    )
    quantized = np.clip(np.round(x / x_scale) + x_zero, -128, 127).astype(np.int8)
    scores = servable.predict("", {"x": quantized})["scores"]
    assert scores.dtype == np.int8
    expected = in_tensorflow("dense", x=((quantized.astype(np.float32) - x_zero) * x_scale))["scores"]
    np.testing.assert_allclose((scores.astype(np.float32) - s_zero) * s_scale, expected, atol=4 * s_scale)


def test_strings_booleans_and_float16(files):
    servable = load_tflite(files["mixed"])
    signature = servable.signatures["serving_default"]
    assert {a: t.dtype for a, t in signature.inputs.items()} == {"flag": "DT_BOOL", "text": "DT_STRING"}
    assert {a: t.dtype for a, t in signature.outputs.items()} == {
        "half": "DT_HALF",
        "negated": "DT_BOOL",
        "words": "DT_STRING",
    }
    text = np.array([[b"a", b"bc"], [b"", b"\xffd"]], dtype=object)  # strings arrive as object arrays of bytes
    flag = np.array([True, False])
    outputs = servable.predict("", {"text": text, "flag": flag})
    expected = in_tensorflow("mixed", text=text, flag=flag)
    assert outputs["words"].tolist() == expected["words"].tolist()
    np.testing.assert_array_equal(outputs["negated"], expected["negated"])
    assert outputs["half"].dtype == np.float16
    np.testing.assert_array_equal(outputs["half"], expected["half"])


def test_metadata_has_the_structure_of_a_savedmodel_s(files, tfs_testdata):
    def structure(value):
        if isinstance(value, dict):
            return {k: structure(v) for k, v in value.items() if k not in ("inputs", "outputs")} | {
                k: structure(next(iter(value[k].values()))) for k in ("inputs", "outputs") if k in value
            }
        if isinstance(value, list):
            return [structure(value[0])]
        return type(value)

    saved_model = LocalTFRuntime(warmup=False).load(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123")
    reference = structure(saved_model.signature_defs_json()["serving_default"])
    saved_model.close()
    metadata = load_tflite(files["two"]).signature_defs_json()
    assert sorted(metadata) == ["add", "triple"]
    assert structure(metadata["add"]) == reference
    assert metadata["add"]["method_name"] == "tensorflow/serving/predict"
    assert metadata["add"]["inputs"]["a"]["dtype"] == "DT_FLOAT"
    assert metadata["add"]["inputs"]["a"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "2", "name": ""},
    ]
    assert metadata["triple"]["outputs"]["tripled"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]


def test_requests_the_signature_does_not_take_are_refused_clearly(files):
    servable = load_tflite(files["two"])
    a = np.zeros((2, 2), np.float32)
    with pytest.raises(
        InvalidArgument, match=r"input size does not match signature: 1!=2.*Missing but required: \{b\}"
    ):
        servable.predict("add", {"a": a})
    with pytest.raises(InvalidArgument, match=r"alias not found in signature: c\. .*\{a,b\}"):
        servable.predict("add", {"a": a, "c": a})
    with pytest.raises(InvalidArgument, match=r'^input "b" expects float32 \[-1, 2\]; got \[2, 3\]$'):
        servable.predict("add", {"a": a, "b": np.zeros((2, 3), np.float32)})
    with pytest.raises(InvalidArgument, match=r'^input "n" expects int32 \[-1\]; got int64 \[2\]$'):
        servable.predict("triple", {"n": np.zeros(2, np.int64)})
    with pytest.raises(InvalidArgument, match="output tensor alias not found in signature: nope"):
        servable.predict("add", {"a": a, "b": a}, output_filter=["nope"])
    with pytest.raises(InvalidArgument, match=r"method_name to be tensorflow/serving/classify\. Was: .*predict"):
        servable.classify("add", None, [{}])
    with pytest.raises(InvalidArgument, match=r"method_name to be tensorflow/serving/regress\. Was: .*predict"):
        servable.regress("triple", None, [{}])
    with pytest.raises(InvalidArgument, match="No signature was found with the name: serving_default"):
        servable.regress("", None, [{}])


def test_concurrent_calls_from_threads_get_their_own_answers(files):
    servable = load_tflite(files["dense"])
    fixed = load_tflite(files["fixed"])
    wrong, errors = [], []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(150):
                n = int(rng.integers(1, 6))
                x = rng.uniform(-2, 2, (n, 4)).astype(np.float32)
                # total = the row sums: checked against numpy, so no TensorFlow call holds the threads in step
                for model in (servable, fixed):
                    if not np.allclose(model.predict("", {"x": x})["total"], x.sum(axis=1), rtol=1e-5, atol=1e-5):
                        wrong.append((seed, n))
        except Exception as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and not wrong


def test_batching_merges_concurrent_requests_of_a_dynamic_batch(files):
    merged: list[int] = []
    servable = BatchingServable(
        load_tflite(files["dense"]),
        BatchingParameters(max_batch_size=64, batch_timeout_micros=20_000, num_batch_threads=1),
        lambda signature, requests, rows: merged.append(requests),
    )
    inputs = [rows(i % 3 + 1) for i in range(12)]
    answers: list = [None] * len(inputs)

    def client(i: int) -> None:
        answers[i] = servable.predict("serving_default", {"x": inputs[i]})["scores"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for x, scores in zip(inputs, answers):
        np.testing.assert_allclose(scores, in_tensorflow("dense", x=x)["scores"], rtol=1e-5, atol=1e-6)
    assert sum(merged) == len(inputs) and max(merged) > 1
    servable.close()


def test_synthetic_warm_up_runs_every_signature(files):
    for name, expected in (("dense", 1), ("fixed", 1), ("nosig", 1), ("int8", 1), ("two", 2), ("mixed", 1)):
        assert warm_up(load_tflite(files[name]), files[name].parent) == expected, name


def test_close_releases_the_interpreter(files):
    servable = load_tflite(files["dense"])
    servable.close()
    with pytest.raises(FailedPrecondition, match="unloaded"):
        servable.predict("", {"x": rows(1)})
    servable.close()  # twice is harmless


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(NotFound, match=r"missing\.tflite"):
        load_tflite(tmp_path / "missing.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x08\x01 this is not a flatbuffer \xff\xfe" * 4)
    with pytest.raises(ServingError) as error:
        load_tflite(garbage)
    assert error.value.code is Code.DATA_LOSS and str(garbage) in error.value.message
