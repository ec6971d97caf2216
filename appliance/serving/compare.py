"""Replay recorded predict requests against two versions of a model and report how their answers differ.

A :class:`Comparison` runs in one background thread, off the request path: it
acquires each version per request (so a comparison never holds a version that
the manager wants to unload), pauses between requests so that its CPU use
stays under ``cpu_share`` of one core (see :class:`CpuBudget`), and yields to
live requests: each replayed request first waits for a quiet moment (no request
served for ``quiet_seconds``, waiting ``max_yield_seconds`` at most). Its progress
is readable while it runs and it can be cancelled; the result says per output
how often the predicted class agrees, how far numeric outputs differ, which
requests fail on one version only, and each version's latency.

    requests, skipped = read_predict_requests([Path("requests.tfrecord")], "digits")
    comparison = Comparison(manager, "digits", 1, 2, requests, skipped=skipped).start()
    comparison.progress            # -> (120, 500)
    comparison.wait().summary()    # -> "v1 agrees with v2 on 96.8% of 500 requests; 3 fail on v1"

    comparisons = Comparisons(manager)           # one comparison per model at a time, for the API and the tray
    comparisons.start("digits", 1, 2)            # the model's recorded requests, else its versions' warm-up files
    comparisons.subscribe(lambda c: print(c.progress))  # at start, about once a second while it runs, at the end
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import Code, InvalidArgument, NotFound, ServingError
from .agreement import OutputReport, OutputTally
from .manager import ModelManager
from .request_log import read_records
from .runtime import DEFAULT_SIGNATURE
from .runtime.warmup import WARMUP_FILE

log = logging.getLogger(__name__)

DEFAULT_CPU_SHARE = 0.25  # of one core, averaged over the run
DEFAULT_LIMIT = 500  # the most recent predict requests replayed
QUIET_SECONDS = 0.005  # a replayed request waits for this long without a live request...
MAX_YIELD_SECONDS = 1.0  # ...but no longer than this, so that a busy appliance still makes progress
PROGRESS_INTERVAL = 1.0  # seconds between two progress reports to ``on_change``


@dataclasses.dataclass(frozen=True)
class PredictRequest:
    """One recorded predict request: its signature, inputs and output filter."""

    signature_name: str
    inputs: Mapping[str, np.ndarray]
    output_filter: tuple[str, ...] = ()


def read_predict_requests(paths: Iterable[Path], model: str | None = None, limit: int = DEFAULT_LIMIT):
    """The last ``limit`` predict requests of the ``PredictionLog`` TFRecord files ``paths`` (oldest first), and how
    many records read were skipped (other kinds, other models, beyond the limit). A torn last record is skipped.

    Files are read newest first, and only until ``limit`` requests are found; only those are decoded into arrays.
    """
    import tensorflow as tf

    kept: list = []  # PredictRequest protos, oldest first
    skipped = 0
    for path in reversed(list(paths)):
        if len(kept) >= limit:
            break
        in_file = []
        for logged in read_records([path]):
            request = logged.predict_log.request
            named = request.model_spec.name
            if logged.WhichOneof("log_type") != "predict_log" or (model and named and named != model):
                skipped += 1
            else:
                in_file.append(request)
        kept = in_file + kept
    skipped += max(len(kept) - limit, 0)
    return [
        PredictRequest(
            request.model_spec.signature_name,
            {alias: tf.make_ndarray(tensor) for alias, tensor in request.inputs.items()},
            tuple(request.output_filter),
        )
        for request in (kept[-limit:] if limit > 0 else [])
    ], skipped


@dataclasses.dataclass(frozen=True)
class VersionReport:
    """One version's side: the requests that failed on it alone, and its latency over the ones it answered."""

    version: int
    fails_alone: int
    sample_error: str | None
    p50_ms: float | None
    p95_ms: float | None


