"""Property tests of the JSON <-> tensor codec: valid tensors round-trip, invalid documents are 400s.

Hypothesis generates tensors of every dtype the codec decodes and checks that
what the codec writes (``{"predictions": ...}`` / ``{"outputs": ...}``) reads
back through its request decoder (``{"instances": ...}`` / ``{"inputs": ...}``)
as the same values. It then throws random bytes, random JSON, truncated,
ragged, mistyped and mutated documents at the decoders and checks the one
invariant TF Serving's REST API keeps: a request either decodes into arrays of
the signature's dtypes or fails with INVALID_ARGUMENT (HTTP 400) and a message,
never with any other exception. A last property sends such bodies over real
HTTP to a real appliance and checks it answers 4xx ``{"error": ...}`` and goes
on serving.

Every property runs a fixed number of derandomized examples, so CI runs the same cases each time.
"""

from __future__ import annotations

import base64
import json
import math
import sys

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from appliance.api.codec import (
    COLUMNAR,
    ROW,
    decode_examples,
    decode_input_value,
    decode_predict_inputs,
    encode_outputs_value,
    encode_predict_response,
    parse_document,
)
from appliance.errors import Code, ServingError

CODEC_SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HTTP_SETTINGS = settings(CODEC_SETTINGS, max_examples=50)

# Signature dtype -> the numpy dtype the codec decodes it to (TF Serving's AddValueToTensor cases).
SIGNATURE_DTYPES = {
    "DT_FLOAT": np.dtype(np.float32),
    "DT_DOUBLE": np.dtype(np.float64),
    "DT_INT8": np.dtype(np.int8),
    "DT_INT16": np.dtype(np.int16),
    "DT_INT32": np.dtype(np.int32),
    "DT_INT64": np.dtype(np.int64),
    "DT_UINT8": np.dtype(np.uint8),
    "DT_UINT32": np.dtype(np.uint32),
    "DT_UINT64": np.dtype(np.uint64),
    "DT_BOOL": np.dtype(np.bool_),
    "DT_STRING": np.dtype(object),
}
# Output dtypes the codec writes, and the signature dtype that reads each back. float16 has no
# decoder (TF Serving: "Conversion ... to type: half" is UNIMPLEMENTED) but is written as float.
WRITTEN_AS = {dtype: name for name, dtype in SIGNATURE_DTYPES.items()} | {np.dtype(np.float16): "DT_FLOAT"}
# max_digits10: the significant digits that identify every float32 / float64 (WriteDecimal's fallback).
MAX_DIGITS10 = {np.dtype(np.float32): 9, np.dtype(np.float64): 17}
BYTES_SUFFIX = "_bytes"  # string outputs named so are written as {"b64": ...}


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

tensor_names = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)


def elements(dtype: np.dtype, as_bytes: bool):
    """Values of one output tensor: any bytes for a *_bytes string output, UTF-8 text for another one."""
    if dtype.kind != "O":
        return None  # hypothesis' own, covering the whole dtype: NaN, infinities, subnormals, -0.0, extremes
    return st.binary(max_size=10) if as_bytes else st.text(max_size=6).map(str.encode)


@st.composite
def outputs(draw, batch_size: int | None):
    """A map of 1-3 named output tensors; with ``batch_size`` every tensor has that first dimension."""
    count = draw(st.integers(1, 3))
    names = draw(st.lists(tensor_names, min_size=count, max_size=count, unique=True))
    tensors = {}
    for name in names:
        dtype = draw(st.sampled_from(sorted(WRITTEN_AS, key=str)))
        as_bytes = dtype.kind == "O" and draw(st.booleans())
        if as_bytes:
            name += BYTES_SUFFIX
        if batch_size is None:
            shape = draw(st.lists(st.integers(0, 3), max_size=4).map(tuple))
        else:
            shape = (batch_size, *draw(st.lists(st.integers(0, 3), max_size=3)))
        tensors[name] = draw(arrays(dtype, shape, elements=elements(dtype, as_bytes)))
    return tensors


row_outputs = st.integers(1, 3).flatmap(outputs)
columnar_outputs = outputs(None)


def as_json_shaped(tensor: np.ndarray) -> np.ndarray:
    """The tensor JSON can describe: nested lists stop at the first empty one, so later dimensions are lost."""
    shape = tensor.shape
    if 0 in shape:
        shape = shape[: shape.index(0) + 1]
    return tensor.reshape(shape)


signatures = st.dictionaries(tensor_names, st.sampled_from(sorted(SIGNATURE_DTYPES)), min_size=1, max_size=3)

