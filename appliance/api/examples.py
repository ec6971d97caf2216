"""Example requests for a signature, from its metadata: the bodies the start page shows as curl lines and lets you try.

    example = example_request(signature, base_path / "samples")
    example.verb, example.body    # "predict", {"signature_name": "image", "instances": [{"b64": "iVBOR..."}]}

A sample shipped beside the model's versions wins: ``samples/<signature>.json`` (a whole request body), or for
an image input the first ``samples/*.png``. Otherwise each input gets a plausible value of its dtype and shape
(a tiny PNG for image bytes); a tensor too large to write out is a :class:`Filled` placeholder.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import math
import struct
import zlib
from pathlib import Path

from ..serving.runtime import DEFAULT_SIGNATURE, SignatureSpec, TensorSpec

VERBS = {"tensorflow/serving/classify": "classify", "tensorflow/serving/regress": "regress"}
FLOATS = frozenset({"DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16"})
MAX_WRITTEN = 2048  # values of one input written out in full; a larger tensor is a Filled placeholder
MAX_SAMPLE_BYTES = 16 << 10  # a sample image larger than this is not inlined; the tiny PNG is used instead


@dataclasses.dataclass(frozen=True)
class Filled:
    """A tensor of ``shape`` holding ``value`` everywhere, too large to write out (the page's JS builds it)."""

    shape: tuple[int, ...]
    value: float | int | bool | str

    def expanded(self) -> list:
        tensor: object = self.value
        for size in reversed(self.shape):
            tensor = [tensor] * size
        return tensor  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class Example:
    """A request for one signature: the verb of its URL, the JSON body, and what the body could not know.

    ``image_input`` names the input when the signature takes one image's bytes (the page offers a file
    input); ``needs_features`` is true for classify and regress without a sample (their features are not
    in the metadata, so the example is empty).
    """

    signature: str
    verb: str
    body: dict
    image_input: str | None = None
    needs_features: bool = False


def tiny_png(width: int = 8, height: int = 8) -> bytes:
    """A grey PNG of a dark diagonal stroke on white, made without an image library."""
    rows = b"".join(
        b"\x00" + bytes(0 if abs(x - (width - 1 - y)) <= 1 else 255 for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@functools.cache
def _tiny_png_b64() -> str:
    return base64.b64encode(tiny_png()).decode()


def verb_of(signature: SignatureSpec) -> str:
    """The TF Serving verb a signature answers: its method, else (TF2 saves every signature as predict) TF
    Serving's conventions for classify and regress: one string input "inputs", outputs classes/scores or outputs."""
    if signature.method_name in VERBS:
        return VERBS[signature.method_name]
    serialized = [spec.dtype for spec in signature.inputs.values()] == ["DT_STRING"] and "inputs" in signature.inputs
    if serialized and signature.outputs and set(signature.outputs) <= {"classes", "scores"}:
        return "classify"
    if serialized and set(signature.outputs) == {"outputs"}:
        return "regress"
    return "predict"


def _is_image(signature: SignatureSpec, spec: TensorSpec) -> bool:
    return spec.dtype == "DT_STRING" and "image" in f"{signature.name} {spec.alias}".lower()


def _scalar(signature: SignatureSpec, spec: TensorSpec):
    if spec.dtype in FLOATS:
        return 0.5
    if spec.dtype == "DT_BOOL":
        return True
    if spec.dtype == "DT_STRING":
        return {"b64": _tiny_png_b64()} if _is_image(signature, spec) else "text"
    return 1  # the integer types


def _tensor(value, shape: tuple[int, ...]):
    shape = tuple(size if size >= 0 else 1 for size in shape)
    if math.prod(shape) > MAX_WRITTEN:
        return Filled(shape, value)
    return Filled(shape, value).expanded()


def _row_format(signature: SignatureSpec) -> bool:
    """Whether every input's first dimension is the batch (unknown, or 1): then a body of one instance fits."""
    return all(spec.shape and spec.shape[0] in (-1, 1) for spec in signature.inputs.values())


def _generated_body(signature: SignatureSpec) -> dict:
    values = {alias: _scalar(signature, spec) for alias, spec in signature.inputs.items()}
    body: dict = {} if signature.name == DEFAULT_SIGNATURE else {"signature_name": signature.name}
    if _row_format(signature):
        row = {alias: _tensor(values[alias], spec.shape[1:]) for alias, spec in signature.inputs.items()}  # type: ignore[index]
        body["instances"] = [next(iter(row.values())) if len(row) == 1 else row]
    else:
        columns = {alias: _tensor(values[alias], spec.shape or ()) for alias, spec in signature.inputs.items()}
        body["inputs"] = next(iter(columns.values())) if len(columns) == 1 else columns
    return body


def _sample_body(samples: Path, signature: str) -> dict | None:
    try:
        body = json.loads((samples / f"{signature}.json").read_text())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _sample_image(samples: Path) -> str | None:
    try:
        images = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    except OSError:
        return None
    for image in images:
        data = image.read_bytes()
        if len(data) <= MAX_SAMPLE_BYTES:
            return base64.b64encode(data).decode()
    return None


def example_request(signature: SignatureSpec, samples: Path) -> Example:
    """The example request for ``signature``, preferring the model's samples in ``samples`` (may not exist)."""
    verb = verb_of(signature)
    images = [alias for alias, spec in signature.inputs.items() if _is_image(signature, spec)]
    image_input = images[0] if verb == "predict" and len(signature.inputs) == 1 and images else None
    body = _sample_body(samples, signature.name)
    if body is not None:
        return Example(signature.name, verb, body, image_input)
    if verb != "predict":
        return Example(signature.name, verb, {"signature_name": signature.name, "examples": [{}]}, None, True)
    if image_input and (image := _sample_image(samples)):
        return Example(
            signature.name, verb, {"signature_name": signature.name, "instances": [{"b64": image}]}, image_input
        )
    return Example(signature.name, verb, _generated_body(signature), image_input)


def expanded(value):
    """``value`` with every :class:`Filled` written out: the body as sent."""
    if isinstance(value, Filled):
        return value.expanded()
    if isinstance(value, dict):
        return {key: expanded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expanded(item) for item in value]
    return value


def has_filled(value) -> bool:
    if isinstance(value, Filled):
        return True
    if isinstance(value, dict):
        return any(has_filled(item) for item in value.values())
    if isinstance(value, list):
        return any(has_filled(item) for item in value)
    return False


def compact_json(value) -> str:
    """JSON text of a body; a :class:`Filled` is written ``{"fill": shape, "value": v}`` for the page's JS."""

    def placeholder(item):
        if isinstance(item, Filled):
            return {"fill": list(item.shape), "value": item.value}
        raise TypeError(f"not JSON: {item!r}")

    return json.dumps(value, default=placeholder)


def python_expression(value) -> str:
    """A Python expression building the body (a Filled as ``[[0.5] * 3] * 224``): for a curl line too long to write."""
    if isinstance(value, Filled):
        text = repr(value.value)
        for size in reversed(value.shape):
            text = f"[{text}] * {size}"
        return text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: {python_expression(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(python_expression(item) for item in value) + "]"
    return repr(value)
