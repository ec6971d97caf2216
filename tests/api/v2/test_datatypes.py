"""The v2 datatypes: their numpy and TensorFlow dtypes (checked against TensorFlow's own mapping), raw data
checked against tritonclient's encoders, and JSON data read strictly."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, np_to_triton_dtype, serialize_byte_tensor

from appliance.api.v2.datatypes import (
    NUMPY_DTYPES,
    TF_DATATYPES,
    array_datatype,
    datatype_of,
    from_json,
    from_raw,
    json_data,
    numpy_dtype,
    to_raw,
)
from appliance.errors import InvalidArgument

NUMBERS = [name for name in NUMPY_DTYPES if name not in ("BYTES", "BF16")]


def test_each_tensorflow_dtype_maps_to_the_numpy_dtype_tensorflow_gives_it():
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    for enum_name, datatype in TF_DATATYPES.items():
        tf_dtype = tf.dtypes.as_dtype(types_pb2.DataType.Value(enum_name))
        expected = np.dtype(object) if tf_dtype == tf.string else np.dtype(tf_dtype.as_numpy_dtype)
        assert numpy_dtype(datatype) == expected, enum_name
        assert datatype_of(enum_name) == datatype
    assert datatype_of("DT_COMPLEX64") is None and datatype_of("DT_RESOURCE") is None


def test_names_match_tritonclient_s():
    for datatype in NUMBERS:
        assert np_to_triton_dtype(numpy_dtype(datatype)) == datatype
        assert array_datatype(np.zeros(2, numpy_dtype(datatype))) == datatype
    assert array_datatype(np.array([b"a"], dtype=object)) == "BYTES" and array_datatype(np.array(["a"])) == "BYTES"
    assert array_datatype(np.zeros(2, np.complex64)) is None
    with pytest.raises(InvalidArgument, match="'FP8' is not one of the protocol's: BOOL, UINT8"):
        numpy_dtype("FP8")


@pytest.mark.parametrize("datatype", NUMBERS)
def test_raw_numbers_are_little_endian_row_major(datatype):
    array = (np.arange(12) % 3).astype(numpy_dtype(datatype)).reshape(3, 4)
    raw = array.astype(array.dtype.newbyteorder("<")).tobytes(order="C")
    assert to_raw(array) == raw
    assert to_raw(np.asfortranarray(array)) == raw, "a column-major array is written row-major"
    np.testing.assert_array_equal(from_raw(raw, datatype, [3, 4], "x"), array)


def test_raw_bytes_are_length_prefixed_as_tritonclient_writes_them():
    array = np.array([[b"", b"\xff\x00raw"], ["h\u00e9llo".encode(), b"x" * 300]], dtype=object)
    raw = serialize_byte_tensor(array).item()
    assert to_raw(array) == raw
    assert to_raw(np.array([["", "\xffraw"], ["h\u00e9llo", "x" * 300]], dtype=object)) == to_raw(
        np.array([[b"", "\xffraw".encode()], ["h\u00e9llo".encode(), b"x" * 300]], dtype=object)
    ), "str elements are written as UTF-8"
    got = from_raw(raw, "BYTES", [2, 2], "x")
    np.testing.assert_array_equal(got, deserialize_bytes_tensor(raw).reshape(2, 2))
    assert got.dtype == object and got[0, 1] == b"\xff\x00raw"


def test_raw_data_that_does_not_fit_is_refused():
    with pytest.raises(InvalidArgument, match=r"'x' has 15 bytes of data, but 4 FP32 elements .* take 16"):
        from_raw(b"\0" * 15, "FP32", [2, 2], "x")
    raw = serialize_byte_tensor(np.array([b"ab", b"cd"], dtype=object)).item()
    with pytest.raises(InvalidArgument, match="ends after 2 of 3"):
        from_raw(raw, "BYTES", [3], "x")
    with pytest.raises(InvalidArgument, match="element 1 runs past the end"):
        from_raw(raw[:-1], "BYTES", [2], "x")
    with pytest.raises(InvalidArgument, match="6 bytes of data left"):
        from_raw(raw, "BYTES", [1], "x")
    with pytest.raises(InvalidArgument, match="cannot be negative"):
        from_raw(b"", "FP32", [-1, 4], "x")


def test_json_data_flat_or_nested_in_the_datatype_s_dtype():
    nested = from_json([[1, 2.5], [3, 4]], "FP32", [2, 2], "x")
    assert nested.dtype == np.float32 and nested.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    np.testing.assert_array_equal(from_json([1, 2.5, 3, 4], "FP32", [2, 2], "x"), nested)
    assert from_json([[True], [False]], "BOOL", [1, 2], "x").tolist() == [[True, False]]
    assert from_json([2**64 - 1, 0], "UINT64", [2], "x").tolist() == [2**64 - 1, 0], "exact beyond float64"
    assert from_json([-(2**63), 2**63 - 1], "INT64", [2], "x").tolist() == [-(2**63), 2**63 - 1]
    assert from_json(7, "INT8", [], "x").tolist() == 7
    assert from_json([], "BOOL", [0, 3], "x").shape == (0, 3)
    assert from_json([1.5], "BF16", [1], "x").dtype == ml_dtypes.bfloat16
    strings = from_json([["h\u00e9", "b"], ["c", ""]], "BYTES", [4], "x")
    assert strings.dtype == object and strings.tolist() == ["h\u00e9".encode(), b"b", b"c", b""]


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "message"),
    [
        ([1, 2, 3], "FP32", [2, 2], "has 3 elements of data, but its shape \\[2, 2\\] holds 4"),
        ([[1, 2], [3]], "FP32", [3], "ragged"),
        (["1", "2"], "FP32", [2], "must be numbers"),
        ([True, False], "FP32", [2], "must be numbers"),
        ([None], "FP32", [1], "must be numbers"),
        ({"a": 1}, "FP32", [1], "must be numbers"),
        ([1.5], "INT32", [1], "must be integers"),
        ([1, 0], "BOOL", [2], "must be true or false"),
        ([256], "UINT8", [1], "out of range for UINT8"),
        ([-1], "UINT32", [1], "out of range for UINT32"),
        ([2**64], "UINT64", [1], "must be integers"),
        ([2**63], "INT64", [1], "out of range for INT64"),
        ([1, 2], "BYTES", [2], "must be strings"),
        (["a"], "STRING", [1], "not one of the protocol's"),
    ],
)
def test_json_data_of_the_wrong_kind_is_refused(data, datatype, shape, message):
    with pytest.raises(InvalidArgument, match=message):
        from_json(data, datatype, shape, "x")


def test_json_output_data():
    assert json_data(np.array([[b"a", "b\u00e9".encode()]], dtype=object)) == ["a", "b\u00e9"]
    assert json_data(np.array([b"\xff"], dtype=object)) is None, "not UTF-8: to be sent as binary data"
    bf16 = json_data(np.array([[1.5, -2.0]], dtype=ml_dtypes.bfloat16))
    assert isinstance(bf16, np.ndarray) and bf16.dtype == np.float32 and bf16.tolist() == [1.5, -2.0]
    column_major = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    flat = json_data(column_major)
    assert isinstance(flat, np.ndarray) and flat.flags.c_contiguous and flat.tolist() == list(range(6))