# JSON leaves that sit on the edges of the dtypes' rules.
edge_integers = st.sampled_from(
    [
        0,
        1,
        -1,
        127,
        128,
        -128,
        -129,
        255,
        256,
        2**15,
        2**31 - 1,
        2**31,
        -(2**31) - 1,
        2**32,
        2**63 - 1,
        2**63,
        -(2**63),
        -(2**63) - 1,
        2**64 - 1,
        2**64,
        10**30,
        -(10**30),
        10**400,
    ]
)
json_text = st.text(max_size=6) | st.sampled_from(["\ud800", "a\udfff", "b64", "\x00"])
json_scalars = (
    st.none() | st.booleans() | st.integers() | edge_integers | st.floats() | st.sampled_from([3.0, -0.0]) | json_text
)
b64_objects = st.builds(
    lambda text: {"b64": text}, json_text | st.binary(max_size=8).map(lambda data: base64.b64encode(data).decode())
)
json_values = st.recursive(
    json_scalars | b64_objects,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=3),
    max_leaves=24,
)


def to_body(document) -> bytes:
    """JSON text as a client would send it (NaN and Infinity as bare tokens, like TF Serving accepts)."""
    return json.dumps(document, allow_nan=True).encode()


@st.composite
def predict_documents(draw):
    """Request documents of every shape: anything at all, or the keys a predict request has, holding anything."""
    body = draw(st.sampled_from(["any", "instances", "inputs", "both"]))
    if body == "any":
        return draw(json_values)
    document = {}
    if body in ("instances", "both"):
        document["instances"] = draw(json_values)
    if body in ("inputs", "both"):
        document["inputs"] = draw(json_values)
    if draw(st.booleans()):
        document["signature_name"] = draw(json_values)
    return document


def paths_in(value) -> list[tuple]:
    """Every position in a JSON value, as the key path from the root (the root itself is ())."""
    found, stack = [], [((), value)]
    while stack:
        path, item = stack.pop()
        found.append(path)
        children = enumerate(item) if type(item) is list else item.items() if type(item) is dict else ()
        stack.extend(((*path, key), child) for key, child in children)
    return found


def replaced(value, path: tuple, new):
    """A copy of a JSON value with the item at `path` replaced by `new`."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if type(value) is list:
        return [replaced(child, rest, new) if index == head else child for index, child in enumerate(value)]
    return {key: replaced(child, rest, new) if key == head else child for key, child in value.items()}


def at(value, path: tuple):
    for key in path:
        value = value[key]
    return value


@st.composite
def mutated_requests(draw):
    """A valid predict request for a signature with one random change somewhere in it: mostly invalid then."""
    fmt = draw(st.sampled_from([ROW, COLUMNAR]))
    tensors = draw(row_outputs if fmt == ROW else columnar_outputs)
    signature = {name: WRITTEN_AS[tensor.dtype] for name, tensor in tensors.items()}
    document = json.loads(encode_predict_response(tensors, fmt), parse_constant=float)
    document = {"instances" if fmt == ROW else "inputs": next(iter(document.values()))}
    path = draw(st.sampled_from(paths_in(document)[1:]))
    item = at(document, path)
    change = draw(st.sampled_from(["leaf", "wrap", "unwrap", "drop", "repeat", "key"]))
    if change == "leaf":
        item = draw(json_scalars | b64_objects)
    elif change == "wrap":
        item = [item]
    elif change == "unwrap" and type(item) is list and item:
        item = item[0]
    elif change == "drop" and type(item) in (list, dict) and item:
        item = item[1:] if type(item) is list else dict(list(item.items())[1:])
    elif change == "repeat" and type(item) is list and item:
        item = [*item, item[-1]]
    elif change == "key" and type(item) is dict:
        item = {**item, draw(json_text): draw(json_values)}
    else:
        item = draw(json_values)
    return to_body(replaced(document, path, item)), signature


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def assert_same_tensor(decoded: np.ndarray, written: np.ndarray) -> None:
    """Exact equality: ints, bools and bytes by value; floats bit for bit (-0.0 included), any NaN for NaN."""
    expected = as_json_shaped(written)
    if expected.dtype == np.float16:
        expected = expected.astype(np.float32)  # exact: every half is a float
    assert decoded.dtype == expected.dtype
    assert decoded.shape == expected.shape
    if expected.dtype.kind == "f":
        nan = np.isnan(expected)
        assert np.array_equal(np.isnan(decoded), nan)
        assert decoded[~nan].tobytes() == expected[~nan].tobytes()
    else:
        assert decoded.tolist() == expected.tolist()


def assert_invalid_argument(error: ServingError) -> None:
    assert error.code is Code.INVALID_ARGUMENT, repr(error)
    assert isinstance(error.message, str) and error.message.strip(), repr(error)


def decode_or_reject(body: bytes, signature: dict[str, str]) -> dict[str, np.ndarray] | None:
    """The request's tensors, checked against the signature; None when it was rejected as it must be."""
    try:
        tensors, fmt = decode_predict_inputs(parse_document(body), signature)
    except ServingError as e:
        assert_invalid_argument(e)
        return None
    assert tensors.keys() == signature.keys()
    for name, tensor in tensors.items():
        assert tensor.dtype == SIGNATURE_DTYPES[signature[name]], name
    if fmt == ROW:
        assert len({tensor.shape[0] for tensor in tensors.values()}) == 1, "instances disagree on the batch size"
    return tensors


