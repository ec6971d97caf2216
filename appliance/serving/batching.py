"""Adaptive batching: concurrent predict requests on one signature merged into one call, as TF Serving does.

TF Serving's ``--enable_batching`` and ``--batching_parameters_file`` (a text
``BatchingParameters`` proto) are read unchanged, as is a version's own
``batching_params.pbtxt``. Only signatures whose inputs and outputs all have an
unknown first (batch) dimension are batched; :class:`SignatureBatcher` says how.

    policy = BatchingPolicy(enabled=True, parameters=read_batching_parameters(Path("batching.config")))
    servable = policy.wrap(servable, version_path, "digits", 2, observer)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from queue import Empty, SimpleQueue

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from ..errors import Code, InvalidArgument, ServingError, Unavailable
from .observer import ServingObserver
from .runtime import DEFAULT_SIGNATURE, Servable, SignatureSpec

PER_MODEL_FILE = "batching_params.pbtxt"
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters, with its defaults for fields a file leaves out."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self):
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise InvalidArgument("max_batch_size, num_batch_threads and max_enqueued_batches must be positive")
        if self.batch_timeout_micros < 0:
            raise InvalidArgument("batch_timeout_micros must not be negative")
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[0] < 1:
                raise InvalidArgument("allowed_batch_sizes entries must be positive and in increasing order")
            if sizes[-1] != self.max_batch_size:
                raise InvalidArgument("final entry in allowed_batch_sizes must equal max_batch_size")


def _batching_parameters_message():
    """A message class for tensorflow.serving.BatchingParameters (the pip package ships no module for it)."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="appliance/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    wrapped = [
        ("max_batch_size", 1, "Int64Value"),
        ("batch_timeout_micros", 2, "Int64Value"),
        ("max_enqueued_batches", 3, "Int64Value"),
        ("num_batch_threads", 4, "Int64Value"),
        ("thread_pool_name", 5, "StringValue"),
        ("enable_large_batch_splitting", 8, "BoolValue"),
        ("max_execution_batch_size", 9, "Int64Value"),
    ]
    for name, number, kind in wrapped:
        message.field.add(
            name=name,
            number=number,
            type=field.TYPE_MESSAGE,
            label=field.LABEL_OPTIONAL,
            type_name=f".google.protobuf.{kind}",
        )
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


_BatchingParametersProto = _batching_parameters_message()


def parse_batching_parameters(text: str, source: str = "batching parameters") -> BatchingParameters:
    """A BatchingParameters text proto; fields it leaves out keep TF Serving's defaults."""
    try:
        proto = text_format.Parse(text, _BatchingParametersProto())
    except text_format.ParseError as e:
        raise InvalidArgument(f"{source} is not a valid BatchingParameters text proto: {e}") from None
    values = {
        name: getattr(proto, name).value
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
        if proto.HasField(name)
    }
    try:
        return BatchingParameters(
            **values,
            allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
            pad_variable_length_inputs=proto.pad_variable_length_inputs,
        )
    except InvalidArgument as e:
        raise InvalidArgument(f"{source}: {e.message}") from None


def read_batching_parameters(path: Path) -> BatchingParameters:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidArgument(f"cannot read batching parameters file {path}: {e.strerror}") from None
    return parse_batching_parameters(text, str(path))


@dataclasses.dataclass(frozen=True)
class BatchingPolicy:
    """Which versions are batched, and how.

    ``enabled`` True batches every version (with its own ``batching_params.pbtxt``
    when it has one, else ``parameters``); False none; None only the versions
    that ship their own ``batching_params.pbtxt`` (the bundled models do). Without
    ``per_model`` (TF Serving's ``--enable_per_model_batching_parameters=false``),
    a version's own file is ignored.
    """

    enabled: bool | None = None
    parameters: BatchingParameters = BatchingParameters()
    wait_seconds: float | None = None  # how long a request may wait in a queue (DEADLINE_EXCEEDED after)
    per_model: bool = True

    def parameters_for(self, version_path: Path) -> BatchingParameters | None:
        if self.enabled is False:
            return None
        own = Path(version_path) / PER_MODEL_FILE
        if self.per_model and own.is_file():
            return read_batching_parameters(own)
        return self.parameters if self.enabled else None

    def wrap(
        self, servable: Servable, version_path: Path, name: str, version: int, observer: ServingObserver
    ) -> Servable:
        """``servable`` itself, or wrapped in a :class:`BatchingServable` when this version is batched."""
        parameters = self.parameters_for(version_path)
        if parameters is None or not any(map(is_batchable, servable.signatures.values())):
            return servable
        return BatchingServable(
            servable,
            parameters,
            lambda signature, requests, rows: observer.batch_run(name, version, signature, requests, rows),
            self.wait_seconds,
        )


