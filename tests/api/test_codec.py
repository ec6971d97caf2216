"""Tests of the JSON <-> numpy codec against TF Serving's json_tensor_test.cc and its formatting rules.

Expected values come from the C++ test file's literals or are derived
independently (Python's own json module), never copied from the codec's
output. Parse errors and WriteDecimal itself are tested in test_json_text.py.
"""

from __future__ import annotations

import base64
import json
import math
import sys

import numpy as np
import pytest

from appliance.api import codec
from appliance.api.codec import (
    COLUMNAR,
    ROW,
    decode_examples,
    decode_input_value,
    decode_predict_inputs,
    encode_classify_response,
    encode_error,
    encode_outputs_value,
    encode_predict_response,
    encode_regress_response,
    parse_document,
    signature_name,
)
from appliance.errors import Code, InvalidArgument, ServingError

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def predict(body: str | bytes, dtypes: dict[str, str]):
    if isinstance(body, str):
        body = body.encode()
    return decode_predict_inputs(parse_document(body), dtypes)


def predict_error(body: str | bytes, dtypes: dict[str, str], code: Code = Code.INVALID_ARGUMENT) -> str:
    with pytest.raises(ServingError) as info:
        predict(body, dtypes)
    assert info.value.code == code, info.value
    return info.value.message


def assert_array(actual: np.ndarray, expected, dtype) -> None:
    expected = np.asarray(expected, dtype=dtype)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if expected.dtype.kind == "f":
        np.testing.assert_array_equal(actual, expected)  # NaN == NaN here
    else:
        assert actual.tolist() == expected.tolist()


def tokens_of(body: bytes):
    """A JSON document with every number kept as its source text (CompareJsonAllValuesAsStrings)."""
    return json.loads(body, parse_float=str, parse_int=str, parse_constant=str)


# ---------------------------------------------------------------------------
# whole documents: deep nesting, signature_name (FillSignature)
# ---------------------------------------------------------------------------


def test_moderately_nested_unused_keys_are_fine():  # DeeplyNestedWellFormed, within Python's limits
    body = b'{"instances": [1], "nested": ' + b"[" * 200 + b"]" * 200 + b"}"
    inputs, _ = decode_predict_inputs(parse_document(body), {"default": "DT_INT32"})
    assert_array(inputs["default"], [1], np.int32)


def test_signature_name():
    assert signature_name({"instances": []}) == ""
    assert signature_name({"signature_name": "predict_images"}) == "predict_images"
    for bad in (5, ["hello"], None):
        with pytest.raises(InvalidArgument) as info:
            signature_name({"signature_name": bad})
        assert "'signature_name' key must be a string value." in info.value.message
        assert info.value.message.startswith("JSON Value: {")


# ---------------------------------------------------------------------------
# decode_predict_inputs: valid requests (json_tensor_test.cc)
# ---------------------------------------------------------------------------


def test_single_unnamed_tensor():
    inputs, fmt = predict('{"instances": [[1,2],[3,4],[5,6]]}', {"default": "DT_INT32"})
    assert fmt == ROW
    assert list(inputs) == ["default"]
    assert_array(inputs["default"], [[1, 2], [3, 4], [5, 6]], np.int32)


def test_single_unnamed_tensor_with_signature():
    doc = parse_document(b'{"signature_name": "predict_images", "instances": [[1,2]]}')
    assert signature_name(doc) == "predict_images"
    inputs, _ = decode_predict_inputs(doc, {"default": "DT_INT32"})
    assert_array(inputs["default"], [[1, 2]], np.int32)


def test_mixed_input_for_float_tensor():
    inputs, _ = predict('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', {"default": "DT_FLOAT"})
    assert_array(inputs["default"], [1, 2.0, 3, 4, 5.003, 0.007, 0.0], np.float32)


def test_mixed_input_for_double_tensor():
    inputs, _ = predict('{"instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}', {"default": "DT_DOUBLE"})
    assert_array(inputs["default"], [1.0, 2, 3, 4, 0.662, 0, 0.0], np.float64)


def test_float_tensor_with_precision_loss():
    for literal in ("1435774380", "1435774380.0"):
        inputs, _ = predict(f'{{"instances": [{literal}]}}', {"default": "DT_FLOAT"})
        assert_array(inputs["default"], [np.float32(1435774380.0)], np.float32)


def test_float_tensor_beyond_float_range():
    big, tiny = sys.float_info.max, sys.float_info.min
    for literal, expected in ((repr(big), math.inf), (repr(-big), -math.inf), (repr(tiny), 0.0), (repr(-tiny), -0.0)):
        inputs, _ = predict(f'{{"instances": [{literal}]}}', {"default": "DT_FLOAT"})
        assert_array(inputs["default"], [expected], np.float32)
        assert math.copysign(1, inputs["default"][0]) == math.copysign(1, expected)


def test_base64_scalars():
    inputs, fmt = predict('{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}', {"default": "DT_STRING"})
    assert fmt == ROW
    assert inputs["default"].dtype == object
    assert inputs["default"].tolist() == [b"hello", b"world"]


def test_base64_lists():
    inputs, _ = predict('{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}', {"default": "DT_STRING"})
    assert inputs["default"].shape == (2, 1)
    assert inputs["default"].tolist() == [[b"hello"], [b"world"]]


