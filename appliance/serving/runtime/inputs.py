"""Request inputs checked against a signature, with answers that name the input, what it expects and what came.

Every runtime uses these: the names with TF Serving's wording, then each tensor's
dtype, rank and known dimensions. The check is worked out once per signature
(see :attr:`SignatureSpec.input_check`), so a request pays a few attribute reads.

    check = InputCheck(signature)
    check.mismatch({"pixels": np.zeros((1, 3), np.float32)})
    # 'input "pixels" expects float32 [-1, 64]; got float32 [1, 3]'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InvalidArgument

if TYPE_CHECKING:
    from . import SignatureSpec, TensorSpec

# DataType enum names with a numpy dtype; inputs of other types (half precision brain floats, resources,
# variants) are checked for their shape only.
NUMPY_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_HALF": np.float16,
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT8": np.uint8,
    "DT_UINT16": np.uint16,
    "DT_UINT32": np.uint32,
    "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_,
    "DT_COMPLEX64": np.complex64,
    "DT_COMPLEX128": np.complex128,
}
_STRING_KINDS = frozenset("OSU")  # bytes in an object array, or numpy's fixed-width bytes and str


def dtype_text(dtype_enum: str) -> str:
    """How the messages write a signature's dtype: "DT_FLOAT" -> "float32", "DT_STRING" -> "string"."""
    if dtype_enum == "DT_STRING":
        return "string"
    numpy_dtype = NUMPY_DTYPES.get(dtype_enum)
    if numpy_dtype is not None:
        return np.dtype(numpy_dtype).name
    return dtype_enum.removeprefix("DT_").lower()


def _array_dtype_text(array: np.ndarray) -> str:
    return "string" if array.dtype.kind in _STRING_KINDS else array.dtype.name


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "of any shape" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


class _Expected:
    """One input's dtype and shape, in the form a request is compared with."""

    __slots__ = ("dtype", "first", "known_dims", "rank", "strings", "tail", "text")

    def __init__(self, alias: str, spec: TensorSpec):
        numpy_dtype = NUMPY_DTYPES.get(spec.dtype)
        self.dtype = np.dtype(numpy_dtype) if numpy_dtype is not None else None
        self.strings = spec.dtype == "DT_STRING"
        shape = spec.shape
        self.rank = None if shape is None else len(shape)
        self.known_dims = () if shape is None else tuple((i, d) for i, d in enumerate(shape) if d >= 0)
        # The usual signature, [-1, 64] say: every dimension after the first known, compared as one tuple.
        self.tail = shape[1:] if shape is not None and all(d >= 0 for d in shape[1:]) else None
        self.first = shape[0] if shape else -1
        self.text = f'input "{alias}" expects {dtype_text(spec.dtype)} {shape_text(shape)}'

    def fits(self, array: np.ndarray) -> bool:
        dtype = array.dtype
        if dtype is not self.dtype and not self._takes(dtype):  # numpy's built-in dtypes are singletons
            return False
        shape = array.shape
        if self.tail is not None:
            return len(shape) == self.rank and shape[1:] == self.tail and (self.first < 0 or shape[0] == self.first)
        if self.rank is None:
            return True
        return len(shape) == self.rank and all(shape[i] == d for i, d in self.known_dims)

    def _takes(self, dtype: np.dtype) -> bool:
        if self.strings:
            return dtype.kind in _STRING_KINDS
        return self.dtype is None or dtype == self.dtype


class InputCheck:
    """A signature's inputs, ready to be compared with each request's."""

    __slots__ = ("_expected", "_signature")

    def __init__(self, signature: SignatureSpec):
        self._signature = signature
        self._expected = {alias: _Expected(alias, spec) for alias, spec in signature.inputs.items()}

    @property
    def expected(self) -> str:
        """Every input the signature takes: 'input "pixels" expects float32 [-1, 64]', joined with "; "."""
        return "; ".join(spec.text for spec in self._expected.values()) or "no inputs"

    def fits(self, inputs: Mapping[str, np.ndarray]) -> bool:
        """Whether every input is one the signature has, of its dtype, rank and known dimensions."""
        expected = self._expected
        for alias, array in inputs.items():
            spec = expected.get(alias)
            if spec is None or not spec.fits(array):
                return False
        return True

    def mismatch(self, inputs: Mapping[str, np.ndarray]) -> str | None:
        """What is wrong with the first input of the wrong dtype or shape, for the client; None if none is.

        Aliases the signature does not have are left to :meth:`check_names`.
        """
        for alias, array in inputs.items():
            spec = self._expected.get(alias)
            if spec is not None and not spec.fits(array):
                return f"{spec.text}; got {_array_dtype_text(array)} {shape_text(array.shape)}"
        return None

    def check_names(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise InvalidArgument, in TF Serving's words, unless the aliases are the signature's (less defaults)."""
        signature = self._signature
        sent, expected = set(inputs), set(signature.inputs)
        if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
            raise InvalidArgument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
            )
        unknown = sorted(sent - expected)
        if unknown:
            raise InvalidArgument(
                f"input tensor alias not found in signature: {unknown[0]}. "
                f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}."
            )
        missing = sorted(expected - sent - signature.defaults)
        if missing:
            raise InvalidArgument(f"Missing input tensor alias with no default value: {missing[0]}")

    def check(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise InvalidArgument unless the request's inputs are the signature's, each of its dtype and shape."""
        self.check_names(inputs)
        problem = self.mismatch(inputs)
        if problem is not None:
            raise InvalidArgument(problem)


def output_aliases(signature: SignatureSpec, output_filter: Sequence[str]) -> list[str]:
    """The outputs a predict request asks for (all, without a filter), checked in TF Serving's words and order."""
    if not output_filter:
        return list(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise InvalidArgument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)
