"""Large outputs written a column at a time (token_matrix) are byte for byte what the value-by-value writer wrote.

The oracle is the codec's value-by-value writer (decimal_tokens and the tensor layout of codec.py, which small
tensors and float64 still take), reached by raising the size thresholds: hypothesis draws tensors of every numeric
dtype, shapes of rank 0 to 4 (zero-size dimensions too) and values from raw bit patterns, NaN, infinities, -0.0,
subnormals, extremes and ties, and each response, row and columnar, must be the oracle's, or fail with the same
error. The size thresholds are lowered to 1 so small tensors take the new path; a few tests write full-size ones
at the real thresholds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from appliance.api import codec
from appliance.api.codec import COLUMNAR, ROW, encode_outputs_value, encode_predict_response
from appliance.api.json_text import token_matrix
from appliance.errors import ServingError

SETTINGS = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------
# The oracle: the same writers with token_matrix out of reach (value by value, as before it)
# ---------------------------------------------------------------------------

VALUE_BY_VALUE = 2**62  # a threshold no tensor reaches


def oracle_outputs_value(outputs: Mapping[str, np.ndarray]) -> str:
    with thresholds(VALUE_BY_VALUE):
        return encode_outputs_value(outputs)


def oracle_predict_response(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    with thresholds(VALUE_BY_VALUE):
        return encode_predict_response(outputs, fmt)


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

FLOATS = [np.float16, np.float32, np.float64]
INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
# Raw bit patterns of each float width: every value, NaN payloads and subnormals included.
BITS = {np.float16: np.uint16, np.float32: np.uint32, np.float64: np.uint64}


def _special(dtype) -> list[float]:
    info = np.finfo(dtype)
    values = [0.0, -0.0, np.nan, np.inf, -np.inf, 1.0, -1.0, 0.5, 0.1, 2.05, 13 / 6, 1e6, 999999.5, 1e9, 16777217]
    values += [float(info.max), -float(info.max), float(info.tiny), float(info.smallest_subnormal), 1e-5, 3e-5]
    values += [10.0**k for k in range(-45, 39)] + [0.4091796875, 6.103515625e-05, 123456789, 9.9999995e-5]
    with np.errstate(over="ignore"):
        return [float(v) for v in np.array(values, dtype=np.float64).astype(dtype)]


@st.composite
def numeric_arrays(draw, shape) -> np.ndarray:
    dtype = draw(st.sampled_from(FLOATS + INTS + [np.bool_]))
    if dtype in BITS:
        how = draw(st.sampled_from(["bits", "values", "unit"]))
        if how == "bits":
            return draw(arrays(BITS[dtype], shape)).view(dtype)
        if how == "unit":  # what a softmax writes: mostly nine-digit tokens
            return draw(arrays(dtype, shape, elements=st.floats(0, 1, width=np.finfo(dtype).bits)))
        values = st.one_of(st.sampled_from(_special(dtype)), st.floats(width=np.finfo(dtype).bits))
        return draw(arrays(dtype, shape, elements=values))
    return draw(arrays(dtype, shape))


@st.composite
def output_maps(draw) -> dict[str, np.ndarray]:
    count = draw(st.integers(1, 3))
    batch = draw(st.integers(0, 4))
    outputs = {}
    for index in range(count):
        shape = draw(array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
        if shape and draw(st.booleans()):
            shape = (batch, *shape[1:])  # usually one batch size, as a model writes
        outputs[f"out{index}"] = draw(numeric_arrays(shape))
    return outputs


@contextlib.contextmanager
def thresholds(least: int):
    saved, smallest = dict(codec._MATRIX_MIN), codec._MATRIX_SMALLEST
    codec._MATRIX_MIN.update(dict.fromkeys(saved, least))
    codec._MATRIX_SMALLEST = least
    try:
        yield
    finally:
        codec._MATRIX_MIN.update(saved)
        codec._MATRIX_SMALLEST = smallest


def outcome(function, *args):
    """What a writer returns, or the error it raises (type and message)."""
    try:
        return function(*args)
    except ServingError as e:
        return type(e), e.message


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@SETTINGS
@given(outputs=output_maps(), fmt=st.sampled_from([ROW, COLUMNAR]))
def test_responses_are_the_oracles(outputs, fmt):
    expected = outcome(oracle_predict_response, outputs, fmt)
    with thresholds(1):
        assert outcome(encode_predict_response, outputs, fmt) == expected
    assert outcome(encode_predict_response, outputs, fmt) == expected


@SETTINGS
@given(outputs=output_maps())
def test_outputs_values_are_the_oracles(outputs):
    with thresholds(1):
        assert outcome(encode_outputs_value, outputs) == outcome(oracle_outputs_value, outputs)


@SETTINGS
@given(values=st.one_of(*(numeric_arrays(st.integers(1, 64).map(lambda n: (n,))) for _ in range(1))))
def test_each_token_is_the_oracles(values):
    """Row i of token_matrix, its zero bytes dropped (LATE filled in), is the oracle's token i."""
    if values.dtype == np.float64:
        return  # token_matrix takes float16 / float32 only: float64 keeps the value-by-value writer
    chars, late = token_matrix(values)
    got = [bytes(row[row != 0]).decode("ascii") for row in chars]
    filling = iter(late)
    got = [next(filling) if token == "?" else token for token in got]
    assert got == codec._tokens("y", values)


# ---------------------------------------------------------------------------
# Full-size outputs, at the real thresholds
# ---------------------------------------------------------------------------


def _large_outputs() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(17)
    bits = rng.integers(0, 2**32, 60000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return {
        "probabilities 1x1000": {"probabilities": rng.dirichlet(np.ones(1000), 1).astype(np.float32)},
        "segmentation 1x224x224 float32": {"mask": rng.random((1, 224, 224), dtype=np.float32)},
        "segmentation 1x224x224 int64": {"labels": rng.integers(0, 21, (1, 224, 224))},
        "raw float32 bits 4x125x120": {"x": bits[:60000].reshape(4, 125, 120)},
        "float16 2x32x32x3": {"x": rng.standard_normal((2, 32, 32, 3)).astype(np.float16)},
        "int64 extremes 3x500": {"x": rng.integers(-(2**63), 2**63 - 1, (3, 500), endpoint=True)},
        "uint64 2x1000": {"x": rng.integers(0, 2**64 - 1, (2, 1000), dtype=np.uint64, endpoint=True)},
        "bool 8x1000": {"x": rng.random((8, 1000)) < 0.3},
        "mixed batch of 64": {
            "scores": rng.random((64, 100), dtype=np.float32),
            "classes": rng.integers(0, 100, (64, 100)),
            "keep": rng.random((64, 40)) < 0.5,
            "values": rng.standard_normal((64, 3)),
        },
    }


@pytest.mark.parametrize("fmt", [ROW, COLUMNAR])
@pytest.mark.parametrize("name", list(_large_outputs()))
def test_large_outputs_are_the_oracles(name, fmt):
    outputs = _large_outputs()[name]
    assert any(codec._by_matrix(tensor) for tensor in outputs.values()), "not large enough to test token_matrix"
    assert encode_predict_response(outputs, fmt) == oracle_predict_response(outputs, fmt)


def test_the_smallest_threshold_is_the_least_of_them():
    assert min(codec._MATRIX_MIN.values()) == codec._MATRIX_SMALLEST


def test_a_large_float32_output_is_written_without_per_value_formatting():
    """50,000 float32 probabilities: token_matrix settles all but a handful without decimal_tokens."""
    values = np.random.default_rng(3).random(224 * 224, dtype=np.float32)
    _, late = token_matrix(values)
    assert len(late) < 10
