"""The local request log: a sampled share of each model's answered requests, as TF Serving ``PredictionLog`` records.

The request thread only samples and queues the raw pieces (numpy inputs and outputs, or the examples and their
answers): one writer thread builds each ``PredictionLog`` (request, response, model spec with version and
signature, timestamp) and appends it to TFRecord files (the format of ``tf_serving_warmup_requests``) under
the per-user data folder, one folder per model, owner-only. Files rotate by size; each model's files are
capped by total size and age. A full queue drops the record, never the request, and counts the drop.

    log = RequestLog()                      # records under paths.request_log_dir()
    log.start()
    log.set_sampling("digits", 0.1)         # about one request in ten; 0 or None turns it off
    log.record_predict("digits", 2, "serving_default", inputs, outputs)   # cheap; no-op when off
    for entry in read_records(log.files("digits")):
        ...                                 # PredictionLog protos, oldest first
    log.delete("digits")                    # every recorded request of the model, gone
    log.stop()                              # writes what is queued, closes the files
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import queue
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from .runtime import Features
from .runtime.warmup import read_prediction_logs

log = logging.getLogger(__name__)

SUFFIX = ".tfrecord"
# A TFRecord's framing around each record: length (8), its CRC (4), the data's CRC (4).
_FRAMING = 16
BATCH_SECONDS = 0.05  # how long the writer sleeps between writing what was queued
SWEEP_SECONDS = 3600  # how often every model's files past the age limit are looked for
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much a model's log may hold.

    64 MiB per model holds ~20 000 requests of 784 floats (the bundled digits model), far more than a replay
    or a warm-up file needs (TF Serving reads at most 1 000 warm-up records), and sixteen models still fit in
    1 GiB. Files of 4 MiB make rotation drop 1/16 of the log at a time. A week covers a working week's
    traffic while not keeping what a person sent long ago.
    """

    max_bytes: int = 64 << 20  # per model, all its files
    file_bytes: int = 4 << 20  # a file is closed and a new one started past this
    max_age_s: float = 7 * 24 * 3600
    queue_records: int = 1000  # requests waiting for the writer
    queue_bytes: int = 64 << 20  # their tensors' bytes, so that large inputs cannot fill memory


@dataclasses.dataclass
class _Pending:
    kind: str  # "predict" | "classify" | "regress"
    model: str
    version: int
    signature_name: str
    request: Any  # predict: the inputs; classify/regress: (context, examples)
    response: Any  # predict: the outputs; classify: rows of (label, score); regress: values
    timestamp: float
    size: int


@dataclasses.dataclass
class _OpenFile:
    path: Path
    writer: Any  # tf.io.TFRecordWriter
    size: int = 0


@dataclasses.dataclass
class _ModelFiles:
    """A recorded model's files, known to the writer without looking at the disk for each record."""

    closed: list[tuple[Path, int]]  # (path, size), oldest first
    current: _OpenFile | None = None


def model_dir(root: Path, model: str) -> Path:
    """The folder of ``model``'s records under ``root`` (a name unsafe as a file name is percent-encoded)."""
    safe = model if _SAFE_NAME.fullmatch(model) else urllib.parse.quote(model, safe="")
    return root / safe


def read_records(files: Iterable[Path]) -> Iterator:
    """The ``PredictionLog`` protos in ``files``, in order; a file's torn or corrupt tail (a crash mid-write) ends
    that file's records and is skipped, and a file rotated away meanwhile is skipped."""
    import tensorflow as tf

    for path in files:
        try:
            yield from read_prediction_logs(path, skip_torn_tail=True)
        except tf.errors.NotFoundError:
            continue


