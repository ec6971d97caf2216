"""TF Serving's JSON text conventions (rapidjson's): parsing bodies, showing values in errors, writing numbers.

    doc = parse_document(b'{"a": [1 2]}')
    # InvalidArgument: JSON Parse error: Missing a comma or ']' after an array element. at offset: 9
    parse_document(b'{"a": 1, "a": 2}')   # {'a': 1}: of duplicate keys, the first (rapidjson's FindMember)
    debug_string({"b": [True, None]})   # '{\\n    "b": [true, null]\\n}'
    decimal_tokens(np.array([2.05, 13 / 6, np.nan], np.float32))   # ['2.05', '2.16666675', 'NaN']
    token_matrix(np.array([2.05, 0.5], np.float32))   # the same tokens as rows of a uint8 matrix (large arrays)

Parse errors carry rapidjson's wording and byte offsets; values quoted in errors use its PrettyWriter layout,
cut after 256 bytes; floats are written as ``WriteDecimal`` does (six significant digits when they round-trip,
otherwise max_digits10). Tensors are not its business: the codec builds on it.
"""

from __future__ import annotations

import base64
import json
import math
import re
from array import array
from itertools import chain, compress, repeat
from json.encoder import encode_basestring as quote
from operator import is_

import numpy as np
import orjson

from ..errors import InvalidArgument

__all__ = [
    "INT64_MIN",
    "LATE",
    "UINT64_MAX",
    "debug_string",
    "decimal_tokens",
    "format_error",
    "json_type_name",
    "parse_document",
    "quote",
    "string_token",
    "token_matrix",
]

# rapidjson keeps integer literals in [INT64_MIN, UINT64_MAX] as integers and larger ones as doubles.
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


# ---------------------------------------------------------------------------
# Parsing the request body (ParseJson)
# ---------------------------------------------------------------------------


def _first_of_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """An object's members as rapidjson's FindMember sees them: of duplicate keys, the first value."""
    members = dict(pairs)
    if len(members) < len(pairs):
        members = {}
        for key, value in pairs:
            members.setdefault(key, value)
    return members


_DECODER = json.JSONDecoder(object_pairs_hook=_first_of_duplicates)
_BOM = b"\xef\xbb\xbf"

# rapidjson's GetParseError_En wording for what Python's json module reports.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Illegal trailing comma before end of array": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Illegal trailing comma before end of object": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}
_LEADING_SPACE = re.compile(r"[ \t\n\r]*")
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[][{}]', re.S)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

# orjson, with the guard below, parses a request body ~5x faster than the json module (the 391-byte digits body:
# 2.7 us against 14.6 us; 333 kB of floats: 1.0 ms against 6.4 ms) and, whenever it accepts one, to the same values
# of the same types (floats bit for bit, surrogate pairs). What it rejects (a BOM,
# NaN / Infinity, numbers beyond the double range, text after the document, unpaired surrogate escapes, every error)
# goes to the rapidjson rules, and so do the two kinds of documents it reads differently:
# - integers beyond [INT64_MIN, UINT64_MAX], which orjson makes floats: each is a run of 19 or more digits after a
#   byte that is not a digit, ".", "e", "E" or "+" (fraction and exponent digits follow those);
# - deep nesting, which orjson reads to 1024 levels (3.9.0: to any depth) and json only to the recursion
#   limit less the caller's stack (~975 levels under the server): documents nesting 512 levels deep or more take
#   the rapidjson rules. Only a body with 512 "[" and "{" or more can, and only then is its depth measured
#   (_depth: ~2 ms for a 3 MB image as nested lists, whose 50,000 "[" once sent it to the json module: 90 ms).
# Bodies with a positive exponent of three digits or more take them too: orjson reads 0e400 as 0.0, which
# rapidjson refuses (below).
_NUMBER_SHAPES = bytes(
    ord("0") if chr(b) in "0123456789" else ord("e") if chr(b) in "eE" else ord(".") if chr(b) in ".+" else ord(" ")
    for b in range(256)
)
_LONG_INTEGER = b" " + b"0" * 19
_DOUBLE_MAX_DIGITS = b"0" * 309
# e400, e+400: a regular expression finds them ~15x faster than bytes' own search, which stalls on the runs
# of "0" the needles end with (a 3 MB image as nested lists: 1 ms, not 28)
_LONG_EXPONENT = re.compile(rb"e\.?000")
_FAST_DEPTH = 512


