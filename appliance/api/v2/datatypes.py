"""The Open Inference Protocol's tensor datatypes, and how they map to numpy and to TensorFlow's dtypes.

    numpy_dtype("FP32")            # -> dtype('float32')
    datatype_of("DT_FLOAT")        # -> "FP32" (a signature's dtype, as the metadata and responses name it)
    array_datatype(np.zeros(2))    # -> "FP64" (what an array is, as a request's input is checked)
    from_raw(data, "FP32", [1, 64])   # Triton's binary data / gRPC raw contents -> an array (no copy)
    to_raw(array)                     # an array -> those bytes

BYTES tensors are numpy object arrays of ``bytes`` (as the TF runtime takes DT_STRING); BF16 is ml_dtypes'
bfloat16. TensorFlow dtypes with no v2 datatype (complex numbers, resources, variants) map to None.
"""

from __future__ import annotations

import math
import struct

import ml_dtypes
import numpy as np

from ...errors import InvalidArgument

# The v2 datatype of each numpy dtype the appliance sends or takes ("BYTES": an object array of bytes).
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "BYTES": np.dtype(object),
}
# A TensorFlow DataType enum name -> its v2 datatype.
TF_DATATYPES = {
    "DT_BOOL": "BOOL",
    "DT_UINT8": "UINT8",
    "DT_UINT16": "UINT16",
    "DT_UINT32": "UINT32",
    "DT_UINT64": "UINT64",
    "DT_INT8": "INT8",
    "DT_INT16": "INT16",
    "DT_INT32": "INT32",
    "DT_INT64": "INT64",
    "DT_HALF": "FP16",
    "DT_FLOAT": "FP32",
    "DT_DOUBLE": "FP64",
    "DT_BFLOAT16": "BF16",
    "DT_STRING": "BYTES",
}
_BY_NUMPY = {dtype: name for name, dtype in NUMPY_DTYPES.items()}
_STRING_KINDS = frozenset("OSU")
_LENGTH = struct.Struct("<I")  # a BYTES element's length before its bytes, in raw data


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype a v2 datatype's data is read into; InvalidArgument naming the valid ones otherwise."""
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise InvalidArgument(f"datatype {datatype!r} is not one of the protocol's: {', '.join(NUMPY_DTYPES)}")
    return dtype


def datatype_of(tf_dtype: str) -> str | None:
    """The v2 datatype of a TensorFlow dtype ("DT_FLOAT" -> "FP32"); None when the protocol has none."""
    return TF_DATATYPES.get(tf_dtype)


def array_datatype(array: np.ndarray) -> str | None:
    """The v2 datatype of an array (bytes, str and object arrays are BYTES); None when the protocol has none."""
    if array.dtype.kind in _STRING_KINDS:
        return "BYTES"
    return _BY_NUMPY.get(array.dtype)


def from_raw(data: bytes | memoryview, datatype: str, shape: list[int] | tuple[int, ...], name: str) -> np.ndarray:
    """Input ``name``'s raw data (Triton's binary tensor data, gRPC's ``raw_input_contents``) as an array.

    Numbers are little-endian, row-major, read without a copy (the array is read-only); BYTES elements are
    each a 4-byte little-endian length and that many bytes. InvalidArgument when the size does not fit.
    """
    dtype = numpy_dtype(datatype)
    count = element_count(shape, name)
    if datatype == "BYTES":
        return _bytes_from_raw(data, count, shape, name)
    if len(data) != count * dtype.itemsize:
        raise InvalidArgument(
            f"input {name!r} has {len(data)} bytes of data, but {count} {datatype} elements (shape "
            f"{list(shape)}) take {count * dtype.itemsize}"
        )
    return np.frombuffer(data, dtype.newbyteorder("<")).reshape(shape)


def _bytes_from_raw(data, count: int, shape, name: str) -> np.ndarray:
    values = np.empty(count, dtype=object)
    view = memoryview(data)
    offset = 0
    for index in range(count):
        if offset + 4 > len(view):
            raise InvalidArgument(f"input {name!r}: its BYTES data ends after {index} of {count} elements")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidArgument(f"input {name!r}: its BYTES element {index} runs past the end of its data")
        values[index] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidArgument(f"input {name!r}: {len(view) - offset} bytes of data left after its {count} elements")
    return values.reshape(shape)


