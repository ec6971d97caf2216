"""Shadow traffic: a sampled share of a model's live Predict requests sent also to a candidate version, whose
answers are compared with the live ones and then discarded.

The request thread only samples and hands the request over (``put_nowait`` on a small queue, after its answer is
computed): one background worker, woken by the clock rather than by each request, acquires the candidate (never
loading it: a candidate that is not AVAILABLE is counted as "unavailable"), runs the request on it outside the
request log and the request metrics, and folds the two answers into running figures with
:class:`~appliance.serving.agreement.OutputTally`, so that they mean what a comparison's mean. A full queue drops
the request (counted): never more than one background call per live call, and a live request never waits. Under
a steady load more than the worker takes in its rounds is dropped: bench/shadow.py measured c=1 ``/predict`` p50
+2% with every request sampled (88% of them dropped), +30% when the worker was woken by each request instead.

    shadow = ShadowTraffic(manager)       # the manager makes its own: manager.shadow
    shadow.set("digits", 2, share=0.1)    # about one in ten requests answered by another version also go to v2
    shadow.offer("digits", 1, "serving_default", inputs, outputs)   # what ServableHandle.record_predict calls
    shadow.figures("digits").to_json()    # {"version": 2, "compared": 120, "agreement": {"class": 0.97}, ...}
    shadow.clear("digits")                # off
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgument, ServingError
from .agreement import OutputReport, OutputTally
from .runtime import DEFAULT_SIGNATURE

if TYPE_CHECKING:
    from .manager import ModelManager

log = logging.getLogger(__name__)

DEFAULT_SHARE = 0.1
# Requests waiting for the worker: a handful absorbs a burst; more would only keep live tensors alive longer
# while the worker, busy, could not catch up anyway.
QUEUE_SIZE = 8
WAKE_SECONDS = 0.05  # how long the worker sleeps between taking what was queued
RECENT_LATENCIES = 500  # the candidate's p50 is over this many recent calls


@dataclasses.dataclass(frozen=True)
class ShadowConfig:
    """A model's candidate version and the share of its live requests it gets."""

    version: int
    share: float = DEFAULT_SHARE

    def __post_init__(self):
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidArgument(f"the candidate version must be a positive integer, not {self.version!r}")
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)) or not 0 < self.share <= 1:
            raise InvalidArgument(f"the share of requests shadowed must be in (0, 1], not {self.share!r}")