def parse_document(body: bytes) -> dict:
    """TF Serving's ParseJson: the request body as a JSON object, or InvalidArgument.

    Like TF Serving (rapidjson with kParseNanAndInfFlag | kParseStopWhenDoneFlag),
    NaN / Infinity / -Infinity are accepted, a number literal beyond the range of
    a double is refused ("Number too big to be stored in double."), a UTF-8 byte
    order mark is skipped and anything after the top-level value is ignored.
    Of duplicate keys in an object, the first value is kept (what rapidjson's
    FindMember finds).
    Unlike rapidjson, invalid UTF-8 and unpaired surrogate escapes are rejected,
    so every string is valid text.
    """
    shapes = body.translate(_NUMBER_SHAPES, b"[{")  # deleting the openers counts them
    if (
        _LONG_INTEGER not in shapes
        and not _may_overflow(shapes)
        and (len(body) - len(shapes) < _FAST_DEPTH or _depth(body) < _FAST_DEPTH)
    ):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if type(doc) is dict and _kept_every_member(doc, body):
            return doc
    return _parse_with_rapidjson_rules(body)


# orjson keeps the last of duplicate keys, rapidjson's lookups (FindMember) the first: a body whose objects lost
# members to duplicates takes the rapidjson rules. Every member has one ":" outside strings, so none was lost when
# the dicts of the document hold as many members as the body has ":". Their members are summed level by level at
# C speed, stopping as soon as the sum reaches that count: at the top object for most bodies, at the rows of
# "instances" for lists of named inputs. Only where strings hold ":" (or duplicates were dropped) is the whole
# document walked and the ":" outside strings counted.
_NUMPY_FROM = 2048  # bytes: below, counting in Python's bytes methods and re is faster than numpy's overhead
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_COLON_OR_QUOTE = bytes(b for b in range(256) if b not in b':"')


def _kept_every_member(doc: dict, body: bytes) -> bool:
    if len(body) < _NUMPY_FROM:
        colons = body.count(b":")
    else:  # ~5x faster than bytes.count on large bodies: 0.25 ms for 3 MB
        colons = int(np.count_nonzero(np.frombuffer(body, np.uint8) == ord(":")))
    members = len(doc)
    if members == colons:
        return True
    level = list(doc.values())
    while level:
        kinds = list(map(type, level))
        dicts = level if kinds.count(dict) == len(level) else list(compress(level, map(is_, kinds, repeat(dict))))
        members += sum(map(len, dicts))
        if members == colons:
            return True
        lists = compress(level, map(is_, kinds, repeat(list)))
        level = list(chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(lists)))
    return members == _colons_outside_strings(body)


def _colons_outside_strings(body: bytes) -> int:
    """The ":" of the JSON text `body` outside strings: one per object member (exact for valid JSON)."""
    if len(body) < _NUMPY_FROM:
        return _STRING.sub(b"", body).count(b":")
    if b"\\" in body:  # escaped backslashes and quotes dropped, as in _depth
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = np.frombuffer(body.translate(None, _NOT_COLON_OR_QUOTE), np.uint8)
    outside = np.cumsum(marks == ord('"'), dtype=np.int32) & 1 == 0
    return int(np.count_nonzero(outside & (marks == ord(":"))))


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_NESTING = np.zeros(256, np.int32)
_NESTING[list(b"[{")], _NESTING[list(b"]}")] = 1, -1