def test_single_named_tensor_base64():
    body = '{"instances": [{"default": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}]}'
    inputs, _ = predict(body, {"default": "DT_STRING"})
    assert inputs["default"].shape == (1, 2, 1)
    assert inputs["default"].tolist() == [[[b"hello"], [b"world"]]]


def test_multiple_named_tensors():
    body = """{"instances": [
        {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
         "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
        {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
         "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}"""
    dtypes = {
        "int_tensor": "DT_INT32",
        "str_tensor": "DT_STRING",
        "float_tensor": "DT_FLOAT",
        "dbl_tensor": "DT_DOUBLE",
    }
    inputs, fmt = predict(body, dtypes)
    assert fmt == ROW and set(inputs) == set(dtypes)
    assert_array(inputs["int_tensor"], [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], np.int32)
    assert inputs["str_tensor"].tolist() == [[b"foo", b"bar"], [b"baz", b"bat"]]
    assert_array(inputs["float_tensor"], [[1.0, math.nan], [2.0, math.inf]], np.float32)
    assert_array(inputs["dbl_tensor"], [[math.nan], [2.0]], np.float64)


def test_single_tensor_columnar_named_and_unnamed():
    for body in ('{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}', '{"inputs": [[[1,2],[3,4],[5,6]]]}'):
        inputs, fmt = predict(body, {"int_tensor": "DT_INT32"})
        assert fmt == COLUMNAR
        assert_array(inputs["int_tensor"], [[[1, 2], [3, 4], [5, 6]]], np.int32)


def test_multiple_named_tensors_columnar():
    body = """{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], "str_tensor": ["foo", "bar"],
                          "bin_tensor": {"b64": "aGVsbG8="}, "ignored": [1, "x"]}}"""
    inputs, fmt = predict(body, {"int_tensor": "DT_INT32", "str_tensor": "DT_STRING", "bin_tensor": "DT_STRING"})
    assert fmt == COLUMNAR and set(inputs) == {"int_tensor", "str_tensor", "bin_tensor"}
    assert_array(inputs["int_tensor"], [[[1, 2], [3, 4], [5, 6]]], np.int32)
    assert inputs["str_tensor"].tolist() == [b"foo", b"bar"]
    assert inputs["bin_tensor"].shape == () and inputs["bin_tensor"].item() == b"hello"


def test_columnar_scalars_and_empty_list():
    inputs, _ = predict('{"inputs": 5}', {"x": "DT_INT64"})
    assert_array(inputs["x"], 5, np.int64)
    inputs, _ = predict('{"inputs": {"a": 1.5, "b": true}}', {"a": "DT_DOUBLE", "b": "DT_BOOL"})
    assert_array(inputs["a"], 1.5, np.float64)
    assert_array(inputs["b"], True, np.bool_)
    inputs, _ = predict('{"inputs": []}', {"x": "DT_FLOAT"})
    assert_array(inputs["x"], np.zeros(0), np.float32)
    inputs, _ = predict('{"inputs": [[], []]}', {"x": "DT_STRING"})
    assert inputs["x"].shape == (2, 0) and inputs["x"].dtype == object


def test_row_scalars_of_every_instance():
    inputs, _ = predict('{"instances": ["foo", "bar", "baz"]}', {"x": "DT_STRING"})
    assert inputs["x"].tolist() == [b"foo", b"bar", b"baz"]
    inputs, _ = predict('{"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}', {"a": "DT_INT32", "b": "DT_STRING"})
    assert_array(inputs["a"], [1, 2], np.int32)
    assert inputs["b"].tolist() == [b"x", b"y"]


def test_utf8_strings_are_encoded():
    inputs, _ = predict('{"inputs": ["héllo", "\\u00e9", ""]}', {"x": "DT_STRING"})
    assert inputs["x"].tolist() == ["héllo".encode(), "é".encode(), b""]


@pytest.mark.parametrize(
    "dtype, values, np_dtype",
    [
        ("DT_FLOAT", [1.5, -2, 0.1, 3.4e38], np.float32),
        ("DT_DOUBLE", [1.5, -2, 0.1, 1e308], np.float64),
        ("DT_INT32", [-(2**31), 0, 2**31 - 1], np.int32),
        ("DT_INT16", [-(2**15), 7, 2**15 - 1], np.int16),
        ("DT_INT8", [-128, 0, 127], np.int8),
        ("DT_UINT8", [0, 1, 255], np.uint8),
        ("DT_INT64", [-(2**63), 0, 2**63 - 1], np.int64),
        ("DT_UINT32", [0, 2**32 - 1], np.uint32),
        ("DT_UINT64", [0, 2**63, 2**64 - 1], np.uint64),
        ("DT_BOOL", [True, False, True], np.bool_),
    ],
)
def test_every_numeric_dtype_row_and_columnar(dtype, values, np_dtype):
    text = json.dumps(values)
    inputs, _ = predict(f'{{"instances": [{text}, {text}]}}', {"x": dtype})
    assert_array(inputs["x"], [values, values], np_dtype)
    inputs, _ = predict(f'{{"inputs": {text}}}', {"x": dtype})
    assert_array(inputs["x"], values, np_dtype)