class RequestLog:
    """A per-appliance recorder of sampled requests; thread-safe, one writer thread."""

    def __init__(
        self,
        root: Path | None = None,
        limits: Limits = Limits(),
        flush_interval: float = 1.0,
        rng: random.Random | None = None,
    ):
        self.root = root if root is not None else paths.request_log_dir()
        self.limits = limits
        self._flush_interval = flush_interval
        self._random = (rng or random.Random()).random
        self._rates: dict[str, float] = {}
        self._queue: queue.Queue = queue.Queue()
        self._queued = 0  # records waiting
        self._queued_bytes = 0
        self._count_lock = threading.Lock()
        self._files_lock = threading.Lock()  # the open files and the folders on disk
        self._models: dict[str, _ModelFiles] = {}
        self._deleted_at: dict[str, float] = {}  # records answered before a delete are not written after it
        self._sequence = 0
        self._thread: threading.Thread | None = None
        self.written: dict[str, int] = {}
        self.dropped: dict[str, int] = {}

    # --- configuration -------------------------------------------------------------------------------------------

    def set_sampling(self, model: str, rate: float | None) -> None:
        """Record about ``rate`` (0..1] of ``model``'s answered requests; 0 or None turns its recording off."""
        if rate is not None and not 0 <= rate <= 1:
            raise ValueError(f"sampling rate {rate} is outside [0, 1]")
        if rate:
            self._rates[model] = rate
        else:
            self._rates.pop(model, None)

    def replace_sampling(self, rates: Mapping[str, float | None]) -> None:
        """Record the models of ``rates`` at their rates, and no other."""
        for model, rate in rates.items():
            self.set_sampling(model, rate)  # checks every rate
        for model in set(self._rates) - set(rates):
            self._rates.pop(model, None)

    def sampling(self) -> dict[str, float]:
        """The sampling rate of each model that is recorded."""
        return dict(self._rates)

    def recording(self, model: str) -> bool:
        return model in self._rates

    # --- the request thread's side -------------------------------------------------------------------------------

    def record_predict(
        self,
        model: str,
        version: int,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
    ) -> None:
        """Queue a Predict request and its answer, when ``model`` is recorded and sampled."""
        if self._sampled(model):
            size = sum(_nbytes(a) for a in inputs.values()) + sum(_nbytes(a) for a in outputs.values())
            self._enqueue(_Pending("predict", model, version, signature_name, inputs, outputs, time.time(), size))

    def record_examples(
        self,
        kind: str,
        model: str,
        version: int,
        signature_name: str,
        context: Features | None,
        examples: Sequence[Features],
        answer: Sequence,
    ) -> None:
        """Queue a Classify (``kind`` "classify", answer: rows of (label, score)) or Regress ("regress", answer:
        values) request, when ``model`` is recorded and sampled."""
        if self._sampled(model):
            size = 64 * len(examples) * (len(examples[0]) if examples else 0)  # a rough bound is enough here
            pending = _Pending(kind, model, version, signature_name, (context, examples), answer, time.time(), size)
            self._enqueue(pending)

    def _sampled(self, model: str) -> bool:
        rate = self._rates.get(model)
        return rate is not None and (rate >= 1 or self._random() < rate)

    def _enqueue(self, pending: _Pending) -> None:
        with self._count_lock:
            full = (
                self._queued >= self.limits.queue_records
                or self._queued_bytes + pending.size > self.limits.queue_bytes
                or self._thread is None
            )
            if full:
                self.dropped[pending.model] = self.dropped.get(pending.model, 0) + 1
                return
            self._queued += 1
            self._queued_bytes += pending.size
        self._queue.put(pending)

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_forever, name="request-log", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Write what is queued, close the files, end the writer thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def flush(self, timeout: float = 30) -> bool:
        """Wait until every record queued so far is written and flushed to the OS; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    # --- the files -----------------------------------------------------------------------------------------------

    def files(self, model: str) -> list[Path]:
        """``model``'s record files, oldest first."""
        folder = model_dir(self.root, model)
        try:
            return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []

    def file_sizes(self, model: str) -> list[int]:
        """The sizes of ``model``'s record files, oldest first."""
        return [_size(p) for p in self.files(model)]

    def bytes_on_disk(self, model: str | None = None) -> int:
        """The size of ``model``'s record files (of every model's when None)."""
        if model is not None:
            return sum(self.file_sizes(model))
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return 0
        return sum(_size(p) for folder in folders for p in folder.iterdir() if p.name.endswith(SUFFIX))

    def delete(self, model: str) -> int:
        """Remove every recorded request of ``model``; returns how many files went."""
        with self._files_lock:
            self._deleted_at[model] = time.time()
            self._close(model)
            removed = 0
            for path in self.files(model):
                path.unlink(missing_ok=True)
                removed += 1
            return removed

    # --- the writer thread ---------------------------------------------------------------------------------------

    def _write_forever(self) -> None:
        next_flush = time.monotonic() + self._flush_interval
        next_sweep = 0.0
        stopping = False
        while not stopping:
            if time.monotonic() >= next_sweep:
                self._remove_expired()
                next_sweep = time.monotonic() + SWEEP_SECONDS
            # One wake-up per batch of requests rather than per request: each wake-up takes the GIL from the
            # request threads (measured: +0.2 ms p50 at c=1 when woken per request, see NOTES-i20.md).
            time.sleep(BATCH_SECONDS)
            while not stopping:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                elif isinstance(item, threading.Event):
                    self._flush_all()
                    item.set()
                else:
                    self._write_pending(item)
            if stopping or time.monotonic() >= next_flush:
                self._flush_all()
                next_flush = time.monotonic() + self._flush_interval
        with self._files_lock:
            for model in list(self._models):
                self._close(model)

    def _write_pending(self, pending: _Pending) -> None:
        with self._count_lock:
            self._queued -= 1
            self._queued_bytes -= pending.size
        try:
            self._write(pending)
        except Exception:  # a full disk, an unencodable tensor: lose the record, keep the writer
            log.exception("could not write a request of model %s to the request log", pending.model)

    def _write(self, pending: _Pending) -> None:
        data = _prediction_log(pending).SerializeToString()
        size = len(data) + _FRAMING
        model = pending.model
        with self._files_lock:
            if pending.timestamp <= self._deleted_at.get(model, 0.0):
                return
            files = self._models.get(model)
            if files is None:  # its files of earlier runs count towards its cap
                files = self._models[model] = _ModelFiles([(path, _size(path)) for path in self.files(model)])
            current = files.current
            if current is None or (current.size and current.size + size > self._file_bytes()):
                if current is not None:
                    current.writer.close()
                    files.closed.append((current.path, current.size))
                files.current = current = self._new_file(model)
                self._enforce_caps(files)
            current.writer.write(data)
            current.size += size
            self.written[model] = self.written.get(model, 0) + 1

    def _file_bytes(self) -> int:
        return min(self.limits.file_bytes, max(self.limits.max_bytes // 4, 1))

    def _new_file(self, model: str) -> _OpenFile:
        import tensorflow as tf

        paths.ensure_dir(self.root)  # first, so that it too is owner-only (mkdir's parents are not)
        folder = paths.ensure_dir(model_dir(self.root, model))
        self._sequence += 1
        # Names sort in the order written: the time in microseconds, then a counter within this process.
        path = folder / f"requests-{time.time_ns() // 1000:017d}-{self._sequence:06d}{SUFFIX}"
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # owner-only before the first byte
        return _OpenFile(path, tf.io.TFRecordWriter(str(path)))

    def _close(self, model: str) -> None:
        files = self._models.pop(model, None)
        if files is not None and files.current is not None:
            files.current.writer.close()

    def _enforce_caps(self, files: _ModelFiles) -> None:
        """Remove a model's oldest closed files while they are too old, or while they leave less room than a whole
        file below the cap (so that, with the file just started, the model stays under it)."""
        oldest_kept = time.time() - self.limits.max_age_s
        room = self.limits.max_bytes - self._file_bytes()
        closed = files.closed
        while closed and (sum(size for _, size in closed) > room or _mtime(closed[0][0]) < oldest_kept):
            path, _ = closed.pop(0)
            path.unlink(missing_ok=True)

    def _remove_expired(self) -> None:
        """Remove the files past the age limit of every model, recorded now or not (a model's files otherwise age
        out only as it records)."""
        oldest_kept = time.time() - self.limits.max_age_s
        with self._files_lock:
            open_files = {files.current.path for files in self._models.values() if files.current is not None}
            try:
                folders = [p for p in self.root.iterdir() if p.is_dir()]
            except FileNotFoundError:
                return
            for folder in folders:
                for path in folder.glob(f"*{SUFFIX}"):
                    if path not in open_files and _mtime(path) < oldest_kept:
                        path.unlink(missing_ok=True)
            for files in self._models.values():
                files.closed = [(path, size) for path, size in files.closed if path.exists()]

    def _flush_all(self) -> None:
        with self._files_lock:
            for files in self._models.values():
                if files.current is not None:
                    files.current.writer.flush()


def _nbytes(array) -> int:
    return int(getattr(array, "nbytes", 0))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


# --- building the PredictionLog (writer thread) ----------------------------------------------------------------------


def _prediction_log(pending: _Pending):
    from tensorflow_serving.apis import prediction_log_pb2

    entry = prediction_log_pb2.PredictionLog()
    spec = entry.log_metadata.model_spec
    spec.name = pending.model
    spec.version.value = pending.version
    spec.signature_name = pending.signature_name
    entry.log_metadata.timestamp_secs = int(pending.timestamp)
    if pending.kind == "predict":
        _fill_predict(entry.predict_log, pending)
    else:
        _fill_examples(getattr(entry, f"{pending.kind}_log"), pending)
    return entry


def _fill_predict(predict_log, pending: _Pending) -> None:
    request = predict_log.request
    request.model_spec.CopyFrom(_spec(pending))
    for alias, array in pending.request.items():
        _fill_tensor(request.inputs[alias], array)
    response = predict_log.response
    response.model_spec.CopyFrom(_spec(pending))
    for alias, array in pending.response.items():
        _fill_tensor(response.outputs[alias], array)


def _fill_tensor(tensor, array) -> None:
    """``array`` into a TensorProto: numbers as ``tensor_content`` bytes (4x cheaper than tf.make_tensor_proto for
    a small tensor), strings in ``string_val``."""
    import tensorflow as tf

    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        tensor.CopyFrom(tf.make_tensor_proto(array))
        return
    tensor.dtype = _datatype(array.dtype)
    dims = tensor.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    tensor.tensor_content = array.tobytes()


@functools.cache
def _datatype(dtype: np.dtype) -> int:
    import tensorflow as tf

    return tf.as_dtype(dtype).as_datatype_enum


def _fill_examples(example_log, pending: _Pending) -> None:
    context, examples = pending.request
    request = example_log.request
    request.model_spec.CopyFrom(_spec(pending))
    if context is None:
        listed = request.input.example_list
    else:
        listed = request.input.example_list_with_context
        _fill_example(listed.context, context)
    for features in examples:
        _fill_example(listed.examples.add(), features)
    response = example_log.response
    response.model_spec.CopyFrom(_spec(pending))
    if pending.kind == "classify":
        for row in pending.response:
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label, score=score)
    else:
        for value in pending.response:
            response.result.regressions.add(value=value)


def _fill_example(example, features: Features) -> None:
    for name, (kind, values) in features.items():
        feature = example.features.feature[name]
        if kind == "bytes":
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in values)
        elif kind == "float":
            feature.float_list.value.extend(values)
        elif kind == "int64":
            feature.int64_list.value.extend(values)


def _spec(pending: _Pending):
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=pending.model, signature_name=pending.signature_name)
    spec.version.value = pending.version
    return spec