def _depth(body: bytes) -> int:
    """How deep the JSON text `body` nests arrays and objects (1 for {"a": 1}), brackets in strings aside.

    Exact for any text orjson accepts (valid JSON); what it says of other text does not
    matter, as orjson refuses that text anyway. Escaped backslashes and quotes are dropped
    first (pairing a run of backslashes from its left, as a string's escapes are read), so
    every quote left opens or closes a string: a bracket is inside one when an odd number
    of quotes precede it.
    """
    if b"\\" in body:  # a one-byte test is a fast memchr
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = np.frombuffer(body.translate(None, _NOT_STRUCTURE), np.uint8)
    quotes = structure == ord('"')
    steps = _NESTING[structure]
    steps[np.cumsum(quotes, dtype=np.int32) & 1 == 1] = 0  # inside a string (or its opening quote: 0 anyway)
    return int(np.cumsum(steps).max(initial=0))


def _parse_with_rapidjson_rules(body: bytes) -> dict:
    """parse_document for any body, with the json module: rapidjson's wording and offsets in every error."""
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    skipped = len(_BOM) if body.startswith(_BOM) else 0
    try:
        text = (body[skipped:] if skipped else body).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _parse_error("Invalid encoding in string.", skipped + e.start) from None
    start = 0
    if text[:1] in " \t\n\r":  # leading whitespace, or no text at all ("" is in any string)
        leading = _LEADING_SPACE.match(text)
        assert leading is not None, "* matches no text too"
        start = leading.end()
        if start == len(text):
            raise _parse_error("The document is empty.", len(body))
    decoder = _RANGE_CHECKED_DECODER if _may_overflow(body.translate(_NUMBER_SHAPES)) else _DECODER
    try:
        doc, _ = decoder.raw_decode(text, start)
    except _NumberTooBig as e:
        offset = _number_offset(text, start, e.literal)
        raise _parse_error(
            "Number too big to be stored in double.", skipped + len(text[:offset].encode("utf-8"))
        ) from None
    except json.JSONDecodeError as e:
        reason, pos = _rapidjson_reason(e, text)
        raise _parse_error(reason, skipped + len(text[:pos].encode("utf-8"))) from None
    except RecursionError:
        raise InvalidArgument("JSON Parse error: The document is nested too deeply.") from None
    except ValueError as e:  # e.g. an integer literal beyond Python's digit limit
        raise InvalidArgument(f"JSON Parse error: {e}") from None
    if b"\\" in body and _SURROGATE_ESCAPE.search(body):  # a one-byte test is a fast memchr
        _check_surrogates(doc, body)
    if type(doc) is not dict:
        raise format_error(doc, "Is not object")
    return doc


class _NumberTooBig(Exception):
    """A number literal that rapidjson refuses: beyond the range of a double."""

    def __init__(self, literal: str):
        super().__init__(literal)
        self.literal = literal


# rapidjson takes no further digit of an integer once its double reaches this (1.7976931348623157e307),
# so integers of 310 digits or more, and 309-digit ones from about the largest double up, are too big.
_DOUBLE_DIGITS_LIMIT = 17976931348623157 * 10**291


def _may_overflow(shapes: bytes) -> bool:
    """Whether a body (as ``_NUMBER_SHAPES``) has a 309-digit run or a positive exponent of three digits or more.

    Only then are its number literals checked one by one, which costs the json module's parse a Python call each.
    """
    return _DOUBLE_MAX_DIGITS in shapes or _LONG_EXPONENT.search(shapes) is not None


def _int_literal(literal: str) -> int:
    digits = literal.lstrip("-")
    if len(digits) > 309 or (len(digits) == 309 and int(digits[:308]) >= _DOUBLE_DIGITS_LIMIT):
        raise _NumberTooBig(literal)
    return int(literal)


def _float_literal(literal: str) -> float:
    """A float literal's value; rapidjson refuses one that overflows, or whose exponent exceeds 308 plus its
    fraction digits (so 0e400 too)."""
    value = float(literal)
    mantissa, _, exponent = literal.lower().partition("e")
    positive = "" if exponent.startswith("-") else exponent.lstrip("+0")
    if math.isinf(value) or len(positive) > 20 or int(positive or 0) > 308 + len(mantissa.partition(".")[2]):
        raise _NumberTooBig(literal)
    return value