def test_base64_follows_absl_unescape():
    for encoded in ("aGVsbG8=", "aGVsbG8", "aGVs bG8=\n", "aGVsbG8."):
        inputs, _ = predict(f'{{"inputs": {{"b64": {json.dumps(encoded)}}}}}', {"x": "DT_STRING"})
        assert inputs["x"].item() == b"hello", encoded
    raw = bytes(range(256))
    inputs, _ = predict(f'{{"inputs": [{{"b64": "{base64.b64encode(raw).decode()}"}}]}}', {"x": "DT_STRING"})
    assert inputs["x"].tolist() == [raw]


def test_fast_and_precise_paths_agree(monkeypatch):
    cases = [
        ('{"instances": [[1,2],[3,4],[5,6]]}', {"d": "DT_INT32"}),
        ('{"instances": [1, 2.5, NaN, -Infinity, 1e39, 3]}', {"d": "DT_FLOAT"}),
        ('{"instances": [[1, 2.5], [3, 4]]}', {"d": "DT_DOUBLE"}),
        ('{"instances": [[true], [false]]}', {"d": "DT_BOOL"}),
        ('{"instances": [{"b64": "aGk="}, "x"]}', {"d": "DT_STRING"}),
        ('{"instances": [{"a": [1, 2], "b": ["x"]}, {"a": [3, 4], "b": ["y"]}]}', {"a": "DT_UINT8", "b": "DT_STRING"}),
        ('{"inputs": {"a": [[1, 2]], "b": 18446744073709551615}}', {"a": "DT_INT64", "b": "DT_UINT64"}),
        ('{"inputs": [[], []]}', {"d": "DT_INT16"}),
    ]
    fast = [predict(body, dtypes) for body, dtypes in cases]
    monkeypatch.setattr(codec, "_fast_tensor", lambda value, dtype: None)
    precise = [predict(body, dtypes) for body, dtypes in cases]
    for (f_inputs, f_fmt), (p_inputs, p_fmt) in zip(fast, precise):
        assert f_fmt == p_fmt and f_inputs.keys() == p_inputs.keys()
        for name in f_inputs:
            assert_array(f_inputs[name], p_inputs[name], p_inputs[name].dtype)


# ---------------------------------------------------------------------------
# decode_predict_inputs: errors
# ---------------------------------------------------------------------------


def test_single_unnamed_tensor_errors():
    single = {"default": "DT_INT32"}
    with pytest.raises(InvalidArgument, match="must be a string value"):  # read first, by the caller
        signature_name(parse_document(b'{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}'))
    assert "Not formatted correctly" in predict_error(
        '{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2],[3,4],[5,6,7]]}', single
    )
    assert predict_error('{"instances": [[1,2],[3,4],[5,6,7]]}', single) == (
        "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 2 but got: 3"
    )
    assert predict_error('{"instances": [[1,2],[3,4],[[5,6]]]}', single) == (
        "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting shape [2] but got: [1,2]"
    )
    assert "Expecting shape [] but got: [1]" in predict_error('{"instances": [1, [1]]}', single)
    assert 'JSON Value: "a" Type: String is not of expected type: int32' in predict_error(
        '{"instances": [[1,2],["a", "b"]]}', single
    )


def test_multiple_named_tensor_errors():
    dtypes = {"int_tensor": "DT_INT32", "str_tensor": "DT_STRING"}
    message = predict_error(
        """{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},
                          {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}""",
        dtypes,
    )
    assert message.startswith("Failed to process element: 1 key: int_tensor of 'instances' list. Error: ")
    assert "Expecting shape" in message
    assert "Expecting tensor size" in predict_error(
        """{"instances": [{"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor": ["foo", "bar"]},
                          {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"]}]}""",
        dtypes,
    )
    assert (
        predict_error(
            """{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"]},
                          [1, 20, 30],
                          {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["baz", "bat"]}]}""",
            dtypes,
        )
        == "Expecting object but got list at item 1 of input list"
    )
    assert (
        predict_error('{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}', {"str_tensor": "DT_STRING"})
        == "Expecting value/list but got object at item 1 of input list"
    )


def test_instances_objects_must_name_exactly_the_inputs():
    dtypes = {"b": "DT_INT32", "a": "DT_INT32"}
    assert predict_error('{"instances": [{"a": 1, "b": 2}, {"a": 3}]}', dtypes) == (
        "Failed to process element: 1 of 'instances' list. JSON object: {\n    \"a\": 3\n} keys must be equal to: a,b"
    )
    assert predict_error('{"instances": [{"a": 1, "b": 2, "c": 3}]}', dtypes) == (
        "Failed to process element: 0 key: c of 'instances' list. "
        "Error: INVALID_ARGUMENT: JSON object: does not have named input: c"
    )


def test_request_shape_errors():
    single = {"x": "DT_FLOAT"}
    assert predict_error('{"instances": 5}', single) == (
        "JSON Value: {\n    \"instances\": 5\n} Expecting 'instances' to be an list/array"
    )
    assert predict_error('{"instances": []}', single) == (
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"
    )
    assert predict_error('{"instances": [1], "inputs": [1]}', single) == (
        'JSON Value: {\n    "instances": [1],\n    "inputs": [1]\n} Not formatted correctly expecting only '
        "one of 'inputs' or 'instances' keys to exist "
    )
    assert predict_error('{"signature_name": "x"}', single) == "Missing 'inputs' or 'instances' key"
    two = {"a": "DT_FLOAT", "b": "DT_FLOAT"}
    assert predict_error('{"instances": [[1.0]]}', two) == (
        "instances is a plain list, but expecting list of objects as multiple input tensors "
        "required as per tensorinfo_map"
    )
    assert predict_error('{"inputs": [1.0]}', two) == (
        "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map"
    )
    assert predict_error('{"inputs": {"b64": "aGk="}}', two).startswith("inputs is a plain value/list")
    assert predict_error('{"inputs": {"a": [1.0], "c": [2.0]}}', two) == "Missing named input: b in 'inputs' object."
    assert predict_error('{"inputs": {"y": [1.0]}}', single) == "Missing named input: x in 'inputs' object."