def is_batchable(signature: SignatureSpec) -> bool:
    """Whether every input and output of ``signature`` has an unknown first dimension (the batch)."""
    tensors = [*signature.inputs.values(), *signature.outputs.values()]
    return bool(signature.inputs) and all(t.shape is not None and t.shape[:1] == (-1,) for t in tensors)


class _Task:
    """One request waiting in (or taken from) a signature's queue."""

    __slots__ = ("_signals", "done", "error", "inputs", "key", "outputs", "rows", "runner")

    def __init__(self, inputs: Mapping[str, np.ndarray], rows: int, key: tuple):
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.outputs: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.runner = False  # its thread holds one of the signature's num_batch_threads slots
        # Counted, unlike an Event's flag: made a runner, then finished in another runner's batch, is two wake-ups.
        self._signals: SimpleQueue[None] = SimpleQueue()

    def signal(self) -> None:
        """Wake the request's thread: it is done, or was made a runner (set before this is called)."""
        self._signals.put(None)

    def wait(self, seconds: float | None = None) -> bool:
        """Wait for a signal; False when ``seconds`` passed without one."""
        try:
            self._signals.get(timeout=seconds)
        except Empty:
            return False
        return True

    def finish(self, outputs=None, error=None) -> None:
        self.outputs, self.error, self.done = outputs, error, True
        self.signal()

    def result(self) -> dict[str, np.ndarray]:
        if self.error is not None:
            raise self.error
        return self.outputs  # type: ignore[return-value]  # finish() sets outputs whenever error is None