_RANGE_CHECKED_DECODER = json.JSONDecoder(
    parse_int=_int_literal, parse_float=_float_literal, object_pairs_hook=_first_of_duplicates
)
_NUMBER_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?')


def _number_offset(text: str, start: int, literal: str) -> int:
    """Where the number literal the decoder refused first starts (the first one spelled so: no earlier one was)."""
    return next(m.start() for m in _NUMBER_OR_STRING.finditer(text, start) if m.group() == literal)


def _parse_error(reason: str, offset: int) -> InvalidArgument:
    return InvalidArgument(f"JSON Parse error: {reason} at offset: {offset}")


def _rapidjson_reason(error: json.JSONDecodeError, text: str) -> tuple[str, int]:
    """rapidjson's reason and (character) position for a Python JSON syntax error."""
    if error.msg == "Expecting ',' delimiter":
        inside = _innermost_container(text, error.pos)
        if inside == "{":
            return "Missing a comma or '}' after an object member.", error.pos
        return "Missing a comma or ']' after an array element.", error.pos
    if error.msg == "Unterminated string starting at":
        return _PARSE_ERRORS[error.msg], len(text)  # rapidjson reads to the end first
    if error.msg == "Invalid \\uXXXX escape":
        return _PARSE_ERRORS[error.msg], max(error.pos - 1, 0)  # at the backslash
    return _PARSE_ERRORS.get(error.msg, "Invalid value."), error.pos


def _innermost_container(text: str, pos: int) -> str | None:
    """The bracket ('[' or '{') enclosing position `pos` of (valid up to there) JSON text."""
    stack = []
    for match in _STRING_OR_BRACKET.finditer(text, 0, pos):
        token = match.group()
        if token in "[{":
            stack.append(token)
        elif token in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else None


def _check_surrogates(doc, body: bytes) -> None:
    """Reject unpaired \\uD800-\\uDFFF escapes (rapidjson does; Python keeps them as lone surrogates).

    The walk is iterative: a document the parser just managed to nest must not overflow the stack here.
    """
    try:
        for _, payload in _events(doc):
            if type(payload) is str:
                payload.encode("utf-8")
    except UnicodeEncodeError:
        escape = _SURROGATE_ESCAPE.search(body)
        assert escape is not None, "only an escape can make a lone surrogate in valid UTF-8"
        offset = escape.start()
        raise _parse_error("The surrogate pair in string is invalid.", offset) from None


# ---------------------------------------------------------------------------
# Describing JSON values in error messages (JsonValueToDebugString & co.)
# ---------------------------------------------------------------------------

_DEBUG_LIMIT = 256  # kMaxJsonDebugStringBytes
_START_ARRAY, _END_ARRAY, _START_OBJECT, _END_OBJECT, _KEY, _SCALAR = range(6)
_DONE = object()


def format_error(value, message: str) -> InvalidArgument:
    """TF Serving's FormatError: the offending value followed by what is wrong with it."""
    return InvalidArgument(f"JSON Value: {debug_string(value)} {message}")


def json_type_name(value) -> str:
    """rapidjson's type name of a JSON value, as TF Serving prints it."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if type(value) is dict:
        return "Object"
    if type(value) is list:
        return "Array"
    if type(value) is str:
        return "String"
    return "Number"


def debug_string(value) -> str:
    """JsonValueToDebugString: rapidjson's PrettyWriter output (single-line arrays), cut off after 256 bytes."""
    parts: list[str] = []
    size = 0
    levels: list[list] = []  # [is_array, values written so far] per open container
    for event, payload in _events(value):
        if size >= _DEBUG_LIMIT:
            break
        if event == _END_ARRAY:
            levels.pop()
            text = "]"
        elif event == _END_OBJECT:
            written = levels.pop()[1]
            text = ("\n" + "    " * len(levels) if written else "") + "}"
        else:
            text = _pretty_prefix(levels)
            if event == _START_ARRAY:
                text += "["
                levels.append([True, 0])
            elif event == _START_OBJECT:
                text += "{"
                levels.append([False, 0])
            elif event == _KEY:
                text += quote(payload)
            else:
                text += _debug_scalar(payload)
        parts.append(text)
        size += len(text.encode("utf-8", "surrogatepass"))
    return "".join(parts)