def assert_rejected(body: bytes, signature: dict[str, str]) -> str:
    """The INVALID_ARGUMENT message a request that cannot be decoded gets."""
    with pytest.raises(ServingError) as info:
        decode_predict_inputs(parse_document(body), signature)
    assert_invalid_argument(info.value)
    return info.value.message


# ---------------------------------------------------------------------------
# Valid tensors round-trip
# ---------------------------------------------------------------------------


@CODEC_SETTINGS
@given(tensors=row_outputs)
def test_predictions_read_back_as_instances(tensors):
    written = json.loads(encode_predict_response(tensors, ROW), parse_constant=float)
    assert written.keys() == {"predictions"}
    body = to_body({"instances": written["predictions"]})
    decoded, fmt = decode_predict_inputs(parse_document(body), {n: WRITTEN_AS[t.dtype] for n, t in tensors.items()})
    assert fmt == ROW and decoded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert_same_tensor(decoded[name], tensor)


@CODEC_SETTINGS
@given(tensors=columnar_outputs)
def test_outputs_read_back_as_inputs(tensors):
    response = encode_predict_response(tensors, COLUMNAR)
    assert response.startswith(b'{"outputs": ')
    body = b'{"inputs": ' + response[len(b'{"outputs": ') :]  # the outputs' own text, numbers untouched
    signature = {n: WRITTEN_AS[t.dtype] for n, t in tensors.items()}
    decoded, fmt = decode_predict_inputs(parse_document(body), signature)
    assert fmt == COLUMNAR and decoded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert_same_tensor(decoded[name], tensor)
    simple = decode_input_value(json.loads(encode_outputs_value(tensors), parse_constant=float), signature)
    for name, tensor in tensors.items():
        assert_same_tensor(simple[name], tensor)


def significant_digits(token: str) -> int:
    mantissa = token.lstrip("-").partition("e")[0].replace(".", "")
    return len(mantissa.strip("0")) or 1


@CODEC_SETTINGS
@given(values=st.sampled_from([np.float32, np.float64]).flatmap(lambda dtype: arrays(dtype, st.integers(1, 40))))
def test_floats_are_written_like_write_decimal(values):
    """Six significant digits when they identify the value, else max_digits10; NaN, Infinity, -Infinity bare."""
    tokens = json.loads(encode_outputs_value({"y": values}), parse_float=str, parse_constant=str)
    assert len(tokens) == values.size
    for value, token in zip(values.tolist(), tokens):
        if math.isnan(value):
            assert token == "NaN"
        elif math.isinf(value):
            assert token == ("Infinity" if value > 0 else "-Infinity")
        else:
            assert "." in token or "e" in token, token  # whole numbers keep ".0"
            assert values.dtype.type(float(token)) == value and math.copysign(1, float(token)) == math.copysign(
                1, value
            )
            assert significant_digits(token) <= MAX_DIGITS10[values.dtype], token
            if values.dtype.type(float(f"{value:.6g}")) == value:
                assert significant_digits(token) <= 6, token


# ---------------------------------------------------------------------------
# Invalid documents are INVALID_ARGUMENT, never another exception
# ---------------------------------------------------------------------------


@CODEC_SETTINGS
@given(body=st.binary(max_size=64), signature=signatures)
def test_random_bytes(body, signature):
    decode_or_reject(body, signature)


@CODEC_SETTINGS
@given(document=predict_documents(), signature=signatures)
def test_random_json_documents(document, signature):
    decode_or_reject(to_body(document), signature)


