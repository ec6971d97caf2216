"""The JSON <-> numpy codec of TF Serving's REST API (its ``util/json_tensor.cc``): bodies in, tensors out, and back.

    doc = parse_document(b'{"instances": [[1.0, 2.0], [3.0, 4.0]]}')
    arrays, fmt = decode_predict_inputs(doc, {"x": "DT_FLOAT"})   # {"x": float32 (2, 2)}, ROW
    encode_predict_response({"y": np.array([0.5, 3.0], np.float32)}, fmt)   # -> b'{"predictions": [0.5, 3.0]}'

Predict bodies (row or columnar), classify and regress examples, predictions and results; errors keep TF
Serving's wording. Each tensor is decoded by a numpy fast path; anything unusual falls back to a precise walk
that mirrors the C++ and raises its exact error. The JSON text itself follows ``json_text``; no TensorFlow here.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, cast

import numpy as np

from ..errors import InvalidArgument, ServingError, Unimplemented
from .dense_json import MIN_BODY, DenseNumbers, dense_document
from .json_text import (
    INT64_MIN,
    LATE,
    UINT64_MAX,
    debug_string,
    decimal_tokens,
    format_error,
    json_type_name,
    parse_document,  # re-exported: part of this module's API
    quote,
    string_token,
    token_matrix,
)

__all__ = [
    "COLUMNAR",
    "ROW",
    "decode_examples",
    "decode_input_value",
    "decode_predict_inputs",
    "encode_classify_response",
    "encode_error",
    "encode_outputs_value",
    "encode_predict_response",
    "encode_regress_response",
    "parse_document",
    "parse_predict_document",
    "signature_name",
]

ROW = "row"
COLUMNAR = "columnar"


def parse_predict_document(body: bytes) -> dict:
    """parse_document for a predict request; a large array of floats in it comes as DenseNumbers (dense_json)."""
    if len(body) >= MIN_BODY:
        doc = dense_document(body)
        if doc is not None:
            return doc
    return parse_document(body)


def version_number(value: object) -> int:
    """A version sent as a JSON number (2) or as status and metadata show it, a string of ASCII digits ("2")."""
    number = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value  # not "²"
    if type(number) is int and number > 0:  # not true, which is an int to Python, nor 2.0, nor "0"
        return number
    raise InvalidArgument(f"'version' must be a positive integer (2 or \"2\"), not {json.dumps(value)}")


# ---------------------------------------------------------------------------
# The request's signature (FillSignature)
# ---------------------------------------------------------------------------


def signature_name(doc: dict) -> str:
    """The optional "signature_name" of a request ("" when absent)."""
    name = doc.get("signature_name", "")
    if type(name) is not str:
        raise format_error(doc, "not formatted correctly. 'signature_name' key must be a string value.")
    return name


# ---------------------------------------------------------------------------
# Signature dtypes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _DType:
    """A TF DataType the codec converts JSON values to."""

    name: str  # DataTypeString(): "float", "int32", ...
    numpy: np.dtype
    kind: str  # "float" | "int" | "bool" | "string"
    low: int = 0
    high: int = 0


# The most dimensions a numpy array can have (TensorFlow allows 254; the tensors are numpy arrays first).
_MAX_RANK = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32

_DTYPES = {
    "DT_FLOAT": _DType("float", np.dtype(np.float32), "float"),
    "DT_DOUBLE": _DType("double", np.dtype(np.float64), "float"),
    "DT_INT32": _DType("int32", np.dtype(np.int32), "int", -(2**31), 2**31 - 1),
    "DT_INT16": _DType("int16", np.dtype(np.int16), "int", -(2**15), 2**15 - 1),
    "DT_INT8": _DType("int8", np.dtype(np.int8), "int", -(2**7), 2**7 - 1),
    "DT_UINT8": _DType("uint8", np.dtype(np.uint8), "int", 0, 2**8 - 1),
    "DT_INT64": _DType("int64", np.dtype(np.int64), "int", -(2**63), 2**63 - 1),
    "DT_UINT32": _DType("uint32", np.dtype(np.uint32), "int", 0, 2**32 - 1),
    "DT_UINT64": _DType("uint64", np.dtype(np.uint64), "int", 0, 2**64 - 1),
    "DT_BOOL": _DType("bool", np.dtype(np.bool_), "bool"),
    "DT_STRING": _DType("string", np.dtype(object), "string"),
}


def _type_name(dtype_enum: str) -> str:
    """DataTypeString() of a DataType enum name: "DT_HALF" -> "half", "DT_FLOAT_REF" -> "float_ref"."""
    known = _DTYPES.get(dtype_enum)
    if known is not None:
        return known.name
    return (dtype_enum[3:] if dtype_enum.startswith("DT_") else dtype_enum).lower()


# ---------------------------------------------------------------------------
# One JSON value -> one tensor, the precise way (FillTensorProto)
# ---------------------------------------------------------------------------


def _type_error(value, dtype_enum: str, detail: str = "") -> InvalidArgument:
    return format_error(
        value, f"Type: {json_type_name(value)} is not of expected type: {_type_name(dtype_enum)}{detail}"
    )


def _is_b64(value) -> bool:
    """IsValBase64Object: an object whose only key is "b64", holding a string."""
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


_BASE64_DATA = re.compile(r"[A-Za-z0-9+/]*")
_ASCII_SPACE = str.maketrans("", "", " \t\n\v\f\r")


def _b64decode(text: str) -> bytes | None:
    """absl::Base64Unescape: standard alphabet, whitespace ignored, padding ('=' or '.') optional."""
    if not text.isascii():
        return None
    text = text.translate(_ASCII_SPACE)
    data = text.rstrip("=.")
    padding = len(text) - len(data)
    if not _BASE64_DATA.fullmatch(data):
        return None
    remainder = len(data) % 4
    if remainder == 1 or padding not in (0, (4 - remainder) % 4):
        return None
    return binascii.a2b_base64(data + "=" * ((4 - remainder) % 4))


def _decode_b64_object(value) -> bytes:
    """JsonDecodeBase64Object."""
    if not _is_b64(value):
        raise format_error(value, "not formatted correctly for base64 data")
    decoded = _b64decode(value["b64"])
    if decoded is None:
        raise InvalidArgument("Unable to base64 decode")
    return decoded


def _convert_leaf(value, dtype_enum: str):
    """AddValueToTensor (and FillTensorProto's object case): one JSON scalar as a Python value."""
    dtype = _DTYPES.get(dtype_enum)
    if type(value) is dict:
        if dtype_enum == "DT_STRING":
            return _decode_b64_object(value)
        raise _type_error(value, dtype_enum)
    if dtype is None:
        raise Unimplemented(f"Conversion of JSON Value: {debug_string(value)} to type: {_type_name(dtype_enum)}")
    return _LEAF_CONVERSIONS[dtype.kind](value, dtype, dtype_enum)


def _float_leaf(value, dtype: _DType, dtype_enum: str):
    if type(value) is float:
        return value
    if type(value) is int:  # parse_document refuses integers beyond the largest double
        return float(value)
    raise _type_error(value, dtype_enum)


def _int_leaf(value, dtype: _DType, dtype_enum: str):
    if type(value) is not int:
        raise _type_error(value, dtype_enum)
    if dtype.low <= value <= dtype.high:
        return value
    raise _type_error(value, dtype_enum, f" (out of range [{dtype.low}, {dtype.high}])")


def _bool_leaf(value, dtype: _DType, dtype_enum: str):
    if type(value) is bool:
        return value
    raise _type_error(value, dtype_enum)


def _string_leaf(value, dtype: _DType, dtype_enum: str):
    if type(value) is not str:
        raise _type_error(value, dtype_enum)
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise format_error(value, "is not valid UTF-8 text") from None


_LEAF_CONVERSIONS = {"float": _float_leaf, "int": _int_leaf, "bool": _bool_leaf, "string": _string_leaf}


def _dense_shape(value) -> tuple[int, ...]:
    """GetDenseTensorShape: the shape implied by following the first element of each list."""
    shape = []
    while type(value) is list:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _fill(value, dtype_enum: str) -> tuple[tuple[int, ...], list]:
    """FillTensorProto: (shape, flat converted values) of one JSON value, or the C++'s error."""
    shape = _dense_shape(value)
    rank = len(shape)
    values = []
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if type(item) is not list:
            if level != rank:
                raise format_error(
                    item, f"found at incorrect level: {level + 1} in the JSON DOM. Expected at level: {rank}"
                )
            values.append(_convert_leaf(item, dtype_enum))
            continue
        if level >= rank:
            raise InvalidArgument(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(item) != shape[level]:
            raise InvalidArgument(
                f"Encountered list at unexpected size: {len(item)} at level: {level} expected size: {shape[level]}"
            )
        stack.extend((child, level + 1) for child in reversed(item))
    return shape, values


def _assemble(shape: tuple[int, ...], values: list, dtype_enum: str, source) -> np.ndarray:
    """A numpy array of the signature's dtype from the values _convert_leaf accepted out of `source`."""
    dtype = _DTYPES.get(dtype_enum)
    if dtype is None:  # only reachable when `source` holds no values at all
        raise Unimplemented(f"Conversion of JSON Value: {debug_string(source)} to type: {_type_name(dtype_enum)}")
    if len(shape) > _MAX_RANK:
        raise format_error(source, f"has {len(shape)} dimensions; at most {_MAX_RANK} are supported")
    if dtype.kind == "string":
        return _object_array(values, shape)
    if dtype.kind == "float":
        with np.errstate(over="ignore"):
            return np.array(values, dtype=np.float64).astype(dtype.numpy).reshape(shape)
    return np.array(values, dtype=dtype.numpy).reshape(shape)  # ints already range-checked


def _object_array(items: list, shape: tuple[int, ...]) -> np.ndarray:
    """A DT_STRING tensor: the bytes values in an object array (np.array would make a fixed-width "S" array)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


# ---------------------------------------------------------------------------
# One JSON value -> one tensor, the fast way
# ---------------------------------------------------------------------------

_NUMBER_TYPES = frozenset((int, float))
_STRING_TYPES = frozenset((str, dict))


def _flatten(value) -> tuple[tuple[int, ...], list, set] | None:
    """(shape, leaves, leaf types) of a rectangular nest of lists; None when it is ragged or mixed."""
    if type(value) is not list:
        return (), [value], {type(value)}
    shape = [len(value)]
    items = value
    while True:
        types = set(map(type, items))
        if list not in types:
            return tuple(shape), items, types
        if len(types) > 1:
            return None
        lengths = set(map(len, items))
        if len(lengths) > 1:
            return None
        shape.append(lengths.pop())
        items = items[0] if len(items) == 1 else list(chain.from_iterable(items))


def _fast_tensor(value, dtype_enum: str) -> np.ndarray | None:
    """The tensor for a well-formed value, or None to let the precise walk decide (and explain)."""
    dtype = _DTYPES.get(dtype_enum)
    if dtype is None:
        return None
    flat = _flatten(value)
    if flat is None or len(flat[0]) > _MAX_RANK:
        return None
    shape, leaves, types = flat
    if not leaves:
        return np.empty(shape, dtype=dtype.numpy)
    try:
        return _FAST_TENSORS[dtype.kind](dtype, leaves, types, shape)
    except (OverflowError, UnicodeEncodeError):  # negative integers beyond int64 for uint64; lone surrogates
        return None


def _fast_floats(dtype: _DType, leaves: list, types: set, shape: tuple[int, ...]) -> np.ndarray | None:
    if not types <= _NUMBER_TYPES:
        return None
    # array() turns each value into a C double and, for typecode "f", casts that to float: the
    # rounding of numpy's float64 -> float32 cast (overflow gives inf), without np.errstate's cost.
    # numpy's dtype chars ("f", "d") are the array module's typecodes.
    values = array(dtype.numpy.char, leaves)
    return np.frombuffer(values, dtype=dtype.numpy).reshape(shape)


def _fast_ints(dtype: _DType, leaves: list, types: set, shape: tuple[int, ...]) -> np.ndarray | None:
    if types != {int}:
        return None
    try:
        ints = np.fromiter(leaves, dtype=np.int64, count=len(leaves))
    except OverflowError:  # beyond int64: only uint64 can hold it (negatives overflow again)
        if dtype.numpy != np.uint64:
            return None
        ints = np.fromiter(leaves, dtype=np.uint64, count=len(leaves))
    if ints.dtype != dtype.numpy and (ints.min() < dtype.low or ints.max() > dtype.high):
        return None
    return ints.astype(dtype.numpy, copy=False).reshape(shape)


def _fast_bools(dtype: _DType, leaves: list, types: set, shape: tuple[int, ...]) -> np.ndarray | None:
    if types != {bool}:
        return None
    return np.fromiter(leaves, dtype=np.bool_, count=len(leaves)).reshape(shape)


def _fast_strings(dtype: _DType, leaves: list, types: set, shape: tuple[int, ...]) -> np.ndarray | None:
    if not types <= _STRING_TYPES:
        return None
    if types == {str}:
        return _object_array(list(map(str.encode, leaves)), shape)
    strings = [leaf.encode() if type(leaf) is str else _fast_b64(leaf) for leaf in leaves]
    if None in strings:
        return None
    return _object_array(strings, shape)


_FAST_TENSORS = {"float": _fast_floats, "int": _fast_ints, "bool": _fast_bools, "string": _fast_strings}


def _fast_b64(value) -> bytes | None:
    return _b64decode(value["b64"]) if _is_b64(value) else None


def _dense_tensor(value: DenseNumbers, dtype_enum: str) -> np.ndarray | None:
    """The number tensor of a dense array, or None to take its nested lists the usual way (and explain)."""
    dtype = _DTYPES.get(dtype_enum)
    if dtype is None:
        return None
    values = value.values
    if dtype.kind == "int":
        if values.dtype != np.int64:  # a float literal: the precise walk's error
            return None
        if dtype.numpy != np.int64 and (values.min() < dtype.low or values.max() > dtype.high):
            return None
        return values.astype(dtype.numpy, copy=False).reshape(value.shape)
    if dtype.kind != "float":
        return None
    if values.dtype != np.float64:  # integers: to double first, as _fast_floats' array() does
        values = values.astype(np.float64)
    if dtype.numpy == np.float64:
        return values.reshape(value.shape)
    with np.errstate(over="ignore"):  # as _fast_floats' C cast: beyond float32's range is inf
        return values.astype(dtype.numpy).reshape(value.shape)


def _tensor(value, dtype_enum: str) -> np.ndarray:
    """One JSON value as a whole tensor (the columnar format), or the C++'s error."""
    if type(value) is DenseNumbers:
        dense = _dense_tensor(value, dtype_enum)
        if dense is not None:
            return dense
        value = value.nested()
    tensor = _fast_tensor(value, dtype_enum)
    if tensor is None:
        tensor = _assemble(*_fill(value, dtype_enum), dtype_enum, value)
    return tensor


# ---------------------------------------------------------------------------
# Predict requests (FillPredictRequestFromJson)
# ---------------------------------------------------------------------------


def decode_predict_inputs(doc: dict, input_dtypes: Mapping[str, str]) -> tuple[dict[str, np.ndarray], str]:
    """The input tensors of a predict request, and its format (ROW or COLUMNAR).

    `input_dtypes` maps each input alias of the signature to its DataType enum
    name ("DT_FLOAT", ...). Row format ("instances") stacks the instances along a
    new first axis; columnar format ("inputs") takes each value as the whole tensor.
    """
    if not input_dtypes:
        raise InvalidArgument(f"Failed to get input map for signature: {doc.get('signature_name') or 'DEFAULT'}")
    if "instances" in doc:
        if "inputs" in doc:
            raise format_error(
                doc, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
            )
        instances = doc["instances"]
        if type(instances) is DenseNumbers:
            if len(input_dtypes) == 1:
                ((name, dtype_enum),) = input_dtypes.items()
                dense = _dense_tensor(instances, dtype_enum)
                if dense is not None:
                    return {name: dense}, ROW
            instances = instances.nested()
        if type(instances) is not list:
            raise format_error(doc, "Expecting 'instances' to be an list/array")
        if not instances:
            raise format_error(doc, "No values in 'instances' array")
        return _decode_instances(instances, input_dtypes), ROW
    if "inputs" in doc:
        return _decode_columnar(doc["inputs"], input_dtypes, "inputs"), COLUMNAR
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


def decode_input_value(value, input_dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The columnar rules applied to a bare value ({"input": <value>} of the simple /predict endpoint).

    A single input takes the value as its tensor; several inputs need an object naming each.
    """
    if not input_dtypes:
        raise InvalidArgument("The signature has no inputs")
    return _decode_columnar(value, input_dtypes, "input")


def _is_named_object(value) -> bool:
    return type(value) is dict and not _is_b64(value)


def _decode_columnar(value, input_dtypes: Mapping[str, str], key: str) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap."""
    if not _is_named_object(value):
        if len(input_dtypes) > 1:
            raise InvalidArgument(
                f"{key} is a plain value/list, but expecting an object as multiple input tensors "
                "required as per tensorinfo_map"
            )
        ((name, dtype_enum),) = input_dtypes.items()
        return {name: _tensor(value, dtype_enum)}
    tensors = {}
    for name, dtype_enum in input_dtypes.items():
        if name not in value:
            raise InvalidArgument(f"Missing named input: {name} in '{key}' object.")
        tensors[name] = _tensor(value[name], dtype_enum)
    return tensors


def _decode_instances(instances: list, input_dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList: each instance adds one row to every input."""
    named = _is_named_object(instances[0])
    if not named and len(input_dtypes) > 1:
        raise InvalidArgument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    if named:
        names = input_dtypes.keys()
        if all(type(item) is dict and item.keys() == names for item in instances) and not any(map(_is_b64, instances)):
            tensors = {name: _fast_tensor([item[name] for item in instances], d) for name, d in input_dtypes.items()}
            if all(tensor is not None for tensor in tensors.values()):
                return cast("dict[str, np.ndarray]", tensors)
    else:
        ((name, dtype_enum),) = input_dtypes.items()
        tensor = _fast_tensor(instances, dtype_enum)  # fails on objects other than {"b64": ...}
        if tensor is not None:
            return {name: tensor}
    return _InstanceBatcher(input_dtypes).batch(instances, named)


def _status_string(error: ServingError) -> str:
    """absl::Status::ToString() of an error, as nested into TF Serving's messages."""
    return f"{error.code.name}: {error.message}"


class _InstanceBatcher:
    """The precise row-format walk: per-instance checks and messages exactly as in the C++."""

    def __init__(self, input_dtypes: Mapping[str, str]):
        self.input_dtypes = input_dtypes
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.sizes: dict[str, int] = {}
        self.values: dict[str, list] = {}

    def batch(self, instances: list, named: bool) -> dict[str, np.ndarray]:
        input_names = sorted(self.input_dtypes)
        for index, item in enumerate(instances):
            if named:
                if not _is_named_object(item):
                    raise InvalidArgument(f"Expecting object but got list at item {index} of input list")
                for key, value in item.items():
                    try:
                        self.add(key, value)
                    except ServingError as e:
                        raise InvalidArgument(
                            f"Failed to process element: {index} key: {key} of 'instances' list. "
                            f"Error: {_status_string(e)}"
                        ) from None
                if sorted(item) != input_names:
                    raise InvalidArgument(
                        f"Failed to process element: {index} of 'instances' list. JSON object: {debug_string(item)}"
                        f" keys must be equal to: {','.join(input_names)}"
                    )
            else:
                if _is_named_object(item):
                    raise InvalidArgument(f"Expecting value/list but got object at item {index} of input list")
                try:
                    self.add(input_names[0], item)
                except ServingError as e:
                    raise InvalidArgument(
                        f"Failed to process element: {index} of 'instances' list. Error: {_status_string(e)}"
                    ) from None
        return {
            name: _assemble((len(instances), *self.shapes[name]), values, self.input_dtypes[name], instances)
            for name, values in self.values.items()
        }

    def add(self, name: str, value) -> None:
        """AddInstanceItem: one instance's value for one input."""
        if name not in self.input_dtypes:
            raise InvalidArgument(f"JSON object: does not have named input: {name}")
        shape, values = _fill(value, self.input_dtypes[name])
        if name not in self.sizes:
            self.sizes[name], self.shapes[name], self.values[name] = len(values), shape, values
            return
        if self.sizes[name] != len(values):
            raise InvalidArgument(f"Expecting tensor size: {self.sizes[name]} but got: {len(values)}")
        if self.shapes[name] != shape:
            raise InvalidArgument(f"Expecting shape {_shape_string(self.shapes[name])} but got: {_shape_string(shape)}")
        self.values[name].extend(values)


def _shape_string(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


# ---------------------------------------------------------------------------
# Classify and regress requests (FillClassificationRequestFromJson & co.)
# ---------------------------------------------------------------------------


def decode_examples(doc: dict) -> tuple[dict | None, list[dict]]:
    """The (optional) context and the examples of a classify or regress request.

    Each is a features dict {name: (kind, values)}: kind is "int64", "float",
    "bytes", or None for an empty list; values are ints, floats or bytes.
    """
    context = _example_features(doc["context"]) if "context" in doc else None
    if "examples" not in doc:
        raise format_error(doc, "When method is classify, key 'examples' is expected and was not found")
    examples = doc["examples"]
    if type(examples) is not list:
        raise format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise format_error(doc, "'examples' value is an empty array")
    return context, [_example_features(example) for example in examples]


def _example_features(value) -> dict:
    """MakeExampleFromJsonObject."""
    if type(value) is not dict:
        raise InvalidArgument(f"Example must be JSON object but got JSON {json_type_name(value)}")
    features = {}
    for name, content in value.items():
        kind: str | None = None
        values: list = []
        for item in content if type(content) is list else (content,):
            kind = _add_feature_value(item, name, kind, values)
        features[name] = (kind, values)
    return features


def _add_feature_value(value, name: str, kind: str | None, values: list) -> str:
    """AddValueToFeature: append one JSON value to a feature's values and return the feature's kind."""
    if value is None or type(value) is list or (type(value) is dict and not _is_b64(value)):
        raise InvalidArgument(f"Feature: {name} has element with unexpected JSON type: {json_type_name(value)}")
    converted: Any  # int, float, bytes, or None for a {"b64": ...} object (decoded last)
    if type(value) is bool:
        new_kind, converted = "int64", int(value)
    elif type(value) is dict:
        new_kind, converted = "bytes", None
    elif type(value) is str:
        new_kind, converted = "bytes", value.encode("utf-8", "replace")
    elif type(value) is int and INT64_MIN <= value <= UINT64_MAX:
        new_kind, converted = "int64", value
    else:  # a number with a fraction or exponent, or an integer rapidjson can only hold as a double
        new_kind, converted = "float", float(value)
    if kind is not None and kind != new_kind:
        raise InvalidArgument(f"Unexpected element type in feature: {name} expecting type: {kind}")
    if new_kind == "int64" and converted > 2**63 - 1:
        raise InvalidArgument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
    if converted is None:
        converted = _decode_b64_object(value)
    values.append(converted)
    return new_kind


# ---------------------------------------------------------------------------
# Writing tensors as JSON (MakeJsonFromTensors)
# ---------------------------------------------------------------------------


def _tokens(name: str, tensor: np.ndarray) -> list[str]:
    """The JSON text of every value of a tensor, flattened in C order (AddSingleValueAndAdvance)."""
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
    raise InvalidArgument(f"Failed to write JSON value for tensor type: {_numpy_type_name(flat.dtype)}")


def _numpy_type_name(dtype: np.dtype) -> str:
    return "string" if dtype.kind in "OSU" else dtype.name


def _nest(tokens: list[str], shape: tuple[int, ...]) -> list[str]:
    """The JSON text of each sub-tensor along the first axis (rank >= 1), from the flat tokens."""
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


# From this many values on, a bool, int, float16 or float32 tensor is written by token_matrix, a column of
# characters at a time: where it and the value-by-value writing measured even (1000 float32: 1.3x faster,
# 50,000: ~2.5x; ints 4.5x at 4000). float64 is not: its max_digits10 tokens are written one by one anyway.
_MATRIX_MIN = {"f": 768, "i": 384, "u": 384, "b": 1536}
_MATRIX_SMALLEST = 384  # below it, not even _by_matrix is called: small answers are written as fast as before


def _by_matrix(tensor: np.ndarray) -> bool:
    least = _MATRIX_MIN.get(tensor.dtype.kind)
    return least is not None and tensor.size >= least and (tensor.dtype.kind != "f" or tensor.dtype.itemsize <= 4)


def _matrix_json(tensor: np.ndarray, rows: bool) -> str:
    """_tensor_json of a tensor (rank >= 1) that _by_matrix takes; with `rows`, the text of each sub-tensor
    along the first axis instead, separated by newlines (no token holds one).

    Each value's row of token_matrix is followed by its separator: the brackets that close after it,
    ", " and as many opening ones.
    """
    depth = tensor.ndim - 1
    chars, late = token_matrix(tensor.reshape(-1), spare=2 * depth + 2)
    comma = chars.shape[1] - depth - 2
    closes = np.zeros(tensor.size, np.int8)  # how many inner dimensions end at each value
    stride = 1
    for size in reversed(tensor.shape[1:]):
        stride *= size
        closes.reshape(-1, stride)[:, -1] += 1
    for level in range(depth):
        chars[:, comma - 1 - level] = (closes > level) * np.uint8(ord("]"))
        chars[:, comma + 2 + level] = (closes > level) * np.uint8(ord("["))
    chars[:, comma] = ord(",")
    chars[:, comma + 1] = ord(" ")
    if rows:
        boundary = np.flatnonzero(closes == depth)
        chars[boundary, comma] = ord("\n")
        chars[boundary, comma + 1] = 0
    chars[-1, comma - depth :] = 0
    # bytes.translate drops the zero bytes ~5x faster than a boolean mask does on rows as irregular as these
    text = chars.tobytes().translate(None, b"\0").decode("ascii")
    if late:
        pieces = text.split(LATE)
        text = pieces[0] + "".join(map(str.__add__, late, pieces[1:]))
    outer = depth if rows else depth + 1
    return "[" * outer + text + "]" * outer


def _tensor_json(name: str, tensor: np.ndarray) -> str:
    """AddTensorValues from dimension 0: the whole tensor (a bare value when it is a scalar)."""
    if tensor.size >= _MATRIX_SMALLEST and tensor.ndim and _by_matrix(tensor):
        return _matrix_json(tensor, rows=False)
    tokens = _tokens(name, tensor)
    if tensor.ndim == 0:
        return tokens[0]
    return "[" + ", ".join(_nest(tokens, tensor.shape)) + "]"


def _as_arrays(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    return {name: np.asarray(tensor) for name, tensor in outputs.items()}


def encode_outputs_value(outputs: Mapping[str, np.ndarray]) -> str:
    """The columnar JSON text of the outputs: the tensor itself for one output, else an object by name."""
    arrays = _as_arrays(outputs)
    if len(arrays) == 1:
        ((name, tensor),) = arrays.items()
        return _tensor_json(name, tensor)
    return "{" + ", ".join(f"{quote(name)}: {_tensor_json(name, tensor)}" for name, tensor in arrays.items()) + "}"


def _row_json(outputs: Mapping[str, np.ndarray]) -> str:
    """MakeRowFormatJsonFromTensors: one entry per batch item (an object by name when several outputs)."""
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
    if len(arrays) == 1:  # the tensor's own text: its rows joined
        ((name, tensor),) = arrays.items()
        return _tensor_json(name, tensor)
    columns = [
        _matrix_json(tensor, rows=True).split("\n")
        if tensor.size >= _MATRIX_SMALLEST and _by_matrix(tensor)
        else _nest(_tokens(name, tensor), tensor.shape)
        for name, tensor in arrays.items()
    ]
    template = "{" + ", ".join([quote(name).replace("%", "%%") + ": %s" for name in arrays]) + "}"
    return "[" + ", ".join([template % row for row in zip(*columns)]) + "]"


def encode_predict_response(outputs: Mapping[str, np.ndarray], fmt: str) -> bytes:
    """MakeJsonFromTensors: {"predictions": ...} for ROW requests, {"outputs": ...} for COLUMNAR ones."""
    if fmt == ROW:
        return ('{"predictions": ' + _row_json(outputs) + "}").encode("utf-8", "replace")
    if fmt == COLUMNAR:
        return ('{"outputs": ' + encode_outputs_value(outputs) + "}").encode("utf-8", "replace")
    raise InvalidArgument("Invalid request format")


# ---------------------------------------------------------------------------
# Classify / regress results and errors
# ---------------------------------------------------------------------------


def encode_classify_response(results: Sequence[Sequence[tuple[Any, float]]]) -> bytes:
    """MakeJsonFromClassificationResult: {"results": [[[label, score], ...], ...]}, one list per example.

    A label is a str, or bytes (written as UTF-8 text).
    """
    if not results:
        raise InvalidArgument("Cannot convert empty ClassificationResults to JSON")
    scores = decimal_tokens(np.array([score for classes in results for _, score in classes], dtype=np.float32))
    position = 0
    rows = []
    for classes in results:
        pairs = []
        for label, _ in classes:
            if type(label) is not str:
                label = bytes(label).decode("utf-8", "replace")
            pairs.append(f"[{quote(label)}, {scores[position]}]")
            position += 1
        rows.append("[" + ", ".join(pairs) + "]")
    return ('{"results": [' + ", ".join(rows) + "]}").encode("utf-8", "replace")


def encode_regress_response(values: Sequence[float]) -> bytes:
    """MakeJsonFromRegressionResult: {"results": [value, ...]}, one value per example."""
    if len(values) == 0:
        raise InvalidArgument("Cannot convert empty RegressionResults to JSON")
    tokens = decimal_tokens(np.asarray(values, dtype=np.float32).reshape(-1))
    return ('{"results": [' + ", ".join(tokens) + "]}").encode("ascii")


def encode_error(message: str) -> bytes:
    """MakeJsonFromStatus: {"error": "<message>"}."""
    return ('{"error": ' + quote(message) + "}").encode("utf-8", "replace")