def _events(value):
    """SAX-style events of a JSON value, depth-first, without recursion."""
    stack = [(iter((value,)), None)]
    while stack:
        items, container = stack[-1]
        item = next(items, _DONE)
        if item is _DONE:
            stack.pop()
            if container is not None:
                yield (_END_ARRAY if container is list else _END_OBJECT), None
            continue
        if container is dict:
            key, item = item
            yield _KEY, key
        if type(item) is list:
            yield _START_ARRAY, None
            stack.append((iter(item), list))
        elif type(item) is dict:
            yield _START_OBJECT, None
            stack.append((iter(item.items()), dict))
        else:
            yield _SCALAR, item


def _pretty_prefix(levels: list[list]) -> str:
    """The separator and indentation PrettyWriter writes before the next value in the innermost container."""
    if not levels:
        return ""
    level = levels[-1]
    count = level[1]
    level[1] += 1
    if level[0]:
        return ", " if count else ""
    if count % 2:
        return ": "
    return ("\n" if count == 0 else ",\n") + "    " * len(levels)


def _debug_scalar(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is str:
        return quote(value)
    if type(value) is int:
        if INT64_MIN <= value <= UINT64_MAX:
            return str(value)
        try:
            value = float(value)  # rapidjson holds larger integers as doubles
        except OverflowError:
            return str(value)
    if type(value) is float:
        return _rapidjson_double(value)
    return repr(value)


def _rapidjson_double(d: float) -> str:
    """A double as rapidjson's Writer prints it (shortest digits, Prettify's layout)."""
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "Infinity" if d > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, d) < 0 else ""
    if d == 0:
        return sign + "0.0"
    mantissa, _, exponent = repr(abs(d)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    stripped = digits.rstrip("0")
    k = int(exponent or 0) - len(fraction) + len(digits) - len(stripped)  # |d| = stripped * 10^k
    digits = stripped
    length = len(digits)
    kk = length + k  # 10^(kk-1) <= |d| < 10^kk
    if k >= 0 and kk <= 21:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        text = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif length == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + text


# ---------------------------------------------------------------------------
# Writing values (WriteDecimal, AddSingleValueAndAdvance)
# ---------------------------------------------------------------------------

_SHORT = "%g".__mod__  # absl::StrCat(float|double): six significant digits
_FULL = {np.dtype(np.float32): "%.9g".__mod__, np.dtype(np.float64): "%.17g".__mod__}  # max_digits10
_BARE = {"nan": "NaN", "-nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_VECTORISE_MIN = 96  # smaller arrays are formatted value by value: numpy's per-call overhead dominates there


def decimal_tokens(flat: np.ndarray) -> list[str]:
    """WriteDecimal for each value of a 1-D float32 / float64 array.

    Six significant digits ("%g") when they parse back to the same value,
    otherwise max_digits10 ("%.9g" for float32, "%.17g" for float64); ".0"
    appended when the text has neither "." nor "e"; NaN, Infinity, -Infinity as
    bare tokens.
    """
    single = flat.dtype == np.float32
    if flat.size < _VECTORISE_MIN:
        values = flat.tolist()
        short = list(map(_SHORT, values))
        read_back = array("f", map(float, short)) if single else map(float, short)  # strtof / strtod
        full = _FULL[flat.dtype]
        texts = [token if back == value else full(value) for token, back, value in zip(short, read_back, values)]
        return [text if "." in text or "e" in text else _BARE.get(text) or text + ".0" for text in texts]
    with np.errstate(invalid="ignore"):  # signalling NaNs
        finite = np.isfinite(flat)
        whole = finite & (flat == np.trunc(flat))
    candidate = finite & _may_round_trip_in_six_digits(flat)
    tokens = np.empty(flat.size, dtype=object)
    shortened = np.zeros(flat.size, dtype=bool)
    index = np.flatnonzero(candidate)
    if index.size:
        values = flat[index]
        short = list(map(_SHORT, values.tolist()))
        if single:  # strtof: the float32 nearest to the text
            parsed = np.frombuffer(array("f", map(float, short)), dtype=np.float32)
        else:
            parsed = np.fromiter(map(float, short), dtype=np.float64, count=len(short))
        good = parsed == values
        tokens[index[good]] = np.array(short, dtype=object)[good]
        shortened[index[good]] = True
    rest = finite & ~shortened
    tokens[rest] = list(map(_FULL[flat.dtype], flat[rest].tolist()))
    # Only whole numbers can lack both "." and "e": "%g" writes them out below 1e6
    # (and every whole number below 1e6 has a six-digit token), "%.9g" below 1e9, "%.17g" below 1e17.
    magnitude = np.abs(flat)
    dotless = whole & ((magnitude < 1e6) | (~shortened & (magnitude < (1e9 if single else 1e17))))
    tokens[dotless] += ".0"
    if not finite.all():
        tokens[np.isnan(flat)] = "NaN"
        tokens[flat == np.inf] = "Infinity"
        tokens[flat == -np.inf] = "-Infinity"
    return tokens.tolist()


def _may_round_trip_in_six_digits(flat: np.ndarray) -> np.ndarray:
    """False where six significant digits certainly cannot reproduce the value (saves formatting it twice).

    The nearest six-digit decimal N * 10^(e-5) is located in float64 (t = |x| * 10^(5-e),
    N = rint(t)); it can only round-trip when it lies within half a gap of x. The
    1e-6 margin dwarfs float64's error on t (~1e-9), so borderline values stay candidates
    and are settled by formatting and parsing, exactly as TF Serving does.
    """
    with np.errstate(all="ignore"):
        gap = np.maximum(np.nextafter(flat, np.inf) - flat, flat - np.nextafter(flat, -np.inf)).astype(np.float64)
        magnitude = np.abs(flat).astype(np.float64)
        scale = 10.0 ** (5.0 - np.floor(np.log10(magnitude)))
        t = magnitude * scale
        distance = np.abs(t - np.rint(t))
        return ~(distance > gap * 0.5 * scale * (1 + 1e-9) + 1e-6)


# ---------------------------------------------------------------------------
# Writing whole arrays at once (token_matrix)
# ---------------------------------------------------------------------------

# float64 10^k for k in [-60, 60], each correctly rounded (Python's float of the literal); _POW10[_P0 + k]
_P0 = 60
_POW10 = np.array([float(f"1e{k}") for k in range(-_P0, _P0 + 1)])
# A float token's columns: sign, "0.", three zeros, nine digits each followed by ".", a "0", "e", sign, two digits.
_FLOAT_COLUMNS = 29
LATE = "?"  # where token_matrix leaves a token out, to come from decimal_tokens
# Tables of characters, four bytes a row read as one uint32 (numpy's take copies those fastest).
_THREE_DIGITS = np.frombuffer(b"".join(b"%03d " % v for v in range(1000)), np.uint32)
_TRAILING = np.array([3] + [len(str(v)) - len(str(v).rstrip("0")) for v in range(1, 1000)], np.int8)
_EXPONENT = np.frombuffer(b"\0\0\0\0" + b"".join(b"e%+03d" % e for e in range(-50, 51)), np.uint32)


def token_matrix(flat: np.ndarray, spare: int = 0) -> tuple[np.ndarray, list[str]]:
    """The JSON text of every value of a 1-D bool, int, float16 or float32 array, as rows of characters.

    Returns (chars, late): a uint8 array of shape (n, width + spare) and a list of tokens. Row i,
    its zero bytes dropped, is the token of value i as str(), true / false or decimal_tokens write
    it, or LATE where the next token of `late` goes. The last `spare` columns are zero, for the
    caller. Built a column at a time: no per-value Python but for the few floats float64
    arithmetic cannot settle, which decimal_tokens writes (`late`).

        chars, late = token_matrix(np.array([7, -12]))   # [[0, 0, 55], [45, 49, 50]], []
    """
    kind = flat.dtype.kind
    if kind == "b":
        chars = np.zeros((flat.size, 5 + spare), np.uint8)
        for column, (yes, no) in enumerate(zip(b"true", b"fals")):
            chars[:, column] = flat * np.uint8((yes - no) % 256) + np.uint8(no)  # wraps round where yes < no
        chars[:, 4] = ~flat * np.uint8(ord("e"))
        return chars, []
    if kind in "iu":
        return _int_matrix(flat, spare), []
    if flat.dtype.itemsize > 4:
        raise TypeError(f"token_matrix writes no {flat.dtype}: decimal_tokens does")
    return _float_matrix(flat, spare)


def _int_matrix(flat: np.ndarray, spare: int) -> np.ndarray:
    if flat.dtype.kind == "u":
        magnitude = flat.astype(np.uint64)
        negative = np.zeros(flat.size, bool)
    else:
        signed = flat.astype(np.int64)
        negative = signed < 0
        magnitude = signed.view(np.uint64)
        magnitude = np.where(negative, np.negative(magnitude), magnitude)  # two's complement: INT64_MIN too
    width = len(str(int(magnitude.max())))
    chars = np.zeros((flat.size, 1 + width + spare), np.uint8)
    chars[:, 0] = negative * np.uint8(ord("-"))
    rest = magnitude
    ten = np.uint64(10)
    for column in range(width, 0, -1):
        quotient = rest // ten
        digit = (rest - quotient * ten).astype(np.uint8) + np.uint8(ord("0"))
        chars[:, column] = digit if column == width else digit * (rest != 0)  # no leading zeros
        rest = quotient
    return chars


def _float_matrix(flat: np.ndarray, spare: int) -> tuple[np.ndarray, list[str]]:
    """token_matrix of float16 / float32 values (written as float32): WriteDecimal's tokens, worked out in float64.

    With e = floor(log10|x|) (from the binary exponent), t = |x| * 10^(5-e) is within ~1e-9 of
    its exact value, so N = rint(t) is "%g"'s six digits, and they parse back to x (strtof) when
    N lies within half a gap of t: certain, but within 1e-7 of that bound. Values that do not
    round-trip get nine digits the same way: certain, but within 1e-5 of a tie, unless the
    product is exact (then rint's half-to-even is what printf does). NaN, infinities and the
    unsettled are left to decimal_tokens.
    """
    flat = flat.astype(np.float32, copy=False)  # float16's tokens are float32's
    with np.errstate(all="ignore"):
        magnitude = np.abs(flat)
        finite = np.isfinite(flat)
        regular = finite & (magnitude != 0)
        x = np.where(regular, magnitude, 1).astype(np.float64)
        # floor(log10(2^b)) = (b * 78913) >> 18 for |b| < 2^11; 10^e <= x < 10^(e+2)
        e = (((x.view(np.int64) >> 52) - 1023) * 78913) >> 18
        e += x >= _POW10[_P0 + 1 + e]
        scale = _POW10[_P0 + 5 - e]
        t = x * scale
        n6 = np.rint(t)
        distance = n6 - t
        bits = magnitude.view(np.int32)
        up = (bits + 1).view(np.float32) - magnitude
        down = magnitude - (bits - 1).view(np.float32)
        up[np.isinf(up)] = down[np.isinf(up)]  # FLT_MAX parses back from up to half its lower gap above
        half = np.where(distance > 0, up, down) * (0.5 * scale)
        short = np.abs(distance) < half - 1e-7
        unsure = ~short & (np.abs(distance) <= half + 1e-7)
        t9 = x * _POW10[_P0 + 8 - e]
        n9 = np.rint(t9)
        tie = np.flatnonzero(~short & (np.abs(np.abs(t9 - n9) - 0.5) < 1e-5))
        unsure[tie] |= ~_exact_product(x[tie], 8 - e[tie])
        unsure |= ~short & ((n9 < 1e8) | (n9 > 1e9))
        unsure = (unsure | (n6 < 1e5) | (n6 > 1e6)) & regular | ~finite
        digits = np.where(unsure | ~regular, 0, np.where(short, n6 * 1000, n9)).astype(np.int64)  # nine of them
    top = digits >= 10**9  # rounded up to the next power of ten
    digits[top] //= 10
    e = np.where(regular, e + top, 0)
    exponential = regular & ~unsure & ((e < -4) | (e >= np.where(short, 6, 9)))
    fixed = ~exponential & ~unsure

    group = digits.astype(np.int32)
    high = group // 1000000
    group -= high * 1000000
    middle = group // 1000
    low = group - middle * 1000
    trailing = np.where(low != 0, _TRAILING[low], np.where(middle != 0, 3 + _TRAILING[middle], 6 + _TRAILING[high]))
    last = 8 - trailing  # the last nonzero digit (-1 for zero)
    small_e = e.astype(np.int8)
    upto = np.where(fixed & (e >= 0), np.maximum(last, small_e + 1), np.maximum(last, 0))  # the last digit written
    upto[unsure] = -1
    point = np.where(fixed & (e >= 0), small_e, np.where(exponential & (last > 0), 0, -1)).astype(np.int8)

    chars = np.zeros((flat.size, _FLOAT_COLUMNS + spare), np.uint8)
    dot, zero = np.uint8(ord(".")), np.uint8(ord("0"))
    chars[:, 0] = np.signbit(flat) * np.uint8(ord("-"))
    leading = np.where(fixed & (e < 0), -small_e, 0)  # "0." and then leading - 1 zeros
    chars[:, 1] = (leading > 0) * zero
    chars[:, 2] = (leading > 0) * dot
    for column in range(3, 6):
        chars[:, column] = (leading >= column - 1) * zero
    for start, part in zip((0, 3, 6), (high, middle, low)):
        three = _THREE_DIGITS.take(part).view(np.uint8).reshape(-1, 4)
        for index in range(start, start + 3):
            chars[:, 6 + 2 * index] = three[:, index - start] * (upto >= index)
    for index in range(9):
        chars[:, 7 + 2 * index] = (point == index) * dot
    chars[:, 24] = (upto == 9) * zero
    chars[:, 25:29] = _EXPONENT.take(np.where(exponential, e + 51, 0)).view(np.uint8).reshape(-1, 4)
    late: list[str] = []
    if unsure.any():
        rows = np.flatnonzero(unsure)
        late = decimal_tokens(flat[rows])
        chars[rows, 0] = ord(LATE)
    return chars, late


def _exact_product(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Whether x * 10^k is exact in float64: 10^k is (0 <= k <= 22) and so is the product (Dekker's TwoProduct)."""
    power = _POW10[_P0 + np.clip(k, 0, 22)]
    product = x * power
    x_high, x_low = _split(x)
    p_high, p_low = _split(power)
    error = (((x_high * p_high - product) + x_high * p_low) + x_low * p_high) + x_low * p_low
    return (k >= 0) & (k <= 22) & (error == 0)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split of float64 values into two halves of 26 bits each (exact: high + low == a)."""
    c = a * 134217729.0  # 2^27 + 1
    high = c - (c - a)
    return high, a - high


def string_token(value, as_bytes: bool) -> str:
    """A str or bytes value as a JSON string, or as {"b64": ...} when `as_bytes`; TypeError for anything else.

    Bytes that are not UTF-8 are written with U+FFFD in place of the bad bytes.
    """
    if isinstance(value, str):
        if not as_bytes:
            return quote(value)
        value = value.encode("utf-8", "replace")
    elif not isinstance(value, bytes):
        raise TypeError(value)
    if as_bytes:
        return '{"b64": "' + base64.b64encode(value).decode("ascii") + '"}'
    return quote(value.decode("utf-8", "replace"))