def test_ragged_values():
    single = {"x": "DT_INT32"}
    assert predict_error('{"inputs": [[1, 2], [3]]}', single) == (
        "Encountered list at unexpected size: 1 at level: 1 expected size: 2"
    )
    assert predict_error('{"inputs": [[1, 2], 3]}', single) == (
        "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"
    )
    assert predict_error('{"inputs": [[1, [2]], [3, 4]]}', single) == (
        "Encountered list at unexpected level: 2 expected < 2"
    )
    assert predict_error('{"instances": [[1, 2], [3, [4]]]}', single) == (
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Encountered list at unexpected level: 1 expected < 1"
    )
    # depth-first, like FillTensorProto: the bad value comes before the short list
    assert 'JSON Value: "a" Type: String' in predict_error('{"inputs": [[1, "a"], [2]]}', single)


def test_values_in_messages_use_pretty_writer_layout():
    message = predict_error('{"inputs": [[1, {"b": [true, null]}]]}', {"x": "DT_INT32"})
    assert message == 'JSON Value: {\n    "b": [true, null]\n} Type: Object is not of expected type: int32'
    message = predict_error('{"instances": [{"a": ["x", {"c": {}}]}]}', {"a": "DT_STRING"})
    assert message == (
        "Failed to process element: 0 key: a of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: {\n    "c": {}\n} not formatted correctly for base64 data'
    )
    message = predict_error('{"instances": [{"a": [{"b64": "aGk="}], "c": {}}]}', {"a": "DT_STRING", "c": "DT_STRING"})
    assert message.endswith("JSON Value: {} not formatted correctly for base64 data")
    message = predict_error('{"instances": [{"a": {"b64": "aGk="}}]}', {"a": "DT_STRING", "b": "DT_STRING"})
    assert message == (
        "Failed to process element: 0 of 'instances' list. JSON object: "
        '{\n    "a": {\n        "b64": "aGk="\n    }\n} keys must be equal to: a,b'
    )


@pytest.mark.parametrize(
    "dtype, value, shown, json_type, type_name",
    [
        ("DT_FLOAT", '"1.5"', '"1.5"', "String", "float"),
        ("DT_FLOAT", "true", "true", "True", "float"),
        ("DT_FLOAT", "null", "null", "Null", "float"),
        ("DT_DOUBLE", "false", "false", "False", "double"),
        ("DT_INT32", "3.0", "3.0", "Number", "int32"),
        ("DT_INT32", "true", "true", "True", "int32"),
        ("DT_INT64", "1e3", "1000.0", "Number", "int64"),  # rapidjson prints the double it parsed
        ("DT_INT64", "9223372036854775808", "9223372036854775808", "Number", "int64"),
        ("DT_UINT32", "-1", "-1", "Number", "uint32"),
        ("DT_UINT64", "-1", "-1", "Number", "uint64"),
        ("DT_INT16", "32768", "32768", "Number", "int16"),
        ("DT_INT8", "-129", "-129", "Number", "int8"),
        ("DT_UINT8", "256", "256", "Number", "uint8"),
        ("DT_INT32", "2147483648", "2147483648", "Number", "int32"),
        ("DT_BOOL", "1", "1", "Number", "bool"),
        ("DT_BOOL", '"true"', '"true"', "String", "bool"),
        ("DT_STRING", "1", "1", "Number", "string"),
        ("DT_STRING", "false", "false", "False", "string"),
        ("DT_FLOAT", '{"b64": "aGk="}', '{\n    "b64": "aGk="\n}', "Object", "float"),  # PrettyWriter layout
        ("DT_INT32", '{"a": 1}', '{\n    "a": 1\n}', "Object", "int32"),
        # rapidjson's number layout (dtoa + Prettify): shortest digits, no "+", ".0" on whole numbers
        ("DT_INT32", "1e-7", "1e-7", "Number", "int32"),
        ("DT_INT32", "0.000123", "0.000123", "Number", "int32"),
        ("DT_INT32", "1.5E300", "1.5e300", "Number", "int32"),
        ("DT_INT32", "1e20", "100000000000000000000.0", "Number", "int32"),
        ("DT_INT32", "1e21", "1e21", "Number", "int32"),
        ("DT_INT32", "-0.0", "-0.0", "Number", "int32"),
        ("DT_INT64", "18446744073709551616", "18446744073709552000.0", "Number", "int64"),  # a double
    ],
)
def test_type_errors(dtype, value, shown, json_type, type_name):
    expected = f"JSON Value: {shown} Type: {json_type} is not of expected type: {type_name}"
    first = "true" if dtype == "DT_BOOL" else '"s"' if dtype == "DT_STRING" else "1"
    bodies = [f'{{"inputs": [{first}, {value}]}}', f'{{"instances": [[{value}]]}}']
    if not value.startswith('{"a"'):  # a bare object other than {"b64": ...} names the inputs instead
        bodies.append(f'{{"inputs": {value}}}')
    for body in bodies:
        assert expected in predict_error(body, {"x": dtype})