@CODEC_SETTINGS
@given(document=predict_documents(), signature=signatures)
def test_random_simple_inputs(document, signature):
    """The simple /predict endpoint's "input": any JSON value against the signature."""
    try:
        tensors = decode_input_value(document, signature)
    except ServingError as e:
        assert_invalid_argument(e)
        return
    assert {name: tensor.dtype for name, tensor in tensors.items()} == {
        name: SIGNATURE_DTYPES[dtype] for name, dtype in signature.items()
    }


@CODEC_SETTINGS
@given(
    document=st.fixed_dictionaries(
        {}, optional={"examples": json_values, "context": json_values, "signature_name": json_values}
    )
    | st.fixed_dictionaries({"examples": st.lists(st.dictionaries(json_text, json_values, max_size=3), max_size=3)})
)
def test_random_classify_and_regress_documents(document):
    try:
        context, examples = decode_examples(parse_document(to_body(document)))
    except ServingError as e:
        assert_invalid_argument(e)
        return
    for features in [context or {}, *examples]:
        for kind, values in features.values():
            expected_type = {"int64": int, "float": float, "bytes": bytes, None: None}[kind]
            assert all(type(value) is expected_type for value in values), (kind, values)


@CODEC_SETTINGS
@given(request=mutated_requests())
def test_mutated_requests(request):
    body, signature = request
    decode_or_reject(body, signature)


@CODEC_SETTINGS
@given(request=mutated_requests(), data=st.data())
def test_truncated_documents(request, data):
    body, signature = request
    cut = data.draw(st.integers(0, len(body) - 1))
    message = assert_rejected(body[:cut], signature)
    assert message.startswith("JSON Parse error: ")


@CODEC_SETTINGS
@given(tensors=st.integers(2, 3).flatmap(outputs), fmt=st.sampled_from([ROW, COLUMNAR]), data=st.data())
def test_ragged_lists(tensors, fmt, data):
    """One row one element shorter or longer than the others (or a list among scalars) is never a tensor."""
    name = data.draw(st.sampled_from(sorted(tensors)))
    nested = json.loads(encode_outputs_value({name: tensors[name]}), parse_constant=float)
    row = data.draw(st.integers(0, len(nested) - 1))
    if type(nested[row]) is not list:
        nested[row] = [nested[row]]
    else:
        nested[row] = nested[row][1:] if nested[row] else [0]
    key = "instances" if fmt == ROW else "inputs"
    assert_rejected(to_body({key: nested}), {name: WRITTEN_AS[tensors[name].dtype]})


# Per signature dtype: JSON leaves TF Serving takes, and leaves it refuses.
RIGHT_LEAVES = {
    "f": st.floats(width=32),
    "i": None,  # the dtype's range, below
    "b": st.booleans(),
    "O": st.text(max_size=3) | st.binary(max_size=3).map(lambda data: {"b64": base64.b64encode(data).decode()}),
}
WRONG_LEAVES = {
    "f": st.text(max_size=3) | st.booleans() | st.none() | st.just({"b64": "AA=="}),
    "i": st.floats() | st.booleans() | st.text(max_size=3) | st.none(),
    "b": st.integers() | st.floats() | st.text(max_size=3) | st.none(),
    "O": st.integers() | st.floats() | st.booleans() | st.none(),
}


@CODEC_SETTINGS
@given(dtype=st.sampled_from(sorted(SIGNATURE_DTYPES)), fmt=st.sampled_from([ROW, COLUMNAR]), data=st.data())
def test_values_of_the_wrong_type(dtype, fmt, data):
    """Strings where floats are expected, floats or out-of-range integers where ints are, and so on."""
    numpy_dtype = SIGNATURE_DTYPES[dtype]
    kind = "i" if numpy_dtype.kind in "iu" else numpy_dtype.kind
    right, wrong = RIGHT_LEAVES[kind], WRONG_LEAVES[kind]
    if kind == "i":
        low, high = int(np.iinfo(numpy_dtype).min), int(np.iinfo(numpy_dtype).max)
        right = st.integers(low, high)
        wrong = wrong | st.integers(max_value=low - 1) | st.integers(min_value=high + 1)
    leaves = data.draw(st.permutations([*data.draw(st.lists(right, max_size=5)), data.draw(wrong)]))
    key = "instances" if fmt == ROW else "inputs"
    message = assert_rejected(to_body({key: leaves}), {"x": dtype})
    assert f"is not of expected type: {dtype[3:].lower()}" in message


@CODEC_SETTINGS
@given(signature=st.dictionaries(tensor_names, st.just("DT_INT32"), min_size=1, max_size=2), data=st.data())
def test_mixed_row_formats(signature, data):
    """Instances that mix named objects with bare values."""
    named = {name: [1, 2] for name in signature}
    instances = data.draw(
        st.permutations([named, [1, 2], *data.draw(st.lists(st.sampled_from([named, [3, 4]]), max_size=3))])
    )
    assert_rejected(to_body({"instances": instances}), signature)