def to_raw(array: np.ndarray) -> bytes:
    """An array as raw data: little-endian numbers, row-major; BYTES elements length-prefixed (str as UTF-8)."""
    if array.dtype.kind in _STRING_KINDS:
        parts = []
        for value in array.reshape(-1):
            value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            parts.append(_LENGTH.pack(len(value)))
            parts.append(value)
        return b"".join(parts)
    return np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()


def element_count(shape, name: str) -> int:
    """The elements a shape holds; InvalidArgument for a negative dimension."""
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name!r} has shape {list(shape)}: a request's dimensions cannot be negative")
    return math.prod(shape)


# The kinds of array numpy reads a JSON ``data`` list of each family of datatypes into ("u": past int64).
_JSON_KINDS = {"BOOL": "b", "FP": "iuf", "INT": "iu"}


def _family(datatype: str) -> str:
    return "BOOL" if datatype == "BOOL" else "FP" if datatype in ("FP16", "FP32", "FP64", "BF16") else "INT"


def from_json(data, datatype: str, shape: list[int] | tuple[int, ...], name: str) -> np.ndarray:
    """Input ``name``'s JSON ``data`` (flat or nested lists, row-major) as an array of ``datatype``'s dtype.

    Numbers must be numbers (integers for the integer datatypes, within their range), BOOL data true and
    false, BYTES data strings (taken as UTF-8); the elements must be as many as ``shape`` holds.
    """
    dtype = numpy_dtype(datatype)
    count = element_count(shape, name)
    array = _strings_array(data, name) if datatype == "BYTES" else _numbers_array(data, datatype, dtype, name)
    if array.size != count:
        raise InvalidArgument(
            f"input {name!r} has {array.size} elements of data, but its shape {list(shape)} holds {count}"
        )
    return array.reshape(shape)


def _numbers_array(data, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    try:
        array = np.array(data)
    except ValueError:
        raise InvalidArgument(
            f"input {name!r}: its data is a ragged list; send a regular array or a flat list"
        ) from None
    family = _family(datatype)
    if array.size and array.dtype.kind not in _JSON_KINDS[family]:  # [] reads as float64
        if not (family == "INT" and array.dtype.kind == "f" and np.array_equal(array, np.trunc(array))):
            expected = {"BOOL": "true or false", "FP": "numbers", "INT": "integers"}[family]
            raise InvalidArgument(f"input {name!r} has datatype {datatype}: its data must be {expected}")
        array = _exact_integers(data, dtype, datatype, name)  # beyond int64: numpy read them as floats
    if family == "INT" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidArgument(f"input {name!r}: its data has values out of range for {datatype}")
    return array.astype(dtype, copy=False)


def _exact_integers(data, dtype: np.dtype, datatype: str, name: str) -> np.ndarray:
    try:
        return np.array(data, dtype=dtype)
    except (OverflowError, ValueError):
        raise InvalidArgument(f"input {name!r}: its data has values out of range for {datatype}") from None


def _strings_array(data, name: str) -> np.ndarray:
    values: list[bytes] = []
    stack = [data]
    while stack:  # depth first, last item first: row-major order, reversed at the end
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            values.append(item.encode("utf-8"))
        else:
            raise InvalidArgument(f"input {name!r} has datatype BYTES: its data must be strings")
    values.reverse()
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def json_data(array: np.ndarray) -> np.ndarray | list[str] | None:
    """An output's data for a JSON response, flat: numbers as an array orjson writes (BF16 as FP32), BYTES
    as strings; None when some BYTES element is not UTF-8 (that output must go as binary data)."""
    flat = array.reshape(-1)
    if array.dtype.kind in _STRING_KINDS:
        try:
            return [v if isinstance(v, str) else bytes(v).decode("utf-8") for v in flat]
        except UnicodeDecodeError:
            return None
    if array.dtype == NUMPY_DTYPES["BF16"]:
        return flat.astype(np.float32)
    return np.ascontiguousarray(flat)
