"""Dense predict bodies read flat (appliance/api/dense_json.py) against the exact path, parse_document + codec.

Whenever the flat reading accepts a body its tensor is the exact path's, bit for bit, and its errors are the
same; whenever the exact path refuses a body, the flat reading returns None.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.api import codec
from appliance.api.dense_json import MIN_BODY, DenseNumbers, dense_document
from appliance.errors import ServingError

DTYPES = ["DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_HALF", "DT_STRING"]

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-10, max_value=10, allow_nan=False),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0.0, -0.0, 1e-05, 3.4028235e38, 3.5e38, 1e-46, 5e-324, 1e300, 255]),
)


@st.composite
def arrays(draw):
    """A nested list of numbers: regular (a shape) most of the time, else ragged or with an empty list."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    size = int(np.prod(shape))
    flat = draw(st.lists(numbers, min_size=size, max_size=size))
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
    """JSON text with float literals written in several ways (repr, exponent forms)."""
    if type(value) is list:
        return "[" + ",".join(map(literal, value)) + "]"
    return json.dumps(value)


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


@st.composite
def bodies(draw):
    text = spaced(draw, literal(draw(arrays())))
    if draw(st.booleans()):  # one byte inserted, deleted or replaced
        position = draw(st.integers(0, len(text)))
        byte = draw(st.sampled_from(list('[],0123456789.-+eE x"')))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
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

    ints = orjson.dumps({"instances": (image * 255).astype(np.uint8).tolist()})
    ragged = body.replace(b"], [", b", ", 1)
    assert dense_document(ints.ljust(MIN_BODY)) is None
    assert dense_document(ragged) is None
    assert dense_document(body[:1000]) is None  # small bodies take parse_document


@pytest.mark.parametrize("dtype", ["DT_INT32", "DT_STRING", "DT_HALF"])
def test_other_dtypes_get_the_exact_paths_errors(dtype):
    image = np.random.default_rng(1).random((2, 48, 48, 3)).tolist()
    body = orjson.dumps({"instances": image})
    doc = dense_document(body)
    assert type(doc["instances"]) is DenseNumbers
    assert decoded(doc, dtype) == decoded(codec.parse_document(body), dtype)
