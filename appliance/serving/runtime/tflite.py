"""TensorFlow Lite models (``.tflite`` files) served through LiteRT's interpreter, with TF Serving's predict API.

Each TFLite signature is a predict signature of the model; a model converted without signatures gets one,
``serving_default``, whose aliases are its tensors' names. LiteRT (``ai-edge-litert``) rather than TensorFlow's
``tf.lite.Interpreter``: as fast (~5 µs a call on a small model), without the deprecation warning TF 2.21 prints
on each load, and kept current with new TFLite ops, for 60 MB installed.

    servable = load_tflite(Path("models/dense.tflite"))
    outputs = servable.predict("serving_default", {"x": np.zeros((2, 4), np.float32)})   # {"scores": ...}
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from ...errors import Code, FailedPrecondition, InvalidArgument, NotFound, ServingError
from ...logs import native_stderr_to_debug_log
from . import DEFAULT_SIGNATURE, PREDICT_METHOD, Servable, SignatureSpec, TensorSpec, predict_signature
from .inputs import dtype_text, output_aliases, shape_text

log = logging.getLogger(__name__)

# numpy dtype name -> TF DataType, for every type a TFLite tensor can have (string tensors read as "S" arrays).
_DATA_TYPES = {
    "float32": "DT_FLOAT",
    "float16": "DT_HALF",
    "float64": "DT_DOUBLE",
    "bfloat16": "DT_BFLOAT16",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "bool": "DT_BOOL",
    "bytes": "DT_STRING",
    "object": "DT_STRING",
    "complex64": "DT_COMPLEX64",
    "complex128": "DT_COMPLEX128",
}


Runner = Callable[..., dict[str, np.ndarray]]


def load_tflite(file: Path) -> TFLiteServable:
    """Load a ``.tflite`` file; raises ServingError naming the file when it cannot."""
    file = Path(file)
    if not file.is_file():
        raise NotFound(f"Could not find TensorFlow Lite model file: {file}")
    try:
        with native_stderr_to_debug_log(log, "litert: "):  # "INFO: Created TensorFlow Lite XNNPACK delegate"
            interpreter = Interpreter(model_path=str(file))
            interpreter.allocate_tensors()  # an op this LiteRT lacks fails here, not on the first request
    except ValueError as e:  # not a TFLite flatbuffer
        raise ServingError(
            f"Failed to load TensorFlow Lite model at {file}: {_first_line(e)}", Code.DATA_LOSS
        ) from None
    except RuntimeError as e:
        raise FailedPrecondition(f"Failed to load TensorFlow Lite model at {file}: {_first_line(e)}") from None
    return TFLiteServable(interpreter, file)


def _first_line(e: Exception) -> str:
    return str(e).strip().split("\n", 1)[0]


def _data_type(dtype) -> str:
    return _DATA_TYPES.get(np.dtype(dtype).name, "DT_INVALID")


def _tensor_spec(alias: str, details: Mapping) -> TensorSpec:
    shape = tuple(int(d) for d in details["shape_signature"])
    return TensorSpec(alias, _data_type(details["dtype"]), shape, details["name"])


def _fits(expected: Sequence[int], sent: Sequence[int]) -> bool:
    return len(expected) == len(sent) and all(e in (-1, s) for e, s in zip(expected, sent))


class _MainSubgraph:
    """Runs a model without SignatureDefs like a signature runner: by tensor name, resizing only when shapes change.

    Resizing makes the interpreter reallocate its tensors, so the shapes last set are kept
    and a run with the same shapes (the usual case) goes straight to invoke.
    """

    def __init__(self, interpreter: Interpreter):
        self._interpreter = interpreter
        self._inputs = {d["name"]: (d["index"], tuple(d["shape"])) for d in interpreter.get_input_details()}
        self._outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        interpreter = self._interpreter
        resized = False
        for name, value in inputs.items():
            index, shape = self._inputs[name]
            if value.shape != shape:
                interpreter.resize_tensor_input(index, value.shape)
                self._inputs[name] = (index, value.shape)
                resized = True
        if resized:
            interpreter.allocate_tensors()
        for name, value in inputs.items():
            interpreter.set_tensor(self._inputs[name][0], value)
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in self._outputs.items()}


class TFLiteServable(Servable):
    """One ``.tflite`` file in one LiteRT interpreter; every signature a predict signature.

    A signature whose first input dimension is -1 takes a request of any number of rows
    in one call (the interpreter resizes its input; LiteRT skips that when the shape is the
    one it already has); one fixed to a batch of 1 takes N rows as N calls, outputs stacked.
    """

    platform = "tensorflow_lite"

    def __init__(self, interpreter: Interpreter, file: Path):
        self._file = file
        self._interpreter: Interpreter | None = interpreter
        # An interpreter holds one set of tensors that each call resizes, fills, runs and reads: two calls at once
        # would overwrite each other's inputs, so calls (from several waitress threads) take turns. One interpreter
        # rather than a pool: its memory once, and a call of a small model lasts microseconds.
        self._lock = threading.Lock()
        self._runners: dict[str, Runner] = {}
        details: dict[str, tuple[Mapping[str, Mapping], Mapping[str, Mapping]]] = {}
        for key in interpreter.get_signature_list():
            runner = interpreter.get_signature_runner(key)
            self._runners[key] = runner
            details[key] = runner.get_input_details(), runner.get_output_details()
        if not details:
            self._runners[DEFAULT_SIGNATURE] = _MainSubgraph(interpreter)
            details[DEFAULT_SIGNATURE] = (
                {d["name"]: d for d in interpreter.get_input_details()},
                {d["name"]: d for d in interpreter.get_output_details()},
            )
        self.signatures = {key: self._signature(key, *io) for key, io in details.items()}
        # What each input must be: string tensors read as "S" arrays, but a request's strings come as objects.
        self._numpy_types = {
            (key, alias): np.dtype(object) if np.dtype(d["dtype"]).kind == "S" else np.dtype(d["dtype"])
            for key, (inputs, _) in details.items()
            for alias, d in inputs.items()
        }
        self._metadata = {name: _signature_def_json(signature) for name, signature in self.signatures.items()}

    @staticmethod
    def _signature(name: str, inputs: Mapping[str, Mapping], outputs: Mapping[str, Mapping]) -> SignatureSpec:
        return SignatureSpec(
            name=name,
            method_name=PREDICT_METHOD,
            inputs={alias: _tensor_spec(alias, inputs[alias]) for alias in sorted(inputs)},
            outputs={alias: _tensor_spec(alias, outputs[alias]) for alias in sorted(outputs)},
        )

    def predict(self, signature_name, inputs, output_filter=(), *, deadline=None):
        signature = predict_signature(self.signatures, signature_name)
        name = signature.name
        signature.input_check.check_names(inputs)
        outputs = output_aliases(signature, output_filter)
        feeds = self._typed(name, inputs)
        rows = _rows_of_fixed_batch(signature, feeds)
        with self._lock:
            if self._interpreter is None:
                raise FailedPrecondition(f"The TensorFlow Lite model {self._file} was unloaded")
            run = self._runners[name]
            try:
                if rows is None:
                    results = run(**feeds)
                else:  # a model fixed to a batch of 1, sent several rows
                    calls = [run(**{a: v[i : i + 1] for a, v in feeds.items()}) for i in range(rows)]
                    results = {alias: np.concatenate([c[alias] for c in calls]) for alias in outputs}
            except (ValueError, RuntimeError) as e:  # the interpreter's checks and its ops' own failures
                raise InvalidArgument(_first_line(e)) from None
        return {alias: results[alias] for alias in outputs}

    def _typed(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inputs as the signature's dtypes, C-ordered; a dtype that differs (but a string kind) is refused."""
        signature = self.signatures[signature_name]
        typed = {}
        for alias, value in inputs.items():
            value = np.asarray(value, order="C")
            expected = self._numpy_types[(signature_name, alias)]
            if value.dtype != expected and not (expected.kind == "O" and value.dtype.kind in "OS"):
                raise InvalidArgument(_shape_error(signature.inputs[alias], value, with_dtype=True))
            typed[alias] = value
        return typed

    def classify(self, signature_name, context, examples):
        raise self._not_predict(signature_name, "classification", "classify")

    def regress(self, signature_name, context, examples):
        raise self._not_predict(signature_name, "regression", "regress")

    def _not_predict(self, signature_name: str, kind: str, method: str) -> ServingError:
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            return InvalidArgument(f"No signature was found with the name: {name}")
        return InvalidArgument(
            f"Expected {kind} signature method_name to be tensorflow/serving/{method}. Was: {PREDICT_METHOD}. "
            f"A TensorFlow Lite model has predict signatures only: call :predict."
        )

    def signature_defs_json(self):
        return self._metadata

    def close(self):
        with self._lock:
            self._runners.clear()
            self._interpreter = None


