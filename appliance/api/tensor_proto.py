"""TensorProto <-> numpy for TF Serving's gRPC API: a request's input tensors in, a response's outputs out.

    x = to_array(request.inputs["x"], "x")       # float32 (1, 64), from tensor_content or float_val
    response.outputs["y"].CopyFrom(from_array(y))  # float_val, dtype and tensor_shape, as TF Serving writes them
    from_array(y, tensor_content=True)             # raw bytes (TF Serving's --enable_serialization_as_tensor_content)

Reads what TensorFlow's ``Tensor::FromProto`` reads: ``tensor_content`` (the values' bytes as they lie in
memory; for strings, their varint lengths then their bytes) or the dtype's typed field, whose values fill
the whole shape. Values pass through numpy without a per-value Python loop wherever the wire form allows it.
Only TensorFlow's protos are used here, not its Python API.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
from numpy.typing import DTypeLike
from tensorflow.core.framework import types_pb2
from tensorflow.core.framework.tensor_pb2 import TensorProto

from ..errors import InvalidArgument
from ..serving.runtime.inputs import NUMPY_DTYPES, dtype_text, shape_text

__all__ = ["NUMPY_OF", "dtype_enum", "from_array", "to_array"]

DataType = types_pb2.DataType

# DataType enum value -> the numpy dtype of its tensors.
NUMPY_OF: dict[int, np.dtype] = {DataType.Value(name): np.dtype(numpy) for name, numpy in NUMPY_DTYPES.items()} | {
    types_pb2.DT_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    types_pb2.DT_STRING: np.dtype(object),
}
_ENUM_OF = {numpy: enum for enum, numpy in NUMPY_OF.items() if enum != types_pb2.DT_STRING}
_STRING_KINDS = frozenset("OSU")  # bytes or str in an object array, numpy's fixed-width bytes and str

# The typed field that holds each dtype's values.
_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
    types_pb2.DT_COMPLEX64: "scomplex_val",
    types_pb2.DT_COMPLEX128: "dcomplex_val",
}
# The numpy dtype each field's values come in: int_val's narrower integers and half_val's bit patterns are
# int32s on the wire (cut to the dtype's width, as C++'s static_cast does); a complex is two floats.
_FIELD_DTYPE: dict[str, np.dtype] = {
    "float_val": np.dtype(np.float32),
    "double_val": np.dtype(np.float64),
    "int_val": np.dtype(np.int32),
    "int64_val": np.dtype(np.int64),
    "uint32_val": np.dtype(np.uint32),
    "uint64_val": np.dtype(np.uint64),
    "bool_val": np.dtype(np.bool_),
    "half_val": np.dtype(np.int32),
    "scomplex_val": np.dtype(np.float32),
    "dcomplex_val": np.dtype(np.float64),
}
# Fields whose packed wire form is the values' own little-endian bytes (fixed32, fixed64, or a varint of 0 or 1):
# from_array writes them as one block of bytes instead of appending values one by one.
_BYTES_FIELDS = frozenset({"float_val", "double_val", "scomplex_val", "dcomplex_val", "bool_val"})
_FIELD_NUMBER = {field.name: field.number for field in TensorProto.DESCRIPTOR.fields}

# The largest tensor a short typed field may be asked to fill: a request of a few bytes must not take the memory.
_MAX_FILL_BYTES = 1 << 30


def dtype_enum(array_dtype: DTypeLike) -> int:
    """The DataType enum value of a numpy dtype: float32 -> DT_FLOAT; bytes, str and object -> DT_STRING."""
    dtype = np.dtype(array_dtype)
    if dtype.kind in _STRING_KINDS:
        return types_pb2.DT_STRING
    enum = _ENUM_OF.get(dtype if dtype.isnative else dtype.newbyteorder("="))
    if enum is None:
        raise InvalidArgument(f"Cannot write a tensor of numpy type {dtype} as a TensorProto")
    return enum


# ---------------------------------------------------------------------------
# Reading a request's tensor
# ---------------------------------------------------------------------------


def to_array(tensor: TensorProto, name: str = "") -> np.ndarray:
    """The tensor as a numpy array of its dtype and shape; InvalidArgument, naming input `name`, if it is not one.

    The array of a ``tensor_content`` is a view of the bytes read out of the message, and so is read-only.
    """
    enum = tensor.dtype
    numpy_dtype = NUMPY_OF.get(enum)
    if numpy_dtype is None:
        raise _parsing_error(name, f"has dtype {_enum_name(enum)}, which a request cannot send")
    shape = _shape(tensor, enum, name)
    count = math.prod(shape)
    content = tensor.tensor_content  # each read copies the bytes out of the message
    try:
        if content:
            return _from_content(content, enum, numpy_dtype, shape, count, name).reshape(shape)
        return _from_field(tensor, enum, numpy_dtype, shape, count, name)
    except ValueError as error:  # a shape numpy cannot hold: too many dimensions, or too many bytes
        raise _parsing_error(name, f"has shape {shape_text(shape)}, which numpy cannot hold ({error})") from None


def _shape(tensor: TensorProto, enum: int, name: str) -> tuple[int, ...]:
    shape_proto = tensor.tensor_shape
    if shape_proto.unknown_rank:
        raise _parsing_error(
            name, f"is {dtype_text(_enum_name(enum))} of unknown rank; a request's tensor needs its shape"
        )
    shape = tuple([dim.size for dim in shape_proto.dim])
    if any(size < 0 for size in shape):
        raise _parsing_error(name, f"is {_described(enum, shape)}; a request's tensor has no unknown (-1) sizes")
    return shape


def _from_content(
    content: bytes, enum: int, numpy_dtype: np.dtype, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    if enum == types_pb2.DT_STRING:
        return _strings_from_content(content, shape, count, name)
    if len(content) != count * numpy_dtype.itemsize:
        raise _parsing_error(
            name,
            f"is {_described(enum, shape)}: {count} values, {count * numpy_dtype.itemsize} bytes, "
            f"but its tensor_content has {len(content)} bytes",
        )
    if enum == types_pb2.DT_BOOL and content.translate(None, b"\x00\x01"):
        raise _parsing_error(name, f"is {_described(enum, shape)} but its tensor_content has bytes other than 0 and 1")
    return np.frombuffer(content, numpy_dtype)


def _strings_from_content(content: bytes, shape: tuple[int, ...], count: int, name: str) -> np.ndarray:
    """DecodeStringList: each string's length as a varint, then every string's bytes one after another."""
    lengths = []
    at = 0
    try:
        for _ in range(count):
            length, shift = 0, 0
            while True:
                byte = content[at]
                at += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            lengths.append(length)
    except IndexError:
        lengths = []
    if len(lengths) != count or sum(lengths) != len(content) - at:
        raise _parsing_error(
            name, f"is {_described(types_pb2.DT_STRING, shape)} but its tensor_content does not hold {count} strings"
        )
    strings = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        strings[i] = content[at : at + length]
        at += length
    return strings


def _from_field(
    tensor: TensorProto, enum: int, numpy_dtype: np.dtype, shape: tuple[int, ...], count: int, name: str
) -> np.ndarray:
    field = _FIELD[enum]
    values = _field_values(getattr(tensor, field), field, numpy_dtype)
    if values is None:
        raise _parsing_error(name, f"is {_described(enum, shape)} but its {field} has an odd number of floats")
    if len(values) >= count:  # more values than the shape holds: the first ones, as TensorFlow's FromProto reads
        return values[:count].reshape(shape)
    # Fewer: TensorFlow's FromProto fills the rest with the last value (zeros when there is none).
    if count * numpy_dtype.itemsize > _MAX_FILL_BYTES:
        raise _parsing_error(
            name,
            f"is {_described(enum, shape)}, {count * numpy_dtype.itemsize >> 20} MiB to fill from its {len(values)} "
            f"values: more than the {_MAX_FILL_BYTES >> 20} MiB a short {field} may fill",
        )
    filled = np.full(count, b"" if numpy_dtype.kind == "O" else 0, dtype=numpy_dtype)
    if len(values):
        filled[: len(values)] = values
        filled[len(values) :] = values[-1]
    return filled.reshape(shape)


def _field_values(values, field: str, numpy_dtype: np.dtype) -> np.ndarray | None:
    """A typed field's values as a flat array of the tensor's dtype; None for complex numbers not in pairs."""
    if field == "string_val":
        strings = np.empty(len(values), dtype=object)
        strings[:] = list(values)
        return strings
    array = np.asarray(values, _FIELD_DTYPE[field])  # one copy of the field's memory (upb's __array__)
    if field == "half_val":
        return array.astype(np.uint16).view(numpy_dtype)
    if numpy_dtype.kind == "c":
        return array.view(numpy_dtype) if len(array) % 2 == 0 else None
    return array.astype(numpy_dtype, copy=False)


def _described(enum: int, shape: tuple[int, ...]) -> str:
    return f"{dtype_text(_enum_name(enum))} {shape_text(shape)}"


def _enum_name(enum: int) -> str:
    try:
        return DataType.Name(enum)
    except ValueError:
        return f"DataType {enum}"


def _parsing_error(name: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f'tensor parsing error: input "{name}" {problem}')


# ---------------------------------------------------------------------------
# Writing a response's tensor
# ---------------------------------------------------------------------------


def from_array(array: np.ndarray, tensor_content: bool = False) -> TensorProto:
    """The array as TF Serving writes an output: its dtype's typed field, or with `tensor_content` its raw bytes.

    Strings always go in string_val (str encoded UTF-8), which every client reads.
    """
    array = np.asarray(array)
    enum = dtype_enum(array.dtype)
    tensor = TensorProto(dtype=enum)
    dims = tensor.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    if enum == types_pb2.DT_STRING:
        tensor.string_val.extend(_utf8(array))
        return tensor
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if tensor_content:
        tensor.tensor_content = array.tobytes()
        return tensor
    field = _FIELD[enum]
    if field in _BYTES_FIELDS:
        tensor.MergeFromString(_packed(_FIELD_NUMBER[field], array))
    elif field == "half_val":
        tensor.half_val.extend(array.view(np.uint16).ravel().tolist())
    else:
        getattr(tensor, field).extend(array.ravel().tolist())
    return tensor


def _utf8(array: np.ndarray) -> list[bytes]:
    strings = array.ravel().tolist()
    if array.dtype.kind == "S":
        return strings
    encoded = [value.encode("utf-8") if isinstance(value, str) else value for value in strings]
    others = sorted({type(value).__name__ for value in encoded if not isinstance(value, bytes)})
    if others:
        raise InvalidArgument(f"Cannot write a string tensor holding {', '.join(others)} as a TensorProto")
    return encoded


def _packed(field_number: int, array: np.ndarray) -> bytes:
    """The array as a packed repeated field in protobuf's wire format: tag (wire type 2), length, the values' bytes.

    The join copies the values once (array.tobytes() and a concatenation would copy them twice).
    """
    values = array.ravel().view(np.uint8).data  # C order; a view of a contiguous array, else a copy
    return b"".join((_varint(field_number << 3 | 2), _varint(array.nbytes), values))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
