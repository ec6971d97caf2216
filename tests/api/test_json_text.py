"""Tests of TF Serving's JSON text conventions: rapidjson's parse errors and WriteDecimal's number formatting.

Expected values come from rapidjson's error wording and offsets, or are
derived independently (C's strtof/printf through ctypes), never copied from
the module's output. How values appear inside error messages is tested through
the codec, in test_codec.py. parse_document's orjson fast path is checked against
the json-module parser it stands in for, on generated documents and JSON text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import struct

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.api import json_text
from appliance.api.json_text import _depth, _parse_with_rapidjson_rules, decimal_tokens, parse_document
from appliance.errors import InvalidArgument

PARSE_SETTINGS = settings(
    max_examples=300, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

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
    text = f"{value:g}"
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
    assert info.value.message == "JSON Parse error: The surrogate pair in string is invalid. at offset: 16"
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


def test_text_after_the_document_is_ignored():
    assert parse_document(b'{"a": 1} {"b": 2}') == {"a": 1}
    assert parse_document(b'{"a": 1},\x00') == {"a": 1}


@pytest.mark.parametrize(
    "literal, value",
    [
        (b"18446744073709551615", 2**64 - 1),  # UINT64_MAX
        (b"18446744073709551616", 2**64),
        (b"-9223372036854775808", -(2**63)),  # INT64_MIN
        (b"-9223372036854775809", -(2**63) - 1),
        (b"1" * 309, int("1" * 309)),  # below the largest double
        (b"1e308", 1e308),
        (b"1.5e308", 1.5e308),
        (b"1e-400", 0.0),
        (b"-0", 0),
        (b"-0.0", -0.0),
        (b"1e2", 100.0),
    ],
)
def test_numbers_keep_their_value_and_type(literal, value):
    """Integers stay exact Python ints however large (rapidjson's own doubles beyond int64 are the codec's business)."""
    got = parse_document(b'{"a": [' + literal + b"]}")["a"][0]
    assert typed(got) == typed(value)


@pytest.mark.parametrize(
    "literal",
    [
        b"1e400",
        b"-1e400",
        b"1E+309",
        b"1.8e308",
        b"0.5e309",
        b"0e400",
        b"0e" + b"9" * 5000,
        b"1" * 400,
        b"-" + b"1" * 310,
        b"2" * 309,
    ],
)
def test_numbers_beyond_a_double_are_refused_where_they_start(literal):
    """rapidjson's kParseErrorNumberTooBig (reader.h: an exponent above 308 less the fraction's, a double that
    overflows, a digit more once the integer reached 1.7976931348623157e307), after valid ones and in any member."""
    body = '{"é": "1e400", "a": [1e308, -2, '.encode() + literal + b", 1e400]}"
    with pytest.raises(InvalidArgument) as info:
        parse_document(body)
    assert info.value.message == (
        f"JSON Parse error: Number too big to be stored in double. at offset: {body.index(b', ' + literal) + 2}"
    )


@pytest.mark.parametrize("depth", [600, 1000, 1023])
def test_nesting_depth_is_limited_as_before(depth):
    """The json module gives up at the recursion limit less the stack (~975 deep under the server), orjson at 1024."""
    body = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"

    def result(parse):
        try:
            return parse(body)
        except InvalidArgument as error:
            return error.message

    assert result(parse_document) == result(_parse_with_rapidjson_rules)


# ---------------------------------------------------------------------------
# parse_document's orjson fast path reads every document as the rapidjson rules do
# ---------------------------------------------------------------------------


def typed(value):
    """A JSON value with the type of every part spelled out and floats as their bits (-0.0, NaN)."""
    if type(value) is float:
        return "float", struct.pack(">d", value)
    if type(value) is list:
        return "list", [typed(item) for item in value]
    if type(value) is dict:
        return "dict", [(key, typed(item)) for key, item in value.items()]  # key order too
    return type(value).__name__, value


def outcome(parse, body: bytes):
    try:
        return typed(parse(body))
    except InvalidArgument as error:
        return "error", error.message


edge_integers = st.sampled_from(
    [0, -1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, -(2**64), 10**18, 10**19, 10**30]
)
json_strings = st.text(max_size=8) | st.sampled_from(
    ["\ud800", "a\udfff", "\U0001f600", "\x00\x1f\x7f", '"\\/', "\u2028"]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | edge_integers
    | st.floats()
    | st.floats(width=32)
    | st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308, 1e-300, 1e300, 0.1, 1 / 3])
    | json_strings,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_strings, children, max_size=4),
    max_leaves=30,
)
DUMPS_OPTIONS = [
    {},
    {"separators": (",", ":")},
    {"ensure_ascii": False},
    {"ensure_ascii": False, "separators": (",", ":")},
    {"indent": 2},
]


@PARSE_SETTINGS
@given(st.dictionaries(json_strings, json_values, max_size=6), st.sampled_from(DUMPS_OPTIONS))
def test_parse_document_reads_documents_as_the_rapidjson_rules_do(document, options):
    body = json.dumps(document, **options).encode("utf-8", "surrogatepass")
    assert outcome(parse_document, body) == outcome(_parse_with_rapidjson_rules, body)


# JSON text written by hand: numbers and strings in every spelling, duplicate keys, and bytes changed at random.
number_literals = (
    st.integers().map(str)
    | st.integers(-(2**70), 2**70).map(str)
    | st.tuples(st.sampled_from(["%r", "%.17g", "%.20e", "%.3G", "%.25f", "%.0f"]), st.floats(allow_nan=False)).map(
        lambda pair: (pair[0] % pair[1]).replace("inf", "Infinity")
    )
    | st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?", fullmatch=True)
    | st.sampled_from(["-0", "-0.0", "1e400", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", "1E+2", "0e0"])
)
string_literals = json_strings.map(json.dumps) | st.sampled_from(
    [
        '"\\ud83d\\ude00"',
        '"\\uD83D\\uDE00"',
        '"\\ud800\\u0041"',
        '"\\udc00\\ud800"',
        '"x\\ud800"',
        '"\\\\ud800"',
        '"\\u00e9\\n\\t\\/"',
        '" 12345678901234567890123"',
    ]
)
text_values = st.recursive(
    number_literals | string_literals | st.sampled_from(["true", "false", "null"]),
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
        | st.lists(st.tuples(string_literals | st.just('"k"'), children), max_size=4).map(
            lambda members: "{" + ",".join(f"{key}: {value}" for key, value in members) + "}"
        )
    ),
    max_leaves=30,
)


@PARSE_SETTINGS
@given(
    st.lists(st.tuples(string_literals | st.just('"k"'), text_values), max_size=6),
    st.just(b"") | st.sampled_from([b" \n", b"\xef\xbb\xbf"]),
    st.just(b"") | st.sampled_from([b"\n", b"x", b", {}", b"]"]),
    st.just([]) | st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(b'[]{}",:\\ -.e0\x00\xff')), max_size=2),
)
def test_parse_document_reads_json_text_as_the_rapidjson_rules_do(members, prefix, suffix, changes):
    body = bytearray(prefix + ("{" + ", ".join(f"{key}: {value}" for key, value in members) + "}").encode() + suffix)
    for index, byte in changes:
        body[index % len(body)] = byte
    body = bytes(body)
    assert outcome(parse_document, body) == outcome(_parse_with_rapidjson_rules, body)


# ---------------------------------------------------------------------------
# Depth, not the count of brackets, sends a body to the rapidjson rules
# ---------------------------------------------------------------------------


@pytest.fixture
def strict_rules_refused(monkeypatch):
    """Fails a test whose body parse_document hands to the rapidjson rules instead of orjson."""

    def refuse(body):
        raise AssertionError("parsed with the rapidjson rules")

    monkeypatch.setattr(json_text, "_parse_with_rapidjson_rules", refuse)


def test_wide_bodies_take_orjson(strict_rules_refused):
    """An image as nested lists has 50,000 "[" but nests 5 deep: depth, not the count of brackets, decides."""
    image = np.random.default_rng(3).random((1, 224, 224, 3), dtype=np.float32).tolist()
    for key in ("instances", "inputs"):
        body = json.dumps({key: image, "note": "[" * 600}).encode()
        assert parse_document(body) == {key: image, "note": "[" * 600}
    brackets_in_strings = json.dumps({"a": ["[{" * 1000, '\\"[' * 600, "]" * 700]}).encode()
    assert parse_document(brackets_in_strings) == json.loads(brackets_in_strings)


def test_bodies_nesting_below_512_take_orjson(strict_rules_refused):
    body = b'{"a": ' + b"[" * 510 + b"]" * 510 + b', "b": "' + b"]" * 600 + b'"}'  # 511 levels
    assert _depth(body) == 511
    parse_document(body)


@pytest.mark.parametrize("depth", [511, 512, 2000])
def test_bodies_nesting_512_deep_or_more_take_the_rapidjson_rules(monkeypatch, depth):
    taken = []
    monkeypatch.setattr(json_text, "_parse_with_rapidjson_rules", lambda body: taken.append(body) or {})
    body = b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    parse_document(body)
    assert bool(taken) == (depth >= 512)


def nesting(value) -> int:
    """The reference depth: arrays and objects counted on the parsed value."""
    if type(value) is list:
        return 1 + max(map(nesting, value), default=0)
    if type(value) is dict:
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


# Strings made of what could fool a scan of the text: brackets, quotes, backslashes and escapes of them.
tricky_strings = st.text(alphabet='[]{}"\\/nu0', max_size=12)
nested_values = st.recursive(
    st.none() | st.integers() | st.floats(allow_nan=False) | tricky_strings,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(tricky_strings, children, max_size=3),
    max_leaves=40,
)


@PARSE_SETTINGS
@given(st.dictionaries(tricky_strings, nested_values, max_size=4), st.sampled_from(DUMPS_OPTIONS))
def test_depth_is_the_nesting_of_the_document(document, options):
    body = json.dumps(document, **options).encode("utf-8", "surrogatepass")
    assert _depth(body) == nesting(document)


@PARSE_SETTINGS
@given(
    st.dictionaries(tricky_strings, nested_values, max_size=4),
    st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(b'[]{}",:\\ n')), min_size=1, max_size=3),
)
def test_depth_is_exact_for_any_text_orjson_accepts(document, changes):
    """Changed at random, a body either stops being JSON (orjson refuses it: the depth does not matter) or nests
    exactly as deep as _depth says: it never under-estimates."""
    body = bytearray(json.dumps(document).encode())
    for index, byte in changes:
        body[index % len(body)] = byte
    try:
        value = orjson.loads(bytes(body))
    except orjson.JSONDecodeError:
        return
    assert _depth(bytes(body)) == nesting(value)


# ---------------------------------------------------------------------------
# Duplicate keys keep the first value (rapidjson's FindMember), on both paths
# ---------------------------------------------------------------------------


def keep_first(pairs):
    members = {}
    for key, value in pairs:
        members.setdefault(key, value)
    return members


def has_duplicates(body: bytes) -> bool:
    found = []
    json.loads(body, object_pairs_hook=lambda pairs: found.append(len({k for k, _ in pairs}) < len(pairs)))
    return any(found)


# Keys that collide (also once unescaped: "\u006b" is "k") and strings holding what a scan of the text could miscount.
colliding_keys = st.sampled_from(['"k"', '"\\u006b"', '"k:"', '": "', '"a\\\\"', '"a\\":"', '"{"'])
plain_literals = st.integers(-(10**6), 10**6).map(str) | st.sampled_from(
    ['"x:y"', '"\\":"', '"\\\\"', '"{:}"', "true", "null", "1.5", "NaN"]
)
keyed_values = st.recursive(
    plain_literals,
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
        | st.lists(st.tuples(colliding_keys, children), max_size=4).map(
            lambda members: "{" + ",".join(f"{key}:{value}" for key, value in members) + "}"
        )
    ),
    max_leaves=25,
)
# Over 2 KiB the ":" are counted with numpy instead of bytes.count and re.
PADDING = '"pad": "' + 'a:\\\\\\"{' * 300 + '"'


@PARSE_SETTINGS
@given(st.lists(st.tuples(colliding_keys, keyed_values), max_size=6), st.sampled_from(["", " ", "\n  "]), st.booleans())
def test_duplicate_keys_keep_the_first_value(members, space, padded):
    parts = [PADDING] * padded + [f"{space}{key}{space}:{space}{value}" for key, value in members]
    text = "{" + ",".join(parts) + "}"
    body = text.encode()
    assert outcome(parse_document, body) == typed(json.loads(body, object_pairs_hook=keep_first))
    if b"NaN" not in body:  # the check follows orjson, which refuses NaN
        assert json_text._kept_every_member(orjson.loads(body), body) is not has_duplicates(body)


def test_duplicate_keys_in_rows_and_deep_objects_keep_the_first_value():
    rows = ", ".join(f'{{"a": {i}, "b": "t:{i}"}}' for i in range(500))
    body = ('{"instances": [' + rows + ', {"a": 1, "a": 2}], "x": [[[{"y": {"z": 1, "z": 2}}]]]}').encode()
    assert len(body) > json_text._NUMPY_FROM
    assert parse_document(body) == json.loads(body, object_pairs_hook=keep_first)
    assert parse_document(body)["instances"][-1] == {"a": 1}


def test_bodies_without_duplicate_keys_take_orjson(strict_rules_refused):
    for document in (
        {"instances": [[0.5] * 64] * 3},
        {"signature_name": "a:b", "inputs": {"x": ["http://h:1/p"], "y": [{"b64": "AA=="}] * 3}},
        {"instances": [{"a": [1.0, 2.0], "b": 'x:\\":'} for _ in range(300)]},
    ):
        body = json.dumps(document).encode()
        assert parse_document(body) == document


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
