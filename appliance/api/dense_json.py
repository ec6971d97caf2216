"""Large predict bodies holding one regular array of floats (an image as nested lists), read as one flat list.

    doc = dense_document(body)   # None: use parse_document; else the document, the array as DenseNumbers
    doc["instances"].shape, doc["instances"].values   # (1, 224, 224, 3), float64 array of 150,528 values

orjson reads a 3 MB image as 50,000 nested lists, which the codec then walks; read flat (brackets as spaces) it
takes ~30% less, and the structure is checked on the text instead: only digits and ".eE+-" leave the
brackets, commas and one "." per number, which must be exactly the skeleton of a regular array (a marker in
each slot). Anything else (ints, strings, ragged or empty lists, a positive exponent) returns None and takes
parse_document, so what is accepted reads exactly as there.
"""

from __future__ import annotations

import math
from array import array

import numpy as np
import orjson

from ..errors import InvalidArgument
from .json_text import parse_document

__all__ = ["DenseNumbers", "dense_document"]

# Below this the nested parse and walk take ~0.2 ms at most, and the 4 dict lookups, the outer parse and
# the skeleton cost more than they save.
MIN_BODY = 64 * 1024
_MAX_RANK = 32
_BRACKETS_AS_SPACES = bytes.maketrans(b"[]", b"  ")
_DIGITS_AND_SPACE = b"0123456789 \t\n\r"
_KEYS = ("instances", "inputs", "input")


class DenseNumbers:
    """A regular array of JSON float literals: its values (float64, C order) and shape; ``nested()`` the lists."""

    __slots__ = ("_text", "shape", "values")

    def __init__(self, values: np.ndarray, shape: tuple[int, ...], text: bytes):
        self.values = values
        self.shape = shape
        self._text = text

    def nested(self) -> list:
        """The array as nested lists, as parse_document reads it (the codec's precise path takes those)."""
        return orjson.loads(self._text)


def dense_document(body: bytes, min_body: int = MIN_BODY) -> dict | None:
    """The predict document of a large `body` whose one array is dense, with a DenseNumbers in its place; or None.

    The array must be the value of "instances", "inputs" or "input", or of the one name in an object there.
    """
    if len(body) < min_body:
        return None
    start, end = body.find(b"["), body.rfind(b"]") + 1
    if start < 0:
        return None
    text = body[start:end]
    marks = text.translate(None, _DIGITS_AND_SPACE)  # brackets, commas, one "." per float literal, "eE+-"
    if b"+" in marks or any(e in marks and marks.count(e) != marks.count(e + b"-") for e in (b"e", b"E")):
        return None  # an exponent of 400 (or of 0e400) reads differently: json_text's guards decide those
    shape = _regular_shape(marks.translate(None, b"eE-"))
    if shape is None:
        return None
    try:
        flat = orjson.loads(b"".join((b"[", text.translate(_BRACKETS_AS_SPACES), b"]")))  # not +: ~4 ms more
        doc = parse_document(body[:start] + b"[]" + body[end:])  # BOM, NaN, trailing text: as for the whole
    except (orjson.JSONDecodeError, InvalidArgument):  # parse_document explains
        return None
    if len(flat) != math.prod(shape) or not _valid_outer(doc):
        return None
    dense = DenseNumbers(np.frombuffer(array("d", flat), np.float64), shape, text)
    return doc if _replace_placeholder(doc, dense) else None


def _regular_shape(skeleton: bytes) -> tuple[int, ...] | None:
    """The shape of the regular array whose brackets and commas, with "." for each number, are `skeleton`.

    With flat parsing having found one number per comma-separated slot, a "." in each slot of the skeleton
    puts each number in its place: none sits after a "]" or before a "[".
    """
    close = skeleton.find(b"]")
    if close < 0:
        return None
    depth = len(skeleton[:close]) - len(skeleton[:close].lstrip(b"["))
    if not 0 < depth <= _MAX_RANK:
        return None
    sizes = [(close - depth + 1) // 2]
    length = 2 * sizes[0] + 1  # of one innermost list
    for level in range(depth - 2, -1, -1):
        end = skeleton.find(b"]" * (depth - level))  # the first list of this level ends the first such run
        if end < 0:
            return None
        size = (end + depth - 2 * level - 1) // (length + 1)
        sizes.append(size)
        length = size * (length + 1) + 1
    shape = tuple(reversed(sizes))
    if 0 in shape or skeleton != _skeleton(shape):
        return None
    return shape


def _skeleton(shape: tuple[int, ...]) -> bytes:
    text = b"[" + b".," * (shape[-1] - 1) + b".]"
    for size in reversed(shape[:-1]):
        text = b"[" + b",".join([text] * size) + b"]"
    return text


def _valid_outer(doc) -> bool:
    """Whether no error of the codec quotes the document (it would show the DenseNumbers, not the lists)."""
    if type(doc) is not dict or ("instances" in doc and "inputs" in doc):
        return False
    return type(doc.get("signature_name", "")) is str


def _replace_placeholder(doc: dict, dense: DenseNumbers) -> bool:
    """Put `dense` where the document holds the empty list standing for it; False when that is not a tensor."""
    for key in _KEYS:
        value = doc.get(key)
        if type(value) is list:  # the only list left in it
            doc[key] = dense
            return True
        if type(value) is dict:
            for name, item in value.items():
                if type(item) is list:
                    value[name] = dense
                    return True
    return False