@CODEC_SETTINGS
@given(
    data=st.binary(min_size=1, max_size=12),
    damage=st.sampled_from(["bad character", "lone character"]),
    bad=st.sampled_from(list("!*-_~@#$%^&?é\x00")),
    fmt=st.sampled_from([ROW, COLUMNAR]),
    position=st.integers(0, 20),
)
def test_b64_objects_with_bad_base64(data, damage, bad, fmt, position):
    text = base64.b64encode(data).decode().rstrip("=")
    if damage == "bad character":
        position %= len(text) + 1
        text = text[:position] + bad + text[position:]
    else:  # 4k + 1 base64 characters leave 6 bits over, never a whole byte
        text = (text + "AAAA")[: (len(text) // 4) * 4 + 1]
    key = "instances" if fmt == ROW else "inputs"
    message = assert_rejected(to_body({key: [{"b64": text}]}), {"x": "DT_STRING"})
    assert "Unable to base64 decode" in message


# ---------------------------------------------------------------------------
# Deep nesting: a 400, not a crash
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["instances", "inputs"])
@pytest.mark.parametrize("closed", [True, False])
def test_ten_thousand_levels_of_brackets(key, closed):
    depth = 10_000
    body = f'{{"{key}": '.encode() + b"[" * depth + (b"1" + b"]" * depth + b"}" if closed else b"")
    assert_rejected(body, {"x": "DT_FLOAT"})


@CODEC_SETTINGS
@given(depth=st.integers(1, 1200), key=st.sampled_from(["instances", "inputs"]))
def test_nested_lists_of_any_depth(depth, key):
    """As deep as the parser goes: a tensor of that rank when numpy can make one, else a 400."""
    body = f'{{"{key}": '.encode() + b"[" * depth + b"1" + b"]" * depth + b"}"
    tensors = decode_or_reject(body, {"x": "DT_INT64"})
    if depth <= 32:  # numpy has held 32 dimensions since forever (64 since 2.0)
        assert tensors is not None
    if tensors is not None:
        assert tensors["x"].shape == (1,) * depth


def test_escaped_surrogates_at_any_depth_the_parser_takes():
    """Near the recursion limit the check for unpaired surrogate escapes must not overflow the stack either."""
    limit = sys.getrecursionlimit()
    for depth in range(limit - 300, limit + 10):
        for text in (r"\ud800", r"\ud83d\ude00"):
            body = f'{{"s": "{text}", "nested": '.encode() + b"[" * depth + b"]" * depth + b', "instances": [1]}'
            decode_or_reject(body, {"x": "DT_INT64"})


# ---------------------------------------------------------------------------
# Over real HTTP
# ---------------------------------------------------------------------------

DIGITS_INPUT = {"pixels": "DT_FLOAT"}
VALID_DIGITS_REQUEST = {"instances": [[0.0] * 64]}
invalid_bodies = (
    st.binary(max_size=64)
    | predict_documents().map(to_body)
    | st.builds(lambda body, cut: body[: cut % len(body)], mutated_requests().map(lambda r: r[0]), st.integers(0))
    | st.builds(lambda depth: b'{"instances": ' + b"[" * depth, st.integers(1, 20_000))
)
ENDPOINTS = [
    "/v1/models/digits:predict",
    "/v1/models/iris/versions/1:predict",
    "/v1/models/iris:classify",
    "/v1/models/iris:regress",
    "/predict",
]


@pytest.fixture(scope="module")
def http(bundled_server):
    with requests.Session() as session:
        session.trust_env = False
        yield bundled_server, session


@HTTP_SETTINGS
@given(body=invalid_bodies, endpoint=st.sampled_from(ENDPOINTS))
def test_invalid_bodies_over_http_get_json_400s(http, body, endpoint):
    server, session = http
    response = session.post(server.url + endpoint, data=body, timeout=30)
    if response.status_code == 200:  # a random document can be a valid request (e.g. {"inputs": []})
        assert parse_document(response.content)
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()
    assert error.keys() == {"error"} and isinstance(error["error"], str) and error["error"].strip()


def test_server_still_answers_after_the_invalid_bodies(http):
    server, session = http
    assert server.proc.poll() is None
    response = session.post(server.url + "/v1/models/digits:predict", json=VALID_DIGITS_REQUEST, timeout=30)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1