@dataclasses.dataclass(frozen=True)
class ComparisonResult:
    """What a comparison found; ``cancelled`` when it stopped early (the figures cover the requests done)."""

    model: str
    version: VersionReport
    against: VersionReport
    requests: int  # replayed
    both_failed: int
    skipped: int  # records that were not predict requests for this model, or beyond the limit
    outputs: tuple[OutputReport, ...]
    cancelled: bool = False

    def summary(self) -> str:
        """One line, e.g. "v1 agrees with v2 on 96.8% of 500 requests; 3 fail on v1"."""
        v, a = self.version.version, self.against.version
        answered = self.requests - self.both_failed - self.version.fails_alone - self.against.fails_alone
        done = f"{answered} requests" + (" (cancelled)" if self.cancelled else "")
        classes = [o for o in self.outputs if o.agreement is not None]
        if classes:
            worst = min(classes, key=lambda o: o.agreement or 0.0)  # the output that tells them apart most
            rows = worst.predictions
            of = done if rows == answered else f"{rows} predictions in {done}"
            named = f" ({worst.label})" if len({o.agreement for o in classes}) > 1 else ""
            text = f"v{v} agrees with v{a}{named} on {_percent(worst.agreeing or 0, rows)} of {of}"
        elif any(o.max_abs_diff is not None for o in self.outputs):
            largest = max(self.outputs, key=lambda o: o.max_abs_diff or 0.0)
            text = f"v{v} differs from v{a} by at most {largest.max_abs_diff:.3g} ({largest.label}) over {done}"
        else:
            text = f"no request of {self.requests} was answered by both v{v} and v{a}"
        fails = [f"{r.fails_alone} fail on v{r.version}" for r in (self.version, self.against) if r.fails_alone]
        if self.both_failed:
            fails.append(f"{self.both_failed} fail on both")
        return "; ".join([text, *fails])

    def to_json(self) -> dict:
        document = dataclasses.asdict(self)
        for output, report in zip(document["outputs"], self.outputs, strict=True):
            output["agreement"], output["label"] = report.agreement, report.label
        document["summary"] = self.summary()
        return document


def _percent(part: int, whole: int) -> str:
    """A share with one decimal that never rounds a disagreement up to 100% (or one agreement down to 0%)."""
    value = 100.0 * part / whole
    if part < whole:
        value = min(value, 99.9)
    if part > 0:
        value = max(value, 0.1)
    return f"{value:.1f}%"


class CpuBudget:
    """Keeps a background worker's CPU use under ``share`` of one core, averaged over its run.

    The worker brackets each unit of work with :meth:`pause_after`'s ``started``
    marks; the work's cost is the larger of its wall time and the *process's* CPU
    time over it (TensorFlow runs ops on its own threads, which a thread's CPU
    clock misses; the process clock also counts live requests served meanwhile,
    so the estimate errs on the side of pausing longer). The pause then makes the
    cycle ``cost / share`` long, so over every cycle the work used at most
    ``share`` of a core.
    """

    def __init__(self, share: float):
        if not 0 < share <= 1:
            raise InvalidArgument(f"the CPU share must be in (0, 1], not {share}")
        self.share = share
        self.busy_seconds = 0.0  # the work's estimated cost so far

    @staticmethod
    def mark() -> tuple[float, float]:
        return time.monotonic(), time.process_time()

    def pause_after(self, started: tuple[float, float], cancelled: threading.Event) -> None:
        wall, cpu = time.monotonic() - started[0], time.process_time() - started[1]
        cost = max(wall, cpu)
        self.busy_seconds += cost
        cancelled.wait(cost / self.share - wall)


class _Side:
    def __init__(self, version: int):
        self.version = version
        self.latencies: list[float] = []
        self.fails_alone = 0
        self.sample_error: str | None = None

    def report(self) -> VersionReport:
        p50, p95 = (float(x) * 1000 for x in np.percentile(self.latencies, [50, 95])) if self.latencies else (None,) * 2
        return VersionReport(self.version, self.fails_alone, self.sample_error, p50, p95)