def test_booleans_mixed_into_numbers_are_rejected():
    # numpy would quietly read true as 1; TF Serving rejects it.
    for dtype in ("DT_FLOAT", "DT_DOUBLE", "DT_INT32", "DT_INT64", "DT_UINT8"):
        assert "Type: True is not of expected type" in predict_error('{"instances": [[1, 2], [3, true]]}', {"x": dtype})
        assert "Type: False is not of expected type" in predict_error('{"inputs": [false, 2]}', {"x": dtype})
    assert "Type: True is not of expected type: float" in predict_error('{"inputs": [1.5, true]}', {"x": "DT_FLOAT"})
    assert "Type: Number is not of expected type: bool" in predict_error('{"inputs": [true, 0]}', {"x": "DT_BOOL"})


def test_narrow_integers_are_range_checked_not_wrapped():
    message = predict_error('{"instances": [[1, 300]]}', {"x": "DT_UINT8"})
    assert "JSON Value: 300 Type: Number is not of expected type: uint8" in message
    assert "out of range [0, 255]" in message


def test_base64_errors():
    assert "Unable to base64 decode" in predict_error('{"inputs": [{"b64": "a!b="}]}', {"x": "DT_STRING"})
    assert "Unable to base64 decode" in predict_error('{"inputs": [{"b64": "aGVsbG8=="}]}', {"x": "DT_STRING"})
    assert predict_error('{"inputs": [{"b64": 5}]}', {"x": "DT_STRING"}) == (
        'JSON Value: {\n    "b64": 5\n} not formatted correctly for base64 data'
    )
    assert "not formatted correctly for base64 data" in predict_error(
        '{"inputs": [{"b64": "aGk=", "x": 1}]}', {"x": "DT_STRING"}
    )


def test_unsupported_dtype_is_unimplemented():
    message = predict_error('{"inputs": [1.5]}', {"x": "DT_HALF"}, Code.UNIMPLEMENTED)
    assert message == "Conversion of JSON Value: 1.5 to type: half"
    wrapped = predict_error('{"instances": [1.5]}', {"x": "DT_COMPLEX64"})  # row format rewraps as InvalidArgument
    assert wrapped == (
        "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: Conversion of JSON Value: 1.5 "
        "to type: complex64"
    )


def test_no_inputs_in_signature():
    assert predict_error('{"inputs": [1]}', {}) == "Failed to get input map for signature: DEFAULT"


def test_error_values_are_truncated_like_tf_serving():
    body = json.dumps({"instances": 1, "padding": list(range(1000))})
    message = predict_error(body, {"x": "DT_FLOAT"})
    shown = message[len("JSON Value: ") : message.index(" Expecting 'instances'")]
    assert 256 <= len(shown) < 270
    assert shown.startswith('{\n    "instances": 1,\n    "padding": [0, 1, 2, ')


# ---------------------------------------------------------------------------
# decode_input_value (the simple /predict endpoint)
# ---------------------------------------------------------------------------


def test_decode_input_value():
    inputs = decode_input_value([[1.0, 2.0]], {"x": "DT_FLOAT"})
    assert_array(inputs["x"], [[1.0, 2.0]], np.float32)
    inputs = decode_input_value({"b64": "aGk="}, {"x": "DT_STRING"})
    assert inputs["x"].item() == b"hi"
    inputs = decode_input_value({"a": [1], "b": "s"}, {"a": "DT_INT64", "b": "DT_STRING"})
    assert_array(inputs["a"], [1], np.int64)
    assert inputs["b"].item() == b"s"
    with pytest.raises(InvalidArgument) as info:
        decode_input_value([1.0], {"a": "DT_FLOAT", "b": "DT_FLOAT"})
    assert "but expecting an object as multiple input tensors" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        decode_input_value({"a": [1.0]}, {"a": "DT_FLOAT", "b": "DT_FLOAT"})
    assert info.value.message == "Missing named input: b in 'input' object."


# ---------------------------------------------------------------------------
# encode_predict_response / encode_outputs_value (MakeJsonFromTensors)
# ---------------------------------------------------------------------------


def test_single_tensor_row_and_columnar():
    tensor = {"int_tensor": np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], dtype=np.int32)}
    expected = [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]
    assert json.loads(encode_predict_response(tensor, ROW)) == {"predictions": expected}
    assert json.loads(encode_predict_response(tensor, COLUMNAR)) == {"outputs": expected}


def test_single_vector_tensor():
    tensor = {"int_tensor": np.array([1, 2, 3, 4, 5], dtype=np.int32)}
    assert json.loads(encode_predict_response(tensor, ROW)) == {"predictions": [1, 2, 3, 4, 5]}
    assert json.loads(encode_predict_response(tensor, COLUMNAR)) == {"outputs": [1, 2, 3, 4, 5]}


def test_single_bytes_tensor():
    tensor = {"str_tensor_bytes": np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object)}
    assert json.loads(encode_predict_response(tensor, ROW)) == {
        "predictions": [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}], [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]
    }