class ShadowFigures:
    """The running figures of one model's shadow traffic to one candidate, since it was turned on."""

    def __init__(self, model: str, config: ShadowConfig):
        self.model = model
        self.config = config
        self.since = time.time()
        self.active = True  # False once turned off (or replaced by another candidate)
        self.compared = 0  # requests both answered and compared
        self.fails_on_candidate = 0  # requests the live version answered and the candidate failed
        self.sample_error: str | None = None  # the candidate's first error
        self.dropped = 0  # sampled but not sent: the worker's queue was full
        self.unavailable = 0  # sampled while the candidate was not AVAILABLE
        self._tallies: dict[tuple[str, str], OutputTally] = {}  # by signature and output
        self._latencies: deque[float] = deque(maxlen=RECENT_LATENCIES)
        self._lock = threading.Lock()  # the worker folds while readers take snapshots

    @property
    def version(self) -> int:
        return self.config.version

    def count_dropped(self) -> None:
        with self._lock:
            self.dropped += 1

    def count_unavailable(self) -> None:
        with self._lock:
            self.unavailable += 1

    def count_failure(self, message: str) -> None:
        with self._lock:
            self.fails_on_candidate += 1
            self.sample_error = self.sample_error or message

    def fold(
        self, signature: str, live: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], seconds: float
    ) -> None:
        """Add one request's live and candidate answers."""
        with self._lock:
            for alias in sorted(live.keys() & candidate.keys()):
                tally = self._tallies.setdefault((signature, alias), OutputTally())
                tally.add(np.asarray(live[alias]), np.asarray(candidate[alias]))
            self.compared += 1
            self._latencies.append(seconds)

    def outputs(self) -> tuple[OutputReport, ...]:
        with self._lock:
            return tuple(self._tallies[key].report(*key) for key in sorted(self._tallies))

    def candidate_p50_ms(self) -> float | None:
        with self._lock:
            recent = list(self._latencies)
        return float(np.percentile(recent, 50)) * 1000 if recent else None

    def first_class_output(self) -> OutputReport | None:
        """The first output whose rows have a class to agree on (``class`` before ``probabilities``), if any."""
        return next((o for o in self.outputs() if o.agreement is not None), None)

    def summary(self) -> str:
        """One line, e.g. "v2 agrees on 97.2% of 1 203 requests; 3 fail on v2"."""
        first = self.first_class_output()
        v = self.version
        if self.compared == 0:
            text = f"v{v}: no request compared yet"
        elif first is not None and first.agreeing is not None:
            text = (
                f"v{v} agrees on {_percent(first.agreeing, first.predictions)} of {_thousands(self.compared)} requests"
            )
        else:
            largest = max((o.max_abs_diff or 0.0 for o in self.outputs()), default=0.0)
            text = f"v{v} differs by at most {largest:.3g} over {_thousands(self.compared)} requests"
        notes = [f"{self.fails_on_candidate} fail on v{v}"] if self.fails_on_candidate else []
        if self.unavailable:
            notes.append(f"{self.unavailable} while v{v} was not available")
        return "; ".join([text, *notes])

    def to_json(self) -> dict:
        """What ``GET /v1/appliance/models/{name}/shadow`` answers."""
        outputs = self.outputs()
        with self._lock:
            counts = (self.compared, self.fails_on_candidate, self.sample_error, self.dropped, self.unavailable)
        compared, fails, sample_error, dropped, unavailable = counts
        return {
            "model": self.model,
            "active": self.active,
            "version": self.version,
            "share": self.config.share,
            "compared": compared,
            "agreement": {o.label: o.agreement for o in outputs if o.agreement is not None},
            "outputs": [
                {
                    "label": o.label,
                    "predictions": o.predictions,
                    "agreeing": o.agreeing,
                    "agreement": o.agreement,
                    "mean_abs_diff": o.mean_abs_diff,
                    "max_abs_diff": o.max_abs_diff,
                }
                for o in outputs
            ],
            "fails_on_candidate": fails,
            "sample_error": sample_error,
            "dropped": dropped,
            "unavailable": unavailable,
            "candidate_p50_ms": self.candidate_p50_ms(),
            "since": _iso(self.since),
            "summary": self.summary(),
        }

    def health_json(self) -> dict:
        """The short form ``/health`` shows in the model's entry."""
        first = self.first_class_output()
        return {
            "candidate": self.version,
            "compared": self.compared,
            "agreement": first.agreement if first else None,
            "output": first.label if first else None,
            "fails_on_candidate": self.fails_on_candidate,
        }


def off_json(model: str) -> dict:
    """``GET .../shadow`` of a model without shadow traffic."""
    return {
        "model": model,
        "active": False,
        "version": None,
        "share": None,
        "compared": 0,
        "agreement": {},
        "outputs": [],
        "fails_on_candidate": 0,
        "sample_error": None,
        "dropped": 0,
        "unavailable": 0,
        "candidate_p50_ms": None,
        "since": None,
        "summary": None,
    }


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _thousands(number: int) -> str:
    """1203 -> "1 203" (a thin space would be nicer, but the tray's fonts may lack it)."""
    return f"{number:,}".replace(",", " ")


def _percent(part: int, whole: int) -> str:
    """A share with one decimal that never rounds a disagreement up to 100% (or one agreement down to 0%)."""
    value = 100.0 * part / whole if whole else 0.0
    if part < whole:
        value = min(value, 99.9)
    if part > 0:
        value = max(value, 0.1)
    return f"{value:.1f}%"


@dataclasses.dataclass
class _Shadowed:
    """One live request handed to the worker; dropped as soon as it is compared."""

    figures: ShadowFigures
    signature: str
    inputs: Mapping[str, np.ndarray]
    live: Mapping[str, np.ndarray]