class Comparison:
    """Replays ``requests`` against versions ``version`` and ``against`` of model ``name``; see the module doc."""

    def __init__(
        self,
        manager: ModelManager,
        name: str,
        version: int,
        against: int,
        requests: Sequence[PredictRequest],
        *,
        skipped: int = 0,
        cpu_share: float = DEFAULT_CPU_SHARE,
        quiet_seconds: float = QUIET_SECONDS,
        max_yield_seconds: float = MAX_YIELD_SECONDS,
        on_change: Callable[[Comparison], None] | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
    ):
        """``on_change(comparison)`` is called from the worker thread as progress moves (at most once every
        ``progress_interval`` seconds) and once it has finished."""
        if version == against:
            raise InvalidArgument(f"compare two different versions, not version {version} with itself")
        if not requests:
            raise InvalidArgument(f"there are no recorded predict requests of model {name} to replay")
        for number in (version, against):
            try:
                manager.acquire(name, number).release()  # NotFound now, rather than in the worker
            except NotFound as e:
                if not e.message.startswith("Servable not found"):
                    raise
                raise NotFound(
                    f"{e.message} Both versions must be loaded to compare them (a version policy of all or of "
                    "specific versions keeps older ones loaded)."
                ) from None
        self._manager = manager
        self.name = name
        self.version, self.against = version, against
        self._requests = requests
        self._skipped = skipped
        self.budget = CpuBudget(cpu_share)
        self._quiet_seconds, self._max_yield_seconds = quiet_seconds, max_yield_seconds
        self._sides = (_Side(version), _Side(against))
        self._tallies: dict[tuple[str, str], OutputTally] = {}  # by signature and output
        self._both_failed = 0
        self._done = 0
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self.result: ComparisonResult | None = None
        self.error: ServingError | None = None  # why the run stopped, when it could not go on
        self._on_change = on_change
        self._progress_interval = progress_interval

    @property
    def progress(self) -> tuple[int, int]:
        """(requests done, requests to do)."""
        return self._done, len(self._requests)

    @property
    def state(self) -> str:
        """ "running", "done", "cancelled" or "failed"."""
        if not self._finished.is_set():
            return "running"
        if self.error is not None:
            return "failed"
        return "cancelled" if self._cancel.is_set() else "done"

    def start(self) -> Comparison:
        self._thread = threading.Thread(target=self.run, name=f"appliance-compare-{self.name}", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> ComparisonResult | None:
        self._finished.wait(timeout)
        return self.result

    def run(self) -> ComparisonResult:
        """Replay every request in the calling thread; returns (and keeps in :attr:`result`) what it found."""
        next_report = time.monotonic() + self._progress_interval
        try:
            for request in self._requests:
                self._yield_to_live_requests()
                if self._cancel.is_set():
                    break
                started = self.budget.mark()
                self._replay(request)
                self._done += 1
                self.budget.pause_after(started, self._cancel)
                if time.monotonic() >= next_report:
                    self._report_change()
                    next_report = time.monotonic() + self._progress_interval
        except ServingError as e:  # a version went away mid-run: the figures so far are kept
            self.error = e
        except Exception as e:  # a bug: say so rather than run forever
            log.exception("comparison of %s v%d with v%d failed", self.name, self.version, self.against)
            self.error = ServingError(f"the comparison failed: {type(e).__name__}: {e}", Code.INTERNAL)
        self.result = self._result()
        self._finished.set()
        self._report_change()
        return self.result

    def _report_change(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(self)
        except Exception:  # a listener's bug must not end the run
            log.exception("a listener of the comparison of %s failed", self.name)

    def _yield_to_live_requests(self) -> None:
        deadline = time.monotonic() + self._max_yield_seconds
        while time.monotonic() < deadline:
            seen = self._manager.acquisitions
            if self._cancel.wait(self._quiet_seconds) or self._manager.acquisitions == seen:
                return

    def _replay(self, request: PredictRequest) -> None:
        answers = [self._predict(side.version, request) for side in self._sides]
        failed = [isinstance(answer, str) for answer in answers]
        if all(failed):
            self._both_failed += 1
            return
        for side, answer, other_failed in zip(self._sides, answers, reversed(failed), strict=True):
            if isinstance(answer, str) and not other_failed:
                side.fails_alone += 1
                side.sample_error = side.sample_error or answer
        if any(failed):
            return
        first, second = answers
        assert isinstance(first, dict) and isinstance(second, dict)
        signature = request.signature_name or DEFAULT_SIGNATURE
        for alias in sorted(first.keys() & second.keys()):
            self._tallies.setdefault((signature, alias), OutputTally()).add(
                np.asarray(first[alias]), np.asarray(second[alias])
            )

    def _predict(self, version: int, request: PredictRequest) -> dict[str, np.ndarray] | str:
        """The outputs, or the error's message; a version no longer served stops the run (NotFound)."""
        side = self._sides[0] if version == self._sides[0].version else self._sides[1]
        with self._manager.acquire(self.name, version) as handle:
            started = time.perf_counter()
            try:
                outputs = handle.servable.predict(
                    request.signature_name or DEFAULT_SIGNATURE, request.inputs, request.output_filter
                )
            except ServingError as e:
                return e.message
            side.latencies.append(time.perf_counter() - started)
            return outputs

    def to_json(self) -> dict:
        """The state, progress and (once finished) result, as the control API answers them."""
        done, total = self.progress
        result = self.result
        return {
            "model": self.name,
            "version": self.version,
            "against": self.against,
            "state": self.state,
            "done": done,
            "total": total,
            "error": self.error.message if self.error else None,
            "summary": result.summary() if result else None,
            "result": result.to_json() if result else None,
        }

    def _result(self) -> ComparisonResult:
        version, against = (side.report() for side in self._sides)
        outputs = tuple(self._tallies[key].report(*key) for key in sorted(self._tallies))
        cancelled = self._cancel.is_set() and self._done < len(self._requests)
        return ComparisonResult(
            self.name, version, against, self._done, self._both_failed, self._skipped, outputs, cancelled
        )


def warmup_files(base_path: Path, versions: Iterable[int]) -> list[Path]:
    """The warm-up files (``assets.extra/tf_serving_warmup_requests``) of those versions that have one."""
    wanted = set(versions)
    folders = sorted(p for p in Path(base_path).iterdir() if p.name.isdigit() and int(p.name) in wanted)
    return [folder / WARMUP_FILE for folder in folders if (folder / WARMUP_FILE).is_file()]


class Comparisons:
    """The latest comparison of each model; at most one runs per model at a time.

    ``recorded(name)`` lists a model's recorded request files, oldest first (the request log's ``files``):
    a comparison given no log replays those, else its two versions' warm-up requests.
    """

    def __init__(
        self,
        manager: ModelManager,
        cpu_share: float = DEFAULT_CPU_SHARE,
        recorded: Callable[[str], list[Path]] = lambda name: [],
    ):
        self._manager = manager
        self._recorded = recorded
        self._cpu_share = cpu_share
        self._lock = threading.Lock()
        self._latest: dict[str, Comparison] = {}
        self._listeners: list[Callable[[Comparison], None]] = []

    def start(
        self, name: str, version: int, against: int, log: Path | None = None, limit: int = DEFAULT_LIMIT
    ) -> Comparison:
        """Start replaying ``log`` (by default the model's recorded requests, else the versions' warm-up requests)
        against the two versions."""
        with self._lock:
            running = self._latest.get(name)
            if running is not None and running.state == "running":
                raise ServingError(
                    f"a comparison of {name} (v{running.version} with v{running.against}) is running: "
                    "wait for it or cancel it first",
                    Code.ALREADY_EXISTS,
                )
            paths = self._sources(name, version, against, log)
            try:
                requests, skipped = read_predict_requests(paths, name, limit)
            except Exception as e:  # not a TFRecord file, records that are not PredictionLog protos
                raise InvalidArgument(f"cannot read the requests in {', '.join(map(str, paths))}: {e}") from None
            comparison = Comparison(
                self._manager,
                name,
                version,
                against,
                requests,
                skipped=skipped,
                cpu_share=self._cpu_share,
                on_change=self._changed,
            )
            self._latest[name] = comparison.start()
        self._changed(comparison)
        return comparison

    def subscribe(self, listener: Callable[[Comparison], None]) -> None:
        """Call ``listener(comparison)`` when a comparison starts, as its progress moves (about once a second)
        and when it ends; from the thread that started it, then from its worker thread."""
        self._listeners.append(listener)

    def _changed(self, comparison: Comparison) -> None:
        for listener in self._listeners:
            try:
                listener(comparison)
            except Exception:
                log.exception("a listener of the comparison of %s failed", comparison.name)

    def _sources(self, name: str, version: int, against: int, log: Path | None) -> list[Path]:
        if log is not None:
            if not Path(log).is_file():
                raise NotFound(f"no request log file at {log}")
            return [Path(log)]
        recorded = self._recorded(name)
        if recorded:
            return recorded
        found = warmup_files(self._manager.summary(name).base_path, (version, against))
        if not found:
            raise InvalidArgument(
                f"model {name} has no recorded requests and versions {version} and {against} have no warm-up "
                "requests: record some, or give a request log file"
            )
        return found

    def latest(self, name: str) -> Comparison | None:
        """The running or last comparison of ``name``, None when none ran since the appliance started; NotFound
        when no such model is served."""
        self._manager.summary(name)
        with self._lock:
            return self._latest.get(name)

    def cancel_all(self) -> None:
        """Cancel every running comparison and wait for them (the appliance is stopping)."""
        with self._lock:
            running = [c for c in self._latest.values() if c.state == "running"]
        for comparison in running:
            comparison.cancel()
        for comparison in running:
            comparison.wait(timeout=10)