def test_six_digit_precision():
    tensor = {"float_tensor": np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], dtype=np.float32)}
    assert tokens_of(encode_predict_response(tensor, ROW)) == {
        "predictions": [["9e+06", "999999.0", "0.5"], ["0.0003", "3e-05", "555557.5"]]
    }


def test_non_finite_floats():
    tensor = {"float_tensor": np.array([[np.nan, np.inf], [3, -np.inf]], dtype=np.float32)}
    assert tokens_of(encode_predict_response(tensor, ROW)) == {
        "predictions": [["NaN", "Infinity"], ["3.0", "-Infinity"]]
    }
    assert tokens_of(encode_predict_response({"d": np.array([np.nan, -np.inf], np.float64)}, COLUMNAR)) == {
        "outputs": ["NaN", "-Infinity"]
    }


def test_float_examples_from_the_brief():
    tensor = {"y": np.array([2.05, 13 / 6, 3.0], dtype=np.float32)}
    assert tokens_of(encode_predict_response(tensor, COLUMNAR)) == {"outputs": ["2.05", "2.16666675", "3.0"]}
    doubles = {"y": np.array([2.05, 13 / 6, 3.0, 0.1], dtype=np.float64)}
    assert tokens_of(encode_predict_response(doubles, COLUMNAR)) == {
        "outputs": ["2.05", "%.17g" % (13 / 6), "3.0", "0.1"]
    }


def test_float16_is_written_as_float():
    assert tokens_of(encode_outputs_value({"y": np.array([0.5, 0.1], np.float16)}).encode()) == ["0.5", "0.0999755859"]


def test_ints_bools_and_strings():
    outputs = {
        "i8": np.array([-128, 127], np.int8),
        "u64": np.array([2**64 - 1, 0], np.uint64),
        "b": np.array([True, False]),
        "s": np.array([b"caf\xc3\xa9", b"\xff", b'q"\n'], dtype=object),
        "s_bytes": np.array([b"\xff\x00"], dtype=object),
    }
    assert json.loads(encode_outputs_value(outputs)) == {
        "i8": [-128, 127],
        "u64": [2**64 - 1, 0],
        "b": [True, False],
        "s": ["café", "\ufffd", 'q"\n'],
        "s_bytes": [{"b64": "/wA="}],
    }


def test_multiple_named_tensors_row_and_columnar():
    outputs = {
        "int_tensor": np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], np.int32),
        "str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object),
        "float_tensor": np.array([[1.0], [2.0]], np.float32),
        "double_scalar_tensor": np.array([8.0, 9.0], np.float64),
        "str_tensor_bytes": np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object),
    }
    assert json.loads(encode_predict_response(outputs, ROW)) == {
        "predictions": [
            {
                "double_scalar_tensor": 8.0,
                "float_tensor": [1.0],
                "int_tensor": [[1, 2], [3, 4], [5, 6]],
                "str_tensor": ["foo", "bar"],
                "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
            },
            {
                "double_scalar_tensor": 9.0,
                "float_tensor": [2.0],
                "int_tensor": [[7, 8], [9, 0], [1, 2]],
                "str_tensor": ["baz", "bat"],
                "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
            },
        ]
    }
    assert json.loads(encode_predict_response(outputs, COLUMNAR)) == {
        "outputs": {
            "double_scalar_tensor": [8.0, 9.0],
            "float_tensor": [[1.0], [2.0]],
            "int_tensor": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
            "str_tensor": [["foo", "bar"], ["baz", "bat"]],
            "str_tensor_bytes": [
                [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
            ],
        }
    }


def test_zero_batch_and_scalar_outputs():
    assert json.loads(encode_predict_response({"t": np.zeros((0, 2), np.int32)}, ROW)) == {"predictions": []}
    outputs = {"s": np.zeros((0, 1, 2), dtype=object), "f": np.zeros((0, 3, 4), np.float32)}
    assert json.loads(encode_predict_response(outputs, ROW)) == {"predictions": []}
    assert json.loads(encode_predict_response({"t": np.zeros((2, 0), np.float32)}, COLUMNAR)) == {"outputs": [[], []]}
    assert json.loads(encode_predict_response({"t": np.float32(1.5)}, COLUMNAR)) == {"outputs": 1.5}
    assert json.loads(encode_outputs_value({"a": np.int64(3), "b": np.array([b"x"], dtype=object)})) == {
        "a": 3,
        "b": ["x"],
    }


def test_output_errors():
    with pytest.raises(InvalidArgument, match="Cannot convert empty tensor map to JSON"):
        encode_predict_response({}, ROW)
    with pytest.raises(InvalidArgument, match="tensor type: complex64"):
        encode_predict_response({"tensor": np.array([1.0, 2.0], np.complex64)}, ROW)
    with pytest.raises(InvalidArgument) as info:
        encode_predict_response({"tensor": np.int32(1)}, ROW)
    assert info.value.message == "Tensor name: tensor has no shape information "
    outputs = {
        "int_tensor": np.zeros((2, 3), np.int32),
        "str_tensor": np.array([[b"foo", b"bar", b"baz"]], dtype=object),
    }
    with pytest.raises(InvalidArgument) as info:
        encode_predict_response(outputs, ROW)
    assert info.value.message == "Tensor name: str_tensor has inconsistent batch size: 1 expecting: 2"
    outputs = {"int_tensor": np.zeros((0, 2), np.int32), "str_tensor": np.array([[b"foo", b"bar"]], dtype=object)}
    with pytest.raises(InvalidArgument, match="inconsistent batch size"):
        encode_predict_response(outputs, ROW)
    assert json.loads(encode_predict_response(outputs, COLUMNAR))["outputs"]["int_tensor"] == []


# ---------------------------------------------------------------------------
# round trip: encode columnar -> json.loads -> decode
# ---------------------------------------------------------------------------

_ROUND_TRIP = [
    ("DT_FLOAT", np.float32),
    ("DT_DOUBLE", np.float64),
    ("DT_INT32", np.int32),
    ("DT_INT16", np.int16),
    ("DT_INT8", np.int8),
    ("DT_UINT8", np.uint8),
    ("DT_INT64", np.int64),
    ("DT_UINT32", np.uint32),
    ("DT_UINT64", np.uint64),
    ("DT_BOOL", np.bool_),
]


@pytest.mark.parametrize("dtype_enum, np_dtype", _ROUND_TRIP)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4), (2, 3, 5), (300,)])
def test_round_trip(dtype_enum, np_dtype, shape):
    rng = np.random.default_rng(hash((dtype_enum, shape)) % 2**32)
    size = math.prod(shape)
    if np_dtype == np.bool_:
        tensor = rng.integers(0, 2, size).astype(np.bool_)
    elif np.dtype(np_dtype).kind == "f":
        bits = np.dtype(np_dtype).itemsize * 8
        raw = rng.integers(0, 2**bits, size, dtype=np.uint64, endpoint=False)
        tensor = raw.astype(f"uint{bits}").view(np_dtype)  # every bit pattern: NaN, inf, subnormals, -0.0 ...
        tensor = np.where(np.isnan(tensor), np_dtype(np.nan), tensor)  # JSON has a single NaN
    else:
        info = np.iinfo(np_dtype)
        tensor = rng.integers(info.min, info.max, size, dtype=np_dtype, endpoint=True)
        if size >= 2:
            tensor[:2] = [info.min, info.max]
    tensor = tensor.reshape(shape)
    text = encode_outputs_value({"x": tensor})
    decoded = decode_input_value(json.loads(text), {"x": dtype_enum})["x"]
    assert decoded.dtype == np_dtype and decoded.shape == shape
    if tensor.dtype.kind == "f":
        bits = f"uint{tensor.itemsize * 8}"  # compare bit patterns: -0.0 and NaN included
        np.testing.assert_array_equal(decoded.view(bits), tensor.view(bits))
    else:
        assert decoded.tolist() == tensor.tolist()
    body = b'{"inputs": ' + text.encode() + b"}"  # and through the full request path
    inputs, _ = decode_predict_inputs(parse_document(body), {"x": dtype_enum})
    assert inputs["x"].tobytes() == decoded.tobytes()