class SignatureBatcher:
    """The queue of one signature: merges the requests waiting in it into batched calls of ``run``.

    Dispatch is greedy and needs no thread of its own. The request that finds the
    signature idle runs at once, so a lone client pays nothing for batching;
    requests arriving while a call runs queue up, and when a caller is free it
    runs everything queued as one batch (up to ``max_batch_size`` rows, or after
    waiting ``batch_timeout_micros`` for a fuller one when that is set). At most
    ``num_batch_threads`` callers run batches of one signature at once; the rest
    wait, and one of them takes over when a runner leaves.

    Requests that could not share a batch (more rows than ``max_batch_size``,
    inputs that disagree on their batch size) run alone. One request's failure
    never fails its neighbours: when a merged call fails, each request of the
    batch runs again on its own and gets its own answer.
    """

    def __init__(
        self,
        run: Callable[[Mapping[str, np.ndarray], Sequence[str]], dict],
        parameters: BatchingParameters,
        on_batch: Callable[[int, int], None],
        wait_seconds: float | None = None,
    ):
        self._run = run
        self._parameters = parameters
        self._on_batch = on_batch
        self._wait_seconds = wait_seconds  # how long a request may wait in the queue; None: no limit
        self._queue_limit = parameters.max_enqueued_batches * parameters.max_batch_size
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: deque[_Task] = deque()
        self._queued_rows = 0
        self._runners = 0

    def predict(
        self, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str], deadline: float | None = None
    ) -> dict[str, np.ndarray]:
        """The request's outputs; it waits in the queue until ``deadline`` (:func:`time.monotonic`) at most."""
        rows = _batch_rows(inputs)
        if rows is None or rows > self._parameters.max_batch_size:
            return self._run(inputs, output_filter)
        with self._lock:  # idle, and no timeout to wait for a fuller batch: run now, queueing nothing
            idle = (
                not self._queue
                and self._runners < self._parameters.num_batch_threads
                and not self._parameters.batch_timeout_micros
            )
            if idle:
                self._runners += 1
        if idle:
            try:
                outputs = self._run(inputs, output_filter)
            finally:
                self._leave()
            self._on_batch(1, rows)
            return outputs
        task = _Task(inputs, rows, self._key(inputs, output_filter))
        with self._lock:
            if self._queued_rows + rows > self._queue_limit:
                raise Unavailable(QUEUE_FULL)
            self._queue.append(task)
            self._queued_rows += rows
            if self._runners < self._parameters.num_batch_threads:
                self._runners += 1
                task.runner = True
            if self._parameters.batch_timeout_micros:
                self._arrived.notify_all()  # a runner may be waiting for its batch to fill
        if not task.runner:
            self._await_turn(task, deadline)
            if not task.runner:
                return task.result()
        self._run_batches_until_done(task)
        return task.result()

    def _key(self, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str]) -> tuple:
        """Requests with equal keys can share a batch: same inputs, dtypes, row shapes and output filter."""
        shapes: tuple[tuple[str, str, object], ...]
        if self._parameters.pad_variable_length_inputs:
            shapes = tuple((alias, a.dtype.str, a.ndim) for alias, a in inputs.items())
        else:
            shapes = tuple((alias, a.dtype.str, a.shape[1:]) for alias, a in inputs.items())
        return tuple(output_filter), shapes

    def _await_turn(self, task: _Task, deadline: float | None) -> None:
        """Wait until ``task`` is done or its thread was made a runner (``task.runner``)."""
        wait = self._wait_seconds
        if deadline is not None:
            left = max(deadline - time.monotonic(), 0.0)
            wait = left if wait is None else min(wait, left)
        if not task.wait(wait):
            with self._lock:
                if not task.runner and task in self._queue:
                    self._queue.remove(task)
                    self._queued_rows -= task.rows
                    raise ServingError(
                        f"Deadline exceeded: the request waited {wait:.3g} s for its batch",
                        Code.DEADLINE_EXCEEDED,
                    )
            task.wait()  # taken into a running batch (whose call has its own deadline), or made a runner

    def _run_batches_until_done(self, own: _Task) -> None:
        try:
            while not own.done:
                batch = self._take_batch()
                if batch:
                    self._run_batch(batch)
                else:
                    own.wait()  # another runner took it and is running it
        finally:
            self._leave()

    def _leave(self) -> None:
        """A runner is done: its slot goes to the oldest queued request that holds none, if one waits."""
        with self._lock:
            successor = next((task for task in self._queue if not task.runner), None)
            if successor is None:
                self._runners -= 1
            else:
                successor.runner = True
                successor.signal()

    def _take_batch(self) -> list[_Task]:
        """The oldest request and those queued that can join it, up to ``max_batch_size`` rows."""
        limit = self._parameters.max_batch_size
        with self._lock:
            if not self._queue:
                return []
            timeout = self._parameters.batch_timeout_micros / 1e6
            if timeout:
                closes = time.monotonic() + timeout
                while (
                    self._queue
                    and self._rows_like(self._queue[0].key) < limit
                    and (left := closes - time.monotonic()) > 0
                ):
                    self._arrived.wait(left)
                if not self._queue:  # another runner took it while this one waited
                    return []
            key, rows = self._queue[0].key, 0
            batch: list[_Task] = []
            rest: deque[_Task] = deque()
            for task in self._queue:
                if task.key == key and rows + task.rows <= limit:
                    batch.append(task)
                    rows += task.rows
                else:
                    rest.append(task)
            self._queue = rest
            self._queued_rows -= rows
            return batch

    def _rows_like(self, key: tuple) -> int:
        return sum(t.rows for t in self._queue if t.key == key)

    def _run_batch(self, batch: list[_Task]) -> None:
        try:
            if len(batch) == 1:
                self._run_alone(batch[0])
                return
            merged, rows = self._merge(batch)
            try:
                outputs = self._run(merged, batch[0].key[0])
                parts = _split(outputs, [t.rows for t in batch], rows)
            except ServingError:
                for task in batch:  # find out whose request failed: each gets its own answer
                    self._run_alone(task)
                return
            self._on_batch(len(batch), rows)
            for task, part in zip(batch, parts):
                task.finish(outputs=part)
        except BaseException as e:  # never leave a waiting request hanging
            for task in batch:
                if not task.done:
                    task.finish(error=e)
            if not isinstance(e, Exception):
                raise

    def _run_alone(self, task: _Task) -> None:
        try:
            outputs = self._run(task.inputs, task.key[0])
        except Exception as e:
            task.finish(error=e)
        else:
            self._on_batch(1, task.rows)
            task.finish(outputs=outputs)

    def _merge(self, batch: list[_Task]) -> tuple[dict[str, np.ndarray], int]:
        """The batch's inputs concatenated (padded as the parameters say), and its row count."""
        rows = sum(t.rows for t in batch)
        target = next((b for b in self._parameters.allowed_batch_sizes if b >= rows), rows)
        merged = {}
        for alias in batch[0].inputs:
            arrays = [t.inputs[alias] for t in batch]
            if self._parameters.pad_variable_length_inputs:
                arrays = _pad_to_common_shape(arrays)
            if target > rows:  # allowed_batch_sizes: repeat the first row up to the next allowed size
                arrays.append(np.repeat(arrays[0][:1], target - rows, axis=0))
            merged[alias] = np.concatenate(arrays)
        return merged, target


