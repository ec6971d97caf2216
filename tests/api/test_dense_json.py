"""Dense predict bodies read flat (appliance/api/dense_json.py) against the exact path, parse_document + codec.

Whenever the flat reading accepts a body its tensor is the exact path's, bit for bit, and its errors are the
same; whenever the exact path refuses a body, the flat reading returns None.
"""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.api import codec
from appliance.api.dense_json import MIN_BODY, DenseNumbers, dense_document
from appliance.errors import ServingError

DTYPES = ["DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_UINT8", "DT_INT64", "DT_UINT64", "DT_HALF", "DT_STRING"]

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-10, max_value=10, allow_nan=False),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0.0, -0.0, 1e-05, 3.4028235e38, 3.5e38, 1e-46, 5e-324, 1e300, 255]),
).map(json.dumps)
# integer literals only: uint8 pixels, the edges of the integer dtypes, and beyond
integers = st.one_of(
    st.integers(0, 255),
    st.integers(-(2**31) - 1, 2**31),
    st.sampled_from([-0, -1, 256, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**25]),
).map(str)
# an exponent and no fraction: 1e-05, 3E-7, 0e-400; positive ones (1e5, 2e+3) are left to the exact path
exponents = st.builds(
    "{}{}{}{}".format,
    st.integers(-(10**20), 10**20),
    st.sampled_from(["e", "E"]),
    st.sampled_from(["-", "-", "", "+"]),
    st.integers(0, 400),
)


@st.composite
def arrays(draw):
    """A nested list of number literals: regular (a shape) most of the time, else ragged or with an empty list."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    size = int(np.prod(shape))
    kind = draw(st.sampled_from([numbers, integers, st.integers(0, 255).map(str), st.one_of(numbers, exponents)]))
    flat = draw(st.lists(kind, min_size=size, max_size=size))
    value = np.array(flat, dtype=object).reshape(shape).tolist()
    damage = draw(st.sampled_from(["none", "none", "ragged", "empty"]))
    if damage != "none" and len(value) > 1:
        inner = value
        while type(inner[-1]) is list and draw(st.booleans()):
            inner = inner[-1]
        if damage == "ragged":
            inner.pop()
        else:
            inner[-1] = []
    return value


def literal(value) -> str:
    """The JSON text of nested lists of number literals."""
    if type(value) is list:
        return "[" + ",".join(map(literal, value)) + "]"
    return value


def spaced(draw, text: str) -> str:
    """`text` with whitespace added at random after commas and around brackets."""
    spaces = st.sampled_from(["", "", " ", "\n", "\t ", "\r\n"])
    out = []
    for char in text:
        if char in ",[]":
            out.append(draw(spaces) + char + draw(spaces))
        else:
            out.append(char)
    return "".join(out)


FORMS = [
    '{{"instances": {}}}',
    '{{"inputs": {}}}',
    '{{"inputs": {{"x": {}}}}}',
    '{{"signature_name": "serving_default", "instances": {}}}',
    '{{"instances": {}, "signature_name": "x[y]"}}',
    '{{"model": "m", "input": {}}}',
    '\ufeff{{"instances": {}}}',
    '{{"instances": {}}} trailing',
    '{{"instances": {}, "inputs": 1}}',
    '{{"signature_name": 1, "instances": {}}}',
    '{{"instances": {}, "x": NaN}}',
    '{{"version": {}}}',
]


NEXT_TO_BRACKET = re.compile(r"(\[)\s*(-?[0-9][0-9.eE+-]*)|(-?[0-9][0-9.eE+-]*)\s*(\])")


@st.composite
def bodies(draw):
    text = spaced(draw, literal(draw(arrays())))
    if draw(st.booleans()):  # one byte inserted, deleted or replaced, or a number moved past a bracket
        position = draw(st.integers(0, len(text)))
        byte = draw(st.sampled_from(list('[],0123456789.-+eE x"')))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "move"]))
        moves = list(NEXT_TO_BRACKET.finditer(text))
        if edit == "move" and moves:  # "[1," -> "1[,", ",1]" -> ",]1": the flat reading and skeleton stay the same
            move = draw(st.sampled_from(moves))
            moved = move[2] + move[1] if move[1] else move[4] + move[3]
            text = text[: move.start()] + moved + text[move.end() :]
        else:
            end = position + (edit != "insert")
            text = text[:position] + ("" if edit == "delete" else byte) + text[end:]
    return draw(st.sampled_from(FORMS)).format(text).encode("utf-8")


def decoded(doc: dict, dtype: str):
    """What the predict handlers make of a document: the tensors, or the error's message."""
    try:
        if "input" in doc:
            return codec.decode_input_value(doc["input"], {"x": dtype})
        return codec.decode_predict_inputs(doc, {"x": dtype})[0]
    except ServingError as e:
        return type(e).__name__ + ": " + e.message