class ShadowTraffic:
    """Every model's shadow traffic: its candidates, the sampling, one worker thread and the figures."""

    def __init__(
        self,
        manager: ModelManager,
        queue_size: int = QUEUE_SIZE,
        rng: random.Random | None = None,
        *,
        wake_seconds: float = WAKE_SECONDS,
    ):
        self._manager = manager
        self._wake_seconds = wake_seconds
        self._random = (rng or random.Random()).random
        self._active: dict[str, ShadowFigures] = {}  # read without a lock by the request threads
        self._lock = threading.Lock()  # changes of _active and the worker's start
        self._queue: queue.Queue[_Shadowed | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None

    # --- configuration -------------------------------------------------------------------------------------------

    def set(self, model: str, version: int, share: float = DEFAULT_SHARE) -> ShadowFigures:
        """Shadow ``share`` of ``model``'s live requests to ``version``. The same candidate keeps its figures (only
        the share changes); another one starts afresh."""
        config = ShadowConfig(version, share)
        with self._lock:
            current = self._active.get(model)
            if current is not None and current.version == version:
                current.config = config
                figures = current
            else:
                if current is not None:
                    current.active = False
                figures = self._active[model] = ShadowFigures(model, config)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="appliance-shadow", daemon=True)
                self._thread.start()
        log.info("model %s: %.0f%% of live requests shadowed to version %d", model, 100 * share, version)
        return figures

    def clear(self, model: str) -> ShadowFigures | None:
        """Stop shadowing ``model``'s requests; returns its figures until now (None when it was off)."""
        with self._lock:
            figures = self._active.pop(model, None)
        if figures is not None:
            figures.active = False
            log.info("model %s: shadow traffic to version %d off", model, figures.version)
        return figures

    def replace(self, configs: Mapping[str, ShadowConfig]) -> None:
        """Shadow the models of ``configs`` as they say, and no other (unchanged candidates keep their figures)."""
        for model in set(self._active) - set(configs):
            self.clear(model)
        for model, config in configs.items():
            self.set(model, config.version, config.share)

    def figures(self, model: str) -> ShadowFigures | None:
        return self._active.get(model)

    def active(self) -> dict[str, ShadowFigures]:
        return dict(self._active)

    # --- the request thread's side -------------------------------------------------------------------------------

    def offer(
        self,
        model: str,
        live_version: int,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
    ) -> None:
        """Hand an answered Predict to the worker when ``model`` is shadowed to a version other than
        ``live_version`` and the request is sampled; never blocks."""
        figures = self._active.get(model)
        if figures is None or figures.version == live_version:
            return
        share = figures.config.share
        if share < 1 and self._random() >= share:
            return
        try:
            self._queue.put_nowait(_Shadowed(figures, signature or DEFAULT_SIGNATURE, inputs, outputs))
        except queue.Full:
            figures.count_dropped()

    # --- the worker ----------------------------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 30) -> bool:
        """Wait until every request handed over so far is compared; False on timeout (for tests and benches)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self, timeout: float = 10) -> None:
        """Turn every model's shadow traffic off and end the worker once the request it runs is done."""
        with self._lock:
            self._active.clear()
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)  # waits while the queue is full: the worker empties it
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            # Woken by the clock rather than by each request: a wake-up per request takes the GIL from the request
            # threads at the worst time, right after an answer (as the request log found, see its writer).
            time.sleep(self._wake_seconds)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                try:
                    if item is None:
                        return
                    self._shadow(item)
                except Exception:  # a bug: say so, keep the worker
                    log.exception("shadow traffic: a request could not be compared")
                finally:
                    item = None  # the live tensors go now, not when the next request arrives
                    self._queue.task_done()

    def _shadow(self, item: _Shadowed) -> None:
        figures = item.figures
        if not figures.active:  # turned off since it was queued
            return
        try:
            handle = self._manager.acquire(figures.model, figures.version)
        except ServingError:  # not AVAILABLE (loading, unloaded, gone): counted, never loaded for this
            figures.count_unavailable()
            return
        with handle:
            started = time.perf_counter()
            try:
                answer = handle.servable.predict(item.signature, item.inputs, tuple(item.live))
            except ServingError as e:
                figures.count_failure(e.message)
                return
            except Exception as e:  # an error the runtime did not map: still the candidate's failure
                log.exception("shadow traffic: model %s version %d failed", figures.model, figures.version)
                figures.count_failure(f"{type(e).__name__}: {e}")
                return
            seconds = time.perf_counter() - started
        figures.fold(item.signature, item.live, answer, seconds)