def _batch_rows(inputs: Mapping[str, np.ndarray]) -> int | None:
    """The request's batch size, or None when it cannot be batched (scalars, disagreeing or empty batches)."""
    sizes = {a.shape[0] if a.ndim else None for a in inputs.values()}
    if len(sizes) != 1:
        return None
    (rows,) = sizes
    return rows or None


def _pad_to_common_shape(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Pad every array to the largest size in each non-batch dimension, with its own first element (TF Serving)."""
    shape = np.max([a.shape[1:] for a in arrays], axis=0)
    padded = []
    for a in arrays:
        widths = [(0, 0)] + [(0, int(m - d)) for m, d in zip(shape, a.shape[1:])]
        if any(w for _, w in widths) and a.size:
            a = np.pad(a, widths, constant_values=a.flat[0])
        padded.append(a)
    return padded


def _split(outputs: dict[str, np.ndarray], sizes: list[int], rows: int) -> list[dict[str, np.ndarray]]:
    for alias, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != rows:
            raise ServingError(f"Batched output tensor {alias} has {value.shape[:1]} rows, not {rows}", Code.INTERNAL)
    offsets = np.cumsum([0, *sizes])
    return [{alias: value[start:end] for alias, value in outputs.items()} for start, end in itertools.pairwise(offsets)]


class BatchingServable(Servable):
    """A servable whose batchable signatures run through a :class:`SignatureBatcher` each."""

    def __init__(
        self,
        servable: Servable,
        parameters: BatchingParameters,
        on_batch: Callable[[str, int, int], None] = lambda signature, requests, rows: None,
        wait_seconds: float | None = None,
    ):
        self._servable = servable
        self.parameters = parameters
        self.signatures = servable.signatures
        self.platform = servable.platform
        self._batchers = {
            name: SignatureBatcher(
                functools.partial(servable.predict, name), parameters, functools.partial(on_batch, name), wait_seconds
            )
            for name, signature in servable.signatures.items()
            if is_batchable(signature)
        }

    def predict(self, signature_name, inputs, output_filter=(), *, deadline=None):
        name = signature_name or DEFAULT_SIGNATURE
        batcher = self._batchers.get(name)
        # A request off the signature (names, dtype, shape) runs alone, before it could join a batch: it gets
        # its own answer (an error naming the input, or what the graph makes of it) and costs no one a retry.
        if batcher is None or not self.signatures[name].input_check.fits(inputs):
            return self._servable.predict(signature_name, inputs, output_filter)
        return batcher.predict(inputs, tuple(output_filter), deadline)

    def classify(self, signature_name, context, examples):
        return self._servable.classify(signature_name, context, examples)

    def regress(self, signature_name, context, examples):
        return self._servable.regress(signature_name, context, examples)

    def signature_defs_json(self):
        return self._servable.signature_defs_json()

    def close(self):
        self._servable.close()
