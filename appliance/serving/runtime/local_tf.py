"""The local TensorFlow runtime: SavedModels run in TF sessions on this machine's CPU or GPU.

This is the only module that imports TensorFlow. Models load with the TF1 SavedModel loader, exactly as
TensorFlow Serving loads them, so TF1 exports (such as TF Serving's own ``half_plus_three``) and TF2 exports both
serve, every SignatureDef (``__saved_model_init_op`` included) is visible for metadata, and inputs are fed by the
tensor names their signature declares.

    runtime = LocalTFRuntime(device="auto")
    print(runtime.device.describe())          # "CPU (Intel(R) Xeon(R) ...)"
    servable = runtime.load(Path("models/digits/2"))
    LocalTFRuntime(saved_model_tags=("serve", "gpu"), session_config_file=Path("session.pbtxt"))  # TF Serving's flags
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import logging
import os
import platform
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ...errors import Code, FailedPrecondition, InvalidArgument, NotFound, ServingError
from ...logs import native_stderr_to_debug_log
from ..formats import Format, model_format
from . import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    REGRESS_METHOD,
    DeviceInfo,
    Features,
    Runtime,
    Servable,
    SignatureSpec,
    TensorSpec,
    predict_signature,
    signature_list,
)
from .inputs import InputCheck, output_aliases
from .keras_export import exported_saved_model
from .warmup import warm_up

log = logging.getLogger(__name__)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with native_stderr_to_debug_log(log, "tensorflow: "):
    import tensorflow as tf
from google.protobuf import json_format, text_format  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from tensorflow.core.example import example_pb2  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2, saved_model_pb2  # noqa: E402

tf.get_logger().setLevel(logging.ERROR)

SERVING_TAGS = (tf.saved_model.SERVING,)
TFLITE_IN_SAVED_MODEL = "model.tflite"  # what --prefer_tflite_model serves from a SavedModel folder
BFLOAT16 = "bfloat16"  # the one --mixed_precision mode
# Ops that can run for an unbounded time (graph loops, blocking queues and barriers): a graph holding one runs on
# TensorFlow's inter-op pool, where --rest_api_timeout_in_ms can cancel it.
_LOOP_OPS = frozenset(
    {
        "While",
        "StatelessWhile",
        "_While",
        "Enter",
        "RefEnter",
        "Exit",
        "RefExit",
        "NextIteration",
        "RefNextIteration",
        "LoopCond",
    }
)
CLASSIFY_INPUTS, CLASSIFY_CLASSES, CLASSIFY_SCORES = "inputs", "classes", "scores"
REGRESS_INPUTS, REGRESS_OUTPUTS = "inputs", "outputs"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def select_device(requested: str = "auto", gpu_memory_fraction: float = 0.0) -> DeviceInfo:
    """Choose the device for every session: a GPU when asked for or found, else the CPU.

    GPUs get memory growth, so the appliance takes GPU memory as it needs it
    instead of the whole card of a shared workstation; with a ``gpu_memory_fraction``
    the sessions take that fraction of each GPU instead (see :func:`session_config`).
    """
    if requested not in ("auto", "cpu", "gpu"):
        raise InvalidArgument(f"device must be auto, cpu or gpu, not {requested!r}")
    with native_stderr_to_debug_log(log, "tensorflow: "):
        gpus = tf.config.list_physical_devices("GPU")
    if requested == "gpu" and not gpus:
        raise FailedPrecondition(
            "--device gpu was requested but TensorFlow sees no GPU "
            "(a CUDA-enabled GPU, its driver and `pip install 'appliance[cuda]'` are needed)"
        )
    if requested == "cpu" or not gpus:
        if gpus:
            tf.config.set_visible_devices([], "GPU")
        return DeviceInfo(type="CPU", name=_cpu_name())
    growth = not gpu_memory_fraction
    if growth:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    details = tf.config.experimental.get_device_details(gpus[0])
    return DeviceInfo(type="GPU", name=details.get("device_name", gpus[0].name), memory_growth=growth, count=len(gpus))


def read_session_config(path: Path) -> config_pb2.ConfigProto:
    """A TensorFlow ``ConfigProto`` text proto (``--tensorflow_session_config_file``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidArgument(f"cannot read TensorFlow session config file {path}: {e.strerror}") from None
    try:
        return text_format.Parse(text, config_pb2.ConfigProto())
    except text_format.ParseError as e:
        raise InvalidArgument(f"TensorFlow session config file {path} is not a valid ConfigProto: {e}") from None


def session_config(
    device: DeviceInfo,
    base: config_pb2.ConfigProto | None = None,
    intra_op_threads: int = 0,
    inter_op_threads: int = 0,
    gpu_memory_fraction: float = 0.0,
    mixed_precision: str = "",
) -> config_pb2.ConfigProto:
    """The ConfigProto of every model session: ``base`` (a session config file's) with the flags given on top.

    A thread count or GPU memory fraction of 0 keeps the base's. On a GPU, sessions grow their memory as needed
    unless a fraction (the flag's, else the base's) reserves that share of each GPU.
    """
    config = config_pb2.ConfigProto()
    if base is not None:
        config.CopyFrom(base)
    config.allow_soft_placement = True
    if intra_op_threads:
        config.intra_op_parallelism_threads = intra_op_threads
    if inter_op_threads:
        config.inter_op_parallelism_threads = inter_op_threads
    if mixed_precision == BFLOAT16:
        rewrites = config.graph_options.rewrite_options
        rewrites.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    elif mixed_precision:  # TF Serving's words
        log.warning("%s auto mixed precision is not supported. Valid option: %s", mixed_precision, BFLOAT16)
    if device.type == "CPU":
        config.device_count["GPU"] = 0
    elif gpu_memory_fraction:
        config.gpu_options.per_process_gpu_memory_fraction = gpu_memory_fraction
        config.gpu_options.allow_growth = False
    elif not config.gpu_options.per_process_gpu_memory_fraction:
        config.gpu_options.allow_growth = True
    return config


def _tag_sets(path: Path) -> list[str]:
    """The MetaGraph tag-sets of the SavedModel at ``path``, as "[serve]", "[gpu, serve]"; [] if unreadable."""
    proto = saved_model_pb2.SavedModel()
    try:
        if (path / "saved_model.pb").is_file():
            proto.ParseFromString((path / "saved_model.pb").read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(encoding="utf-8"), proto)
    except (OSError, DecodeError, text_format.ParseError):
        return []
    return ["[" + ", ".join(sorted(m.meta_info_def.tags)) + "]" for m in proto.meta_graphs]


def _tensor_spec(alias: str, info) -> TensorSpec:
    shape = None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
    return TensorSpec(alias, types_pb2.DataType.Name(info.dtype), shape, info.name)


def _signature_spec(name: str, signature_def) -> SignatureSpec:
    return SignatureSpec(
        name=name,
        method_name=signature_def.method_name,
        # by alias: a protobuf map's order changes from process to process, and responses list outputs in this order
        inputs={a: _tensor_spec(a, i) for a, i in sorted(signature_def.inputs.items())},
        outputs={a: _tensor_spec(a, i) for a, i in sorted(signature_def.outputs.items())},
        defaults=frozenset(signature_def.defaults.keys()),
    )


def _node_name(tensor_or_input: str) -> str:
    """ "^name" (a control input), "name:1" or "name" -> "name"."""
    return tensor_or_input.lstrip("^").split(":", 1)[0]


def _may_run_unbounded(graph_def, feed_names: Sequence[str], fetch_names: Sequence[str]) -> bool:
    """Whether computing ``fetch_names`` from ``feed_names`` may loop or block without end.

    Looks at the ops the fetches depend on and at the functions those call (a
    TF2 export's library holds every function of the saved object, and one
    signature may loop where another does not).
    """
    nodes = {node.name: node for node in graph_def.node}
    library = {function.signature.name: function for function in graph_def.library.function}
    fed = {_node_name(name) for name in feed_names}
    pending = [nodes[_node_name(name)] for name in fetch_names if _node_name(name) in nodes]
    seen_nodes, seen_functions = {node.name for node in pending}, set()
    while pending:
        node = pending.pop()
        if node.op in _LOOP_OPS or "Queue" in node.op or "Barrier" in node.op:
            return True
        if node.name not in fed:
            for name in map(_node_name, node.input):
                if name not in seen_nodes and name in nodes:  # a function's inputs name its own nodes
                    seen_nodes.add(name)
                    pending.append(nodes[name])
        for value in node.attr.values():
            for called in (value.func.name, *(f.name for f in value.list.func)):
                if called in library and called not in seen_functions:
                    seen_functions.add(called)
                    pending.extend(library[called].node_def)
    return False


def _example_bytes(features: Features | None) -> bytes:
    example = example_pb2.Example()
    for name, (kind, values) in (features or {}).items():
        feature = example.features.feature[name]
        if kind == "int64":
            feature.int64_list.value.extend(values)
        elif kind == "float":
            feature.float_list.value.extend(values)
        elif kind == "bytes":
            feature.bytes_list.value.extend(values)
    return example.SerializeToString()


def _serialized_examples(context: Features | None, examples: Sequence[Features]) -> np.ndarray:
    # TF Serving prepends the serialized context to each example: protobuf merges the two.
    prefix = _example_bytes(context) if context else b""
    return np.array([prefix + _example_bytes(e) for e in examples], dtype=object)


# The graph node an error happened in, as TensorFlow appends it: " [[{{function_node f}}{{node MatMul}}]]".
_NODE_REFERENCE = re.compile(r"\s*\[\[(?:\{\{[^{}]*\}\})+\]\]")


def _first_line(message: str) -> str:
    """A TensorFlow message as a client gets it: its first line, without graph node names or stack traces."""
    line = next((line for line in message.strip().splitlines() if line.strip()), "")
    return _NODE_REFERENCE.sub("", line).strip()


def _as_serving_error(e: Exception) -> ServingError:
    if isinstance(e, ServingError):
        return e
    if isinstance(e, tf.errors.OpError):
        return ServingError(_first_line(e.message), Code(e.error_code))
    # session.run validates feeds in Python (shape, dtype) and raises ValueError/TypeError.
    return InvalidArgument(_first_line(str(e)))


def _shape_text(array: np.ndarray) -> str:
    return "[" + ",".join(str(d) for d in array.shape) + "]"


# The codes TensorFlow fails with on inputs it cannot take: a shape or type mismatch, an index out of range, a
# numpy array it cannot convert (INTERNAL "Unsupported object type int").
_INPUT_ERROR_CODES = frozenset({Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE, Code.INTERNAL, Code.UNKNOWN})

# Predict plans kept per servable: one per distinct (signature, input aliases, output filter) of valid requests.
_PREDICT_PLANS_KEPT = 256


@dataclasses.dataclass(frozen=True)
class _PredictPlan:
    """A valid predict request's call, worked out once: the request's inputs are fed first, then the defaults."""

    feed_names: tuple[str, ...]
    defaults: tuple[np.ndarray, ...]
    fetch_names: tuple[str, ...]
    outputs: tuple[str, ...]  # the aliases of the fetches, in order
    input_check: InputCheck


class LocalTFServable(Servable):
    """One SavedModel version loaded into its own graph and session.

    With ``caller_thread_when_bounded``, a one-row call whose ops cannot loop or
    block runs in the calling thread rather than being handed to TensorFlow's
    inter-op pool (``RunOptions.inter_op_thread_pool = -1``): for the small
    graphs a desktop serves, that hand-off and its wake-ups cost more than the
    model. The deadline cannot cancel a call running that way, hence the ops'
    condition. Calls of several rows (batches, whose hand-off is shared) stay on
    the pool: oneDNN keeps primitives per thread and shape, so batches of every
    size run in every worker thread would multiply that memory.

    With ``check_method_names`` (TF Serving's ``--enable_signature_method_name_check``),
    classify and regress run only signatures of their method_name, and predict
    only signatures of one of the three.
    """

    def __init__(
        self,
        session,
        meta_graph,
        run_timeout_ms: int = 0,
        caller_thread_when_bounded: bool = False,
        check_method_names: bool = False,
    ):
        self._session = session
        self._run_timeout_ms = run_timeout_ms
        self._caller_thread_when_bounded = caller_thread_when_bounded
        self._check_method_names = check_method_names
        self._graph_def = meta_graph.graph_def
        self._bounded_calls: dict[tuple, bool] = {}
        self._callables: dict[tuple, object] = {}
        self._callables_lock = threading.Lock()
        self._predict_plans: dict[tuple, _PredictPlan] = {}
        self._signature_defs = dict(meta_graph.signature_def)
        self.signatures = {n: _signature_spec(n, sd) for n, sd in self._signature_defs.items()}
        self._defaults = {
            n: {a: tf.make_ndarray(t) for a, t in sd.defaults.items()} for n, sd in self._signature_defs.items()
        }
        self._metadata = {
            n: json_format.MessageToDict(
                sd, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for n, sd in self._signature_defs.items()
        }

    def _callable(self, feed_names: tuple[str, ...], fetch_names: tuple[str, ...], in_caller_thread: bool):
        # Session::MakeCallable, as TF Serving's C++ runs a signature: it feeds tensors by name without
        # Python's static-shape check, and costs a fraction of session.run per call.
        key = (feed_names, fetch_names, in_caller_thread)
        found = self._callables.get(key)
        if found is None:
            with self._callables_lock:
                found = self._callables.get(key)
                if found is None:
                    options = config_pb2.CallableOptions(feed=feed_names, fetch=fetch_names)
                    options.run_options.timeout_in_ms = self._run_timeout_ms
                    if in_caller_thread:
                        options.run_options.inter_op_thread_pool = -1
                    found = self._callables[key] = self._session._make_callable_from_options(options)
        return found

    def _bounded(self, feed_names: tuple[str, ...], fetch_names: tuple[str, ...]) -> bool:
        """Whether computing the fetches from the feeds cannot loop or block (worked out once per pair)."""
        key = (feed_names, fetch_names)
        bounded = self._bounded_calls.get(key)
        if bounded is None:
            bounded = self._bounded_calls[key] = not _may_run_unbounded(self._graph_def, feed_names, fetch_names)
        return bounded

    def _in_caller_thread(
        self, feed_names: tuple[str, ...], fetch_names: tuple[str, ...], values: Sequence[np.ndarray]
    ) -> bool:
        return (
            self._caller_thread_when_bounded
            and all(v.ndim == 0 or len(v) <= 1 for v in values)
            and self._bounded(feed_names, fetch_names)
        )

    def runs_in_caller_thread(self, signature_name: str) -> bool:
        """Whether a one-row call of the signature (all inputs fed, all outputs fetched) runs in the calling thread."""
        signature = self.signatures[signature_name]
        return self._in_caller_thread(
            tuple(t.tensor_name for t in signature.inputs.values()),
            tuple(t.tensor_name for t in signature.outputs.values()),
            (),
        )

    def _run(self, feeds: Mapping[str, np.ndarray], fetch_names: Sequence[str]) -> list[np.ndarray]:
        return self._call(tuple(feeds), tuple(fetch_names), feeds.values())

    def _call(self, feed_names: tuple[str, ...], fetch_names: tuple[str, ...], feed_values) -> list[np.ndarray]:
        try:
            # asarray, not ascontiguousarray: that one turns a scalar (shape []) into shape [1]
            values = [np.asarray(v, order="C") for v in feed_values]
            run = self._callable(feed_names, fetch_names, self._in_caller_thread(feed_names, fetch_names, values))
            return run(*values)
        except tf.errors.DeadlineExceededError:
            raise ServingError(
                f"Deadline exceeded: the model ran longer than {self._run_timeout_ms} ms (--rest_api_timeout_in_ms)",
                Code.DEADLINE_EXCEEDED,
            ) from None
        except Exception as e:  # TF reports bad inputs as exceptions of several types
            raise _as_serving_error(e) from None

    def predict(self, signature_name, inputs, output_filter=(), *, deadline=None):
        key = (signature_name, tuple(inputs), tuple(output_filter))
        plan = self._predict_plans.get(key)
        if plan is None:
            plan = self._predict_plan(signature_name, inputs, output_filter)
            if len(self._predict_plans) < _PREDICT_PLANS_KEPT:
                self._predict_plans[key] = plan
        try:
            values = self._call(plan.feed_names, plan.fetch_names, [*map(inputs.__getitem__, key[1]), *plan.defaults])
        except ServingError as e:
            # Checked only now: TF Serving feeds whatever the graph can take, even off the signature's shape (its
            # own test models are called so), so the signature is the likely cause only once the graph refused.
            problem = plan.input_check.mismatch(inputs) if e.code in _INPUT_ERROR_CODES else None
            if problem is None:
                raise
            raise InvalidArgument(problem) from None
        return dict(zip(plan.outputs, map(np.asarray, values)))

    def _predict_plan(self, signature_name, inputs, output_filter) -> _PredictPlan:
        """How a predict request with these input and output aliases runs, once it is known to be valid."""
        signature = predict_signature(self.signatures, signature_name)
        if self._check_method_names and signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(
                f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, {CLASSIFY_METHOD}, "
                f"{REGRESS_METHOD}}}. Was: {signature.method_name}",
                Code.INTERNAL,
            )
        signature.input_check.check_names(inputs)
        defaults = {a: v for a, v in self._defaults[signature.name].items() if a not in inputs}
        outputs = output_aliases(signature, output_filter)
        return _PredictPlan(
            feed_names=tuple(signature.inputs[a].tensor_name for a in [*inputs, *defaults]),
            defaults=tuple(defaults.values()),
            fetch_names=tuple(signature.outputs[a].tensor_name for a in outputs),
            outputs=tuple(outputs),
            input_check=signature.input_check,
        )

    def _example_signature(self, signature_name: str, kind: str) -> SignatureSpec:
        name = signature_name or DEFAULT_SIGNATURE
        signature = self.signatures.get(name)
        if signature is None:
            raise InvalidArgument(
                f"No signature was found with the name: {name}. Signatures: {signature_list(self.signatures)}."
            )
        method = CLASSIFY_METHOD if kind == "classification" else REGRESS_METHOD
        if self._check_method_names and signature.method_name != method:
            raise InvalidArgument(f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}")
        if len(signature.inputs) != 1:
            raise InvalidArgument("Expected one input Tensor.")
        if CLASSIFY_INPUTS not in signature.inputs:
            raise InvalidArgument(f"No {kind} inputs found in SignatureDef: {name}")
        return signature

    def classify(self, signature_name, context, examples):
        signature = self._example_signature(signature_name, "classification")
        outputs = signature.outputs
        if len(outputs) not in (1, 2):
            raise InvalidArgument(f"Expected one or two output Tensors, found {len(outputs)}")
        if CLASSIFY_CLASSES not in outputs and CLASSIFY_SCORES not in outputs:
            raise InvalidArgument(
                f'Expected classification signature outputs to contain at least one of "{CLASSIFY_CLASSES}" '
                f'or "{CLASSIFY_SCORES}". Signature was: {signature.name}'
            )
        aliases = [a for a in (CLASSIFY_CLASSES, CLASSIFY_SCORES) if a in outputs]
        feeds = {signature.inputs[CLASSIFY_INPUTS].tensor_name: _serialized_examples(context, examples)}
        result = dict(zip(aliases, self._run(feeds, [outputs[a].tensor_name for a in aliases])))
        classes, scores = result.get(CLASSIFY_CLASSES), result.get(CLASSIFY_SCORES)
        for what, tensor, dtype in (("classes", classes, np.object_), ("scores", scores, np.float32)):
            if tensor is None:
                continue
            if tensor.ndim != 2:
                raise InvalidArgument(f"Expected Tensor shape: [batch_size num_classes] but got {_shape_text(tensor)}")
            if tensor.dtype != dtype:
                expected = "DT_STRING" if what == "classes" else "DT_FLOAT"
                raise InvalidArgument(f"Expected {what} Tensor of {expected}. Got: {tensor.dtype}")
            if tensor.shape[0] != len(examples):
                raise InvalidArgument(f"Expected {what} output batch size of {len(examples)}. Got: {tensor.shape[0]}")
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise InvalidArgument(
                f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}"
            )
        num_classes = (classes if classes is not None else scores).shape[1]
        return [
            [
                (
                    classes[i, c].decode("utf-8", "replace") if classes is not None else "",
                    float(scores[i, c]) if scores is not None else 0.0,
                )
                for c in range(num_classes)
            ]
            for i in range(len(examples))
        ]

    def regress(self, signature_name, context, examples):
        signature = self._example_signature(signature_name, "regression")
        if len(signature.outputs) != 1:
            raise InvalidArgument("Expected one output Tensor.")
        if REGRESS_OUTPUTS not in signature.outputs:
            raise InvalidArgument(f"No regression outputs found in SignatureDef: {signature.name}")
        feeds = {signature.inputs[REGRESS_INPUTS].tensor_name: _serialized_examples(context, examples)}
        (values,) = self._run(feeds, [signature.outputs[REGRESS_OUTPUTS].tensor_name])
        values = np.asarray(values)
        if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
            raise InvalidArgument(
                "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                f"but got {_shape_text(values)}"
            )
        if values.shape[0] != len(examples):
            raise InvalidArgument(
                f"Input batch size did not match output batch size: {len(examples)} vs. {values.shape[0]}"
            )
        if values.dtype != np.float32:
            raise InvalidArgument(f"Expected output Tensor of DT_FLOAT.  Got: {values.dtype}")
        return [float(v) for v in values.reshape(-1)]

    def signature_defs_json(self):
        return self._metadata

    def close(self):
        self._session.close()
        self._callables.clear()


class LocalTFRuntime(Runtime):
    """Loads SavedModels into TF sessions configured for the selected device.

    ``inter_op_threads`` as TensorFlow's ``inter_op_parallelism_threads``: a
    positive count sizes the inter-op pool every call runs on, and a negative
    one runs every call in the calling thread. With 0 (the default), on the CPU,
    one-row calls that cannot loop run in the calling thread (see :class:`LocalTFServable`)
    and the others on TensorFlow's own pool. The keyword arguments are TF Serving's
    flags of the same meaning (see ``docs/tfserving-flags.md``); :attr:`session_config`
    is what every session gets.
    """

    device: DeviceInfo

    def __init__(
        self,
        device: str = "auto",
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        run_timeout_ms: int = 0,
        warmup: bool = True,
        *,
        warmup_iterations: int = 1,
        saved_model_tags: Sequence[str] = SERVING_TAGS,
        session_config_file: Path | None = None,
        gpu_memory_fraction: float = 0.0,
        mixed_precision: str = "",
        check_method_names: bool = False,
        prefer_tflite: bool = False,
    ):
        base = read_session_config(session_config_file) if session_config_file else None
        fraction = gpu_memory_fraction or (base.gpu_options.per_process_gpu_memory_fraction if base else 0.0)
        self.device = select_device(device, fraction)
        self.session_config = session_config(
            self.device, base, intra_op_threads, inter_op_threads, gpu_memory_fraction, mixed_precision
        )
        inter_op_threads = self.session_config.inter_op_parallelism_threads
        self._caller_thread_when_bounded = inter_op_threads == 0 and self.device.type == "CPU"
        self._run_timeout_ms = run_timeout_ms  # 0: no limit
        self._warmup = warmup
        self._warmup_iterations = warmup_iterations
        self._tags = list(saved_model_tags)
        self._check_method_names = check_method_names
        self._prefer_tflite = prefer_tflite
        if self.device.type == "GPU" and fraction:
            # Sessions made now create the GPU devices: their memory is reserved before anything else (a Keras
            # file's export runs eagerly) can set the card up otherwise.
            tf.compat.v1.Session(config=self.session_config).close()
            log.info("GPU memory: the models may take %.0f%% of each GPU", fraction * 100)
        elif gpu_memory_fraction:
            log.info("--per_process_gpu_memory_fraction has no effect: the models run on the CPU")

    def reclaim_memory(self) -> None:
        """Free closed sessions' graphs now and hand the heap's free pages back to the OS (glibc).

        A graph is a web of reference cycles that only a full garbage collection
        frees, and traffic can put that off for long: without this, repeated
        reloads keep growing the process's memory; with it, it levels off.
        """
        gc.collect()
        if sys.platform == "linux":
            with contextlib.suppress(OSError, AttributeError):  # not glibc (e.g. musl): nothing to give back this way
                ctypes.CDLL(None).malloc_trim(0)

    def load(self, path: Path) -> Servable:
        """Load the model at ``path``: a SavedModel folder, a version folder holding a model file, or the file."""
        path = Path(path)
        kind, file = model_format(path)
        if self._prefer_tflite and kind is Format.SAVED_MODEL and (path / TFLITE_IN_SAVED_MODEL).is_file():
            kind, file = Format.TFLITE, path / TFLITE_IN_SAVED_MODEL
        servable: Servable
        if kind is Format.TFLITE:
            from .tflite import load_tflite  # only TFLite models need it (LiteRT)

            servable = load_tflite(file)
        else:
            servable = self._load_saved_model(exported_saved_model(file) if kind is Format.KERAS else file)
        if self._warmup:
            try:
                warm_up(servable, path, self._warmup_iterations)  # a model file's folder has none: synthetic
            except BaseException:
                servable.close()
                raise
        return servable

    def _load_saved_model(self, path: Path) -> LocalTFServable:
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=self.session_config)
        try:
            with graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(session, self._tags, str(path))
        except Exception as e:  # a corrupt or incompatible SavedModel fails in many ways
            session.close()
            if isinstance(e, tf.errors.OpError):  # e.g. restoring a cut-short checkpoint: say which SavedModel
                error = _as_serving_error(e)
                raise ServingError(f"Failed to load SavedModel at {path}: {error.message}", error.code) from None
            if isinstance(e, RuntimeError) and "could not be found in SavedModel" in str(e):
                raise self._no_meta_graph(path) from None
            raise ServingError(
                f"Failed to load SavedModel at {path}: {type(e).__name__}: {e}", Code.DATA_LOSS
            ) from None
        return LocalTFServable(
            session, meta_graph, self._run_timeout_ms, self._caller_thread_when_bounded, self._check_method_names
        )

    def _no_meta_graph(self, path: Path) -> NotFound:
        """TF Serving's error for a SavedModel without the --saved_model_tags tag-set, and the tag-sets it has."""
        has = ", ".join(_tag_sets(path)) or "none readable"
        return NotFound(
            f"Failed to load SavedModel at {path}: Could not find meta graph def matching supplied tags: "
            f"{{ {' '.join(self._tags)} }}. To inspect available tag-sets in the SavedModel, please use the "
            f"SavedModel CLI: `saved_model_cli`. Its tag-sets: {has} (see --saved_model_tags)"
        )
