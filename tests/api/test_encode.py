"""Large outputs written a column at a time (token_matrix) are byte for byte what the value-by-value writer wrote.

The oracle below is the codec's writer as it was before token_matrix (decimal_tokens and the
tensor layout of codec.py, copied verbatim): hypothesis draws tensors of every numeric dtype,
shapes of rank 0 to 4 (zero-size dimensions too) and values from raw bit patterns, NaN,
infinities, -0.0, subnormals, extremes and ties, and each response, row and columnar, must be
the oracle's, or fail with the same error. The size thresholds are lowered to 1 so small
tensors take the new path; a few tests write full-size ones at the real thresholds.
"""

from __future__ import annotations

import contextlib
import math
from array import array
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from appliance.api import codec
from appliance.api.codec import COLUMNAR, ROW, encode_outputs_value, encode_predict_response
from appliance.api.json_text import quote, string_token, token_matrix
from appliance.errors import InvalidArgument, ServingError

SETTINGS = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------
# The oracle: the writer before token_matrix, verbatim
# ---------------------------------------------------------------------------

_SHORT = "%g".__mod__  # absl::StrCat(float|double): six significant digits
_FULL = {np.dtype(np.float32): "%.9g".__mod__, np.dtype(np.float64): "%.17g".__mod__}  # max_digits10
_BARE = {"nan": "NaN", "-nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_VECTORISE_MIN = 96  # smaller arrays are formatted value by value: numpy's per-call overhead dominates there


def decimal_tokens(flat: np.ndarray) -> list[str]:
    single = flat.dtype == np.float32
    if flat.size < _VECTORISE_MIN:
        values = flat.tolist()
        short = list(map(_SHORT, values))
        read_back = array("f", map(float, short)) if single else map(float, short)  # strtof / strtod
        full = _FULL[flat.dtype]
        texts = [token if back == value else full(value) for token, back, value in zip(short, read_back, values)]
        return [text if "." in text or "e" in text else _BARE.get(text) or text + ".0" for text in texts]
    with np.errstate(invalid="ignore"):  # signalling NaNs
        finite = np.isfinite(flat)
        whole = finite & (flat == np.trunc(flat))
    candidate = finite & _may_round_trip_in_six_digits(flat)
    tokens = np.empty(flat.size, dtype=object)
    shortened = np.zeros(flat.size, dtype=bool)
    index = np.flatnonzero(candidate)
    if index.size:
        values = flat[index]
        short = list(map(_SHORT, values.tolist()))
        if single:  # strtof: the float32 nearest to the text
            parsed = np.frombuffer(array("f", map(float, short)), dtype=np.float32)
        else:
            parsed = np.fromiter(map(float, short), dtype=np.float64, count=len(short))
        good = parsed == values
        tokens[index[good]] = np.array(short, dtype=object)[good]
        shortened[index[good]] = True
    rest = finite & ~shortened
    tokens[rest] = list(map(_FULL[flat.dtype], flat[rest].tolist()))
    magnitude = np.abs(flat)
    dotless = whole & ((magnitude < 1e6) | (~shortened & (magnitude < (1e9 if single else 1e17))))
    tokens[dotless] += ".0"
    if not finite.all():
        tokens[np.isnan(flat)] = "NaN"
        tokens[flat == np.inf] = "Infinity"
        tokens[flat == -np.inf] = "-Infinity"
    return tokens.tolist()


def _may_round_trip_in_six_digits(flat: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        gap = np.maximum(np.nextafter(flat, np.inf) - flat, flat - np.nextafter(flat, -np.inf)).astype(np.float64)
        magnitude = np.abs(flat).astype(np.float64)
        scale = 10.0 ** (5.0 - np.floor(np.log10(magnitude)))
        t = magnitude * scale
        distance = np.abs(t - np.rint(t))
        return ~(distance > gap * 0.5 * scale * (1 + 1e-9) + 1e-6)


def _tokens(name: str, tensor: np.ndarray) -> list[str]:
    flat = tensor.reshape(-1)
    kind = flat.dtype.kind
    if kind == "f" and flat.dtype.itemsize <= 8:
        if flat.dtype == np.float16:
            flat = flat.astype(np.float32)
        return decimal_tokens(flat)
    if kind in "iu":
        return list(map(str, flat.tolist()))
    if kind == "b":
        return ["true" if value else "false" for value in flat.tolist()]
    if kind in "OSU":
        as_bytes = name.endswith("_bytes")
        try:
            return [string_token(value, as_bytes) for value in flat.tolist()]
        except TypeError:
            pass
    elif flat.size == 0:  # TF Serving only fails when it writes a value
        return []
    raise InvalidArgument(f"Failed to write JSON value for tensor type: {flat.dtype.name}")


def _nest(tokens: list[str], shape: tuple[int, ...]) -> list[str]:
    parts = tokens
    for axis in range(len(shape) - 1, 0, -1):
        size = shape[axis]
        if size == 0:
            parts = ["[]"] * math.prod(shape[:axis])
        elif size == len(parts):  # one sub-tensor, e.g. a batch of one
            parts = ["[" + ", ".join(parts) + "]"]
        else:
            parts = ["[" + ", ".join(parts[i : i + size]) + "]" for i in range(0, len(parts), size)]
    return parts


def _tensor_json(name: str, tensor: np.ndarray) -> str:
    tokens = _tokens(name, tensor)
    if tensor.ndim == 0:
        return tokens[0]
    return "[" + ", ".join(_nest(tokens, tensor.shape)) + "]"


def _as_arrays(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    return {name: np.asarray(tensor) for name, tensor in outputs.items()}


def oracle_outputs_value(outputs: Mapping[str, np.ndarray]) -> str:
    arrays = _as_arrays(outputs)
    if len(arrays) == 1:
        ((name, tensor),) = arrays.items()
        return _tensor_json(name, tensor)
    return "{" + ", ".join(f"{quote(name)}: {_tensor_json(name, tensor)}" for name, tensor in arrays.items()) + "}"


def _row_json(outputs: Mapping[str, np.ndarray]) -> str:
    arrays = _as_arrays(outputs)
    batch_size = -1
    for name, tensor in arrays.items():
        if tensor.ndim == 0:
            raise InvalidArgument(f"Tensor name: {name} has no shape information ")
        if batch_size >= 0 and tensor.shape[0] != batch_size:
            raise InvalidArgument(
                f"Tensor name: {name} has inconsistent batch size: {tensor.shape[0]} expecting: {batch_size}"
            )
        batch_size = tensor.shape[0]
    columns = [_nest(_tokens(name, tensor), tensor.shape) for name, tensor in arrays.items()]
    if len(columns) == 1:
        (rows,) = columns
    else:
        template = "{" + ", ".join([quote(name).replace("%", "%%") + ": %s" for name in arrays]) + "}"
        rows = [template % row for row in zip(*columns)]
    return "[" + ", ".join(rows) + "]"


def oracle_predict_response(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    if fmt == ROW:
        return ('{"predictions": ' + _row_json(outputs) + "}").encode("utf-8", "replace")
    return ('{"outputs": ' + oracle_outputs_value(outputs) + "}").encode("utf-8", "replace")


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
    assert got == _tokens("y", values)


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
    assert codec._MATRIX_SMALLEST == min(codec._MATRIX_MIN.values())


def test_a_large_float32_output_is_written_without_per_value_formatting():
    """50,000 float32 probabilities: token_matrix settles all but a handful without decimal_tokens."""
    values = np.random.default_rng(3).random(224 * 224, dtype=np.float32)
    _, late = token_matrix(values)
    assert len(late) < 10