def _signature_def_json(signature: SignatureSpec) -> dict:
    """The SignatureDef as proto3 JSON, as LocalTFServable writes it (field names kept, empty fields present)."""

    def tensor_info(spec: TensorSpec) -> dict:
        dims = [{"size": str(d), "name": ""} for d in spec.shape or ()]
        return {"name": spec.tensor_name, "dtype": spec.dtype, "tensor_shape": {"dim": dims, "unknown_rank": False}}

    return {
        "inputs": {alias: tensor_info(spec) for alias, spec in signature.inputs.items()},
        "outputs": {alias: tensor_info(spec) for alias, spec in signature.outputs.items()},
        "method_name": signature.method_name,
        "defaults": {},
    }


def _shape_error(spec: TensorSpec, value: np.ndarray, with_dtype: bool = False) -> str:
    sent = (f"{value.dtype.name} " if with_dtype else "") + shape_text(value.shape)
    return f'input "{spec.alias}" expects {dtype_text(spec.dtype)} {shape_text(spec.shape or ())}; got {sent}'


def _rows_of_fixed_batch(signature: SignatureSpec, feeds: Mapping[str, np.ndarray]) -> int | None:
    """None when every input fits its shape (one call); N when the model takes a batch of 1 and was sent N rows.

    Raises InvalidArgument naming the first input that fits neither way.
    """
    specs = signature.inputs
    misfits = [alias for alias, value in feeds.items() if not _fits(specs[alias].shape or (), value.shape)]
    if not misfits:
        return None
    for alias in misfits:
        value = feeds[alias]
        if not (value.ndim and value.shape[0] and _fits(specs[alias].shape or (), (1, *value.shape[1:]))):
            raise InvalidArgument(_shape_error(specs[alias], value))
    rows = {value.shape[0] if value.ndim else -1 for value in feeds.values()}
    if len(rows) != 1:  # every input is split into the same rows
        raise InvalidArgument(_shape_error(specs[misfits[0]], feeds[misfits[0]]))
    return rows.pop()