def test_round_trip_strings_and_bytes():
    tensor = np.array([["héllo", ""], ["a\u0000b", '"\\']], dtype=object)
    tensor = np.vectorize(lambda s: s.encode(), otypes=[object])(tensor)
    decoded = decode_input_value(json.loads(encode_outputs_value({"x": tensor})), {"x": "DT_STRING"})
    assert decoded["x"].tolist() == tensor.tolist()
    raw = np.array([bytes(range(256)), b"\xff"], dtype=object)
    decoded = decode_input_value(json.loads(encode_outputs_value({"x_bytes": raw})), {"x": "DT_STRING"})
    assert decoded["x"].tolist() == raw.tolist()


# ---------------------------------------------------------------------------
# decode_examples (FillClassificationRequestFromJson / FillRegressionRequestFromJson)
# ---------------------------------------------------------------------------


def test_examples_without_context():
    doc = parse_document(
        b"""{"examples": [{"names": ["foo", "bar"], "ratings": [8.0, 9.0], "age": 20},
                          {"names": ["baz"], "ratings": 6.0}]}"""
    )
    context, examples = decode_examples(doc)
    assert context is None
    assert examples == [
        {"names": ("bytes", [b"foo", b"bar"]), "ratings": ("float", [8.0, 9.0]), "age": ("int64", [20])},
        {"names": ("bytes", [b"baz"]), "ratings": ("float", [6.0])},
    ]


def test_examples_with_context_and_signature():
    doc = parse_document(
        b"""{"signature_name": "custom_signture",
            "context": {"query": "pizza", "location": ["sfo"]},
            "examples": [
              {"names": ["foo", "bar"], "ratings": [8.0, 9.0, NaN, Infinity], "age": 20},
              {"names": ["baz", {"b64": "aGVsbG8="}], "ratings": 6.0, "intboolmix": [1, true, false]},
              {"names": "bar", "ratings": -Infinity, "empty": []}]}"""
    )
    assert signature_name(doc) == "custom_signture"
    context, examples = decode_examples(doc)
    assert context == {"query": ("bytes", [b"pizza"]), "location": ("bytes", [b"sfo"])}
    kind, ratings = examples[0]["ratings"]
    assert kind == "float" and ratings[:3] == [8.0, 9.0, ratings[2]] and math.isnan(ratings[2])
    assert ratings[3] == math.inf
    assert examples[0]["names"] == ("bytes", [b"foo", b"bar"]) and examples[0]["age"] == ("int64", [20])
    assert examples[1] == {
        "names": ("bytes", [b"baz", b"hello"]),
        "ratings": ("float", [6.0]),
        "intboolmix": ("int64", [1, 1, 0]),
    }
    assert examples[2] == {"names": ("bytes", [b"bar"]), "ratings": ("float", [-math.inf]), "empty": (None, [])}