def same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), dtype=st.sampled_from(DTYPES))
def test_flat_reading_agrees_with_the_exact_path(body, dtype):
    fast = dense_document(body, min_body=0)
    try:
        exact_doc = codec.parse_document(body)
    except ServingError:
        assert fast is None, body
        return
    if fast is None:
        return
    assert same(decoded(fast, dtype), decoded(exact_doc, dtype)), body


def test_a_regular_float_array_is_read_flat_and_others_are_not():
    image = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    body = json.dumps({"instances": image.tolist()}).encode()
    assert len(body) >= MIN_BODY
    doc = dense_document(body)
    assert type(doc["instances"]) is DenseNumbers and doc["instances"].shape == image.shape
    tensor = codec.decode_predict_inputs(doc, {"x": "DT_FLOAT"})[0]["x"]
    assert tensor.dtype == np.float32 and np.array_equal(tensor, image)

    ragged = body.replace(b"], [", b", ", 1)
    assert dense_document(ragged) is None
    assert dense_document(body[:1000]) is None  # small bodies take parse_document


@pytest.mark.parametrize("dtype", ["DT_INT32", "DT_STRING", "DT_HALF"])
def test_other_dtypes_get_the_exact_paths_errors(dtype):
    image = np.random.default_rng(1).random((2, 48, 48, 3)).tolist()
    body = orjson.dumps({"instances": image})
    doc = dense_document(body)
    assert type(doc["instances"]) is DenseNumbers
    assert decoded(doc, dtype) == decoded(codec.parse_document(body), dtype)


def test_integer_and_exponent_literals_are_read_flat():
    image = (np.random.default_rng(2).random((1, 96, 96, 3)) * 256).astype(np.uint8)
    body = json.dumps({"instances": image.tolist()}).encode()  # "[[[[12, 255, 0], ...": spaces between numbers
    doc = dense_document(body)
    assert type(doc["instances"]) is DenseNumbers and doc["instances"].values.dtype == np.int64
    for dtype, numpy in [("DT_UINT8", np.uint8), ("DT_INT32", np.int32), ("DT_FLOAT", np.float32)]:
        tensor = codec.decode_predict_inputs(doc, {"x": dtype})[0]["x"]
        assert tensor.dtype == numpy and np.array_equal(tensor, image.astype(numpy))

    assert dense_document(body.replace(b"], [", b"] [", 1)) is None  # flat, the same numbers; not JSON

    small = np.where(image < 128, 1e-05, image / 255).reshape(1, 96, 96, 3)
    body = json.dumps({"inputs": small.tolist()}).encode()  # 1e-05 among 0.5019607843137255
    doc = dense_document(body)
    assert type(doc["inputs"]) is DenseNumbers and doc["inputs"].values.dtype == np.float64
    assert same(decoded(doc, "DT_FLOAT"), {"x": small.astype(np.float32)})


@pytest.mark.parametrize("dtype", ["DT_UINT8", "DT_INT8", "DT_UINT64", "DT_BOOL"])
def test_integers_out_of_range_get_the_exact_paths_errors(dtype):
    values = np.random.default_rng(3).integers(-300, 300, (1, 96, 96, 3)).tolist()
    body = orjson.dumps({"instances": values})
    doc = dense_document(body)
    assert type(doc["instances"]) is DenseNumbers
    error = decoded(doc, dtype)
    assert error == decoded(codec.parse_document(body), dtype) and "is not of expected type" in error
