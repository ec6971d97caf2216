"""Tests of TF Serving's JSON text conventions: rapidjson's parse errors and WriteDecimal's number formatting.

Expected values come from rapidjson's error wording and offsets, or are
derived independently (C's strtof/printf through ctypes), never copied from
the module's output. How values appear inside error messages is tested through
the codec, in test_codec.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np
import pytest

from appliance.api.json_text import decimal_tokens, parse_document
from appliance.errors import InvalidArgument

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _c_strtof():
    """The C library's strtof (what absl::SimpleAtof calls), or a numpy stand-in where ctypes cannot find it."""
    for library in (None, ctypes.util.find_library("c"), "ucrtbase", "msvcrt"):
        try:
            strtof = ctypes.CDLL(library).strtof
        except (OSError, AttributeError, TypeError):
            continue
        strtof.restype = ctypes.c_float
        strtof.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
        return lambda text: strtof(text.encode(), None)
    return lambda text: float(np.float32(float(text)))


strtof = _c_strtof()


def write_decimal(value: float, single: bool) -> str:
    """TF Serving's WriteDecimal, restated from json_tensor.cc with C's own strtof as the judge."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = "%g" % value
    parsed = strtof(text) if single else float(text)
    if parsed != value:
        text = ("%.9g" if single else "%.17g") % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


# ---------------------------------------------------------------------------
# parse_document (ParseJson)
# ---------------------------------------------------------------------------


def test_empty_document():
    with pytest.raises(InvalidArgument) as info:
        parse_document(b"")
    assert info.value.message == "JSON Parse error: The document is empty"


def test_whitespace_only_document():
    with pytest.raises(InvalidArgument) as info:
        parse_document(b"  \n ")
    assert info.value.message == "JSON Parse error: The document is empty. at offset: 4"


@pytest.mark.parametrize(
    "body, reason, offset",
    [
        (b"instances = [1, 2]", "Invalid value.", 0),
        (b'{"instances": [1 2]}', "Missing a comma or ']' after an array element.", 17),
        (b'{"a": 1 "b": 2}', "Missing a comma or '}' after an object member.", 8),
        (b'{"a": [1, {"b": 2} 3]}', "Missing a comma or ']' after an array element.", 19),
        (b'{"a" 1}', "Missing a colon after a name of object member.", 5),
        (b'{"a": 1,}', "Missing a name for object member.", 8),
        (b'{"a": [1,]}', "Invalid value.", 9),
        (b'{"a": "b', "Missing a closing quotation mark in string.", 8),
        (b'{"a": "\\x"}', "Invalid escape character in string.", 7),
        (b'{"a": "\\u12g4"}', "Incorrect hex digit after \\u escape in string.", 7),
        (b'{"a": "\x01"}', "Invalid encoding in string.", 7),
        ('{"é": [1 2]}'.encode(), "Missing a comma or ']' after an array element.", 10),  # offsets count bytes
    ],
)
def test_parse_errors_use_rapidjson_wording(body, reason, offset):
    with pytest.raises(InvalidArgument) as info:
        parse_document(body)
    assert info.value.message == f"JSON Parse error: {reason} at offset: {offset}"


def test_invalid_utf8_is_a_parse_error():
    with pytest.raises(InvalidArgument) as info:
        parse_document(b'{"instances": ["\xff"]}')
    assert info.value.message == "JSON Parse error: Invalid encoding in string. at offset: 16"


def test_unpaired_surrogate_is_a_parse_error():
    with pytest.raises(InvalidArgument) as info:
        parse_document(b'{"instances": ["\\ud800"]}')
    assert "The surrogate pair in string is invalid." in info.value.message
    assert parse_document(b'{"s": "\\ud83d\\ude00"}') == {"s": "\U0001f600"}


def test_top_level_must_be_an_object():
    with pytest.raises(InvalidArgument) as info:
        parse_document(b"[1, 2]")
    assert info.value.message == "JSON Value: [1, 2] Is not object"


def test_nan_and_infinity_are_accepted():
    doc = parse_document(b'{"x": [NaN, Infinity, -Infinity]}')
    assert math.isnan(doc["x"][0]) and doc["x"][1:] == [math.inf, -math.inf]


def test_bom_is_skipped_and_text_after_the_document_ignored():
    # kParseStopWhenDoneFlag; TensorFromNonNullTerminatedBuffer
    assert parse_document(b'\xef\xbb\xbf{"a": 1}X') == {"a": 1}


def test_deep_nesting_is_an_error_not_a_crash():
    body = b'{"instances": [1], "nested": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidArgument):
        parse_document(body)


# ---------------------------------------------------------------------------
# decimal_tokens (WriteDecimal)
# ---------------------------------------------------------------------------


def _interesting_floats(dtype) -> np.ndarray:
    rng = np.random.default_rng(7)
    info = np.finfo(dtype)
    special = [0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 0.3, 2.05, 13 / 6, 1e6, 999999, 999999.5, 1e9, 123456789, 16777217]
    special += [info.max, -info.max, info.tiny, info.smallest_subnormal, 3 * info.smallest_subnormal, 1e-5, 3e-5]
    special += [10.0**k for k in range(-40, 39)] + [np.nextafter(dtype(10.0**k), dtype(0)) for k in range(-30, 30)]
    nice = rng.integers(1, 10**6, 400) / 10.0 ** rng.integers(0, 9, 400)  # decimals of <= 6 digits
    whole = rng.integers(-(2**31), 2**31, 200).astype(np.float64)
    uniform = rng.standard_normal(1000) * 10.0 ** rng.integers(-8, 8, 1000)
    raw = rng.integers(0, 2**32, 500, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = np.concatenate([special, nice, -nice, whole, uniform, raw[np.isfinite(raw)].astype(np.float64)])
    with np.errstate(over="ignore"):
        return values.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [3, 5000])  # below and above the size where decimal_tokens vectorises
def test_decimal_tokens_match_write_decimal(dtype, size):
    values = _interesting_floats(dtype)
    values = np.concatenate([values, [np.nan, np.inf, -np.inf]]).astype(dtype)
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        got = decimal_tokens(chunk)
        expected = [write_decimal(v, dtype == np.float32) for v in chunk.tolist()]
        assert got == expected