def test_example_value_kinds():
    doc = {"examples": [{"i": [-(2**63), 2**63 - 1], "f": [1e300, 1.0], "big": 2**64, "s": "é", "b": False}]}
    _, (example,) = decode_examples(doc)
    assert example["i"] == ("int64", [-(2**63), 2**63 - 1])
    assert example["f"] == ("float", [1e300, 1.0])
    assert example["big"] == ("float", [float(2**64)])  # beyond uint64 rapidjson holds a double
    assert example["s"] == ("bytes", ["é".encode()])
    assert example["b"] == ("int64", [0])


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"context": [{"names": ["foo", "bar"]}]}', "Example must be JSON object but got JSON Array"),
        ('{"examples": {"names": ["foo", "bar"]}}', "Expecting 'examples' value to be an list/array"),
        ('{"examples": [[{"names": ["foo", "bar"]}]]}', "Example must be JSON object but got JSON Array"),
        ('{"examples": [{"names": [10, null]}]}', "Feature: names has element with unexpected JSON type: Null"),
        ('{"examples": [{"names": [10, 10.0]}]}', "Unexpected element type in feature: names expecting type: int64"),
        ('{"examples": [{"names": [1.5, 10]}]}', "Unexpected element type in feature: names expecting type: float"),
        ('{"examples": [{"names": ["a", true]}]}', "Unexpected element type in feature: names expecting type: bytes"),
        ('{"examples": [{"names": [10, {"test": 10}]}]}', "names has element with unexpected JSON type: Object"),
        ('{"examples": [{"names": [[10], 20]}]}', "names has element with unexpected JSON type: Array"),
        ('{"examples": [{"names": [20, 18446744073709551603]}]}', "Only int64_t is supported"),
        ('{"examples": [{"names": {"b64": "a!"}}]}', "Unable to base64 decode"),
        ('{"examples": []}', "'examples' value is an empty array"),
        ('{"context": {}}', "When method is classify, key 'examples' is expected and was not found"),
    ],
)
def test_example_errors(body, message):
    with pytest.raises(InvalidArgument) as info:
        decode_examples(parse_document(body.encode()))
    assert message in info.value.message


def test_example_error_wording_in_full():
    with pytest.raises(InvalidArgument) as info:
        decode_examples({"examples": [{"names": [20, 18446744073709551603]}]})
    assert info.value.message == "Feature: names has uint64_t element. Only int64_t is supported."
    with pytest.raises(InvalidArgument) as info:
        decode_examples({"examples": 1})
    assert info.value.message == "JSON Value: {\n    \"examples\": 1\n} Expecting 'examples' value to be an list/array"


# ---------------------------------------------------------------------------
# classify / regress results and errors
# ---------------------------------------------------------------------------


def test_classification_result():
    results = [[("car", 0.2), ("bike", 0.7), ("bus", 0.1)], [("car", 0.7), ("bike", 0.1), ("bus", 0.2)]]
    body = encode_classify_response(results)
    assert tokens_of(body) == {
        "results": [
            [["car", "0.2"], ["bike", "0.7"], ["bus", "0.1"]],
            [["car", "0.7"], ["bike", "0.1"], ["bus", "0.2"]],
        ]
    }
    assert tokens_of(encode_classify_response([[("", 1 / 3)], []])) == {"results": [[["", "0.333333343"]], []]}


def test_regression_result():
    assert tokens_of(encode_regress_response([0.2, 0.9, 1.0])) == {"results": ["0.2", "0.9", "1.0"]}
    assert tokens_of(encode_regress_response([0.2, math.inf, 1.0, -math.inf, math.nan])) == {
        "results": ["0.2", "Infinity", "1.0", "-Infinity", "NaN"]
    }


def test_empty_results_are_errors():
    with pytest.raises(InvalidArgument, match="empty ClassificationResults"):
        encode_classify_response([])
    with pytest.raises(InvalidArgument, match="empty RegressionResults"):
        encode_regress_response([])


def test_error_body():
    assert json.loads(encode_error('Bad key: "key"')) == {"error": 'Bad key: "key"'}
    assert json.loads(encode_error("Bad key: 'key'")) == {"error": "Bad key: 'key'"}
    assert json.loads(encode_error("é\n\u0001")) == {"error": "é\n\u0001"}


def test_integers_beyond_int64_are_doubles_and_beyond_float32_infinity():
    """rapidjson holds them as doubles; integers beyond the largest double are parse errors (test_json_text)."""
    big = json.dumps({"inputs": [10**308, -(10**308)]}).encode()
    arrays, _ = decode_predict_inputs(parse_document(big), {"x": "DT_DOUBLE"})
    assert arrays["x"].tolist() == [1e308, -1e308]
    arrays, _ = decode_predict_inputs(parse_document(big), {"x": "DT_FLOAT"})
    assert arrays["x"].tolist() == [float("inf"), float("-inf")]
    _, examples = decode_examples(parse_document(json.dumps({"examples": [{"x": 10**308}]}).encode()))
    assert examples == [{"x": ("float", [1e308])}]
