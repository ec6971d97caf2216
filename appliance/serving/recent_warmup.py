"""Warm-up from recent requests: each new version of a model is warmed with the requests this machine sent it.

For each model it is on for, a snapshot of the model's newest recorded requests (predict, classify, regress;
responses dropped) is kept as a TF Serving warm-up file (TFRecord of ``PredictionLog``) in the appliance's own
per-user data folder, ``<data>/warmup/<model>/tf_serving_warmup_requests``, written whole then renamed into
place, owner-only: never in the model's folder. As a version of the model starts loading, the snapshot is
refreshed from the request log (kept as it is when nothing is recorded); once the version's own warm-up has
run, it replays the snapshot leniently: a record the version refuses (a changed signature or shape) is logged,
counted and skipped, never failing the load.

    warmup = RecentRequestWarmup(request_log, preferences)
    warmup.set("digits", 100)           # on, with the newest 100 recorded requests -> records in the snapshot
    warmup.before_load("digits")        # the manager, as a version starts loading: refresh the snapshot
    warmup.replay("digits", 2, servable)  # ... once the version's own warm-up has run -> (ran, skipped)
    warmup.set("digits", 0)             # off: the snapshot is removed
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from .. import paths
from ..errors import FailedPrecondition, InvalidArgument
from ..preferences import PreferenceStore
from .request_log import RequestLog, model_dir, read_records
from .runtime import Servable
from .runtime.warmup import MAX_RECORDS, read_prediction_logs, replay_leniently

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100  # recent requests in a snapshot: enough to touch each input shape a machine sends
SNAPSHOT_NAME = "tf_serving_warmup_requests"
_KINDS = ("predict_log", "classify_log", "regress_log")


@dataclasses.dataclass(frozen=True)
class LastReplay:
    """What the last version loaded with a model's snapshot ran of it."""

    version: int
    replayed: int
    skipped: int  # records the version refused


class RecentRequestWarmup:
    """Which models warm up from recent requests, their snapshots, and the replay; thread-safe.

    A model is on when the preferences give it a positive limit, or when they give none and ``configured``
    (settings.toml's ``warmup_from_recent_requests``) names it; the preferences' 0 turns a configured model off.
    """

    def __init__(
        self,
        request_log: RequestLog,
        preferences: PreferenceStore | None = None,
        configured: Iterable[str] = (),
        root: Path | None = None,
    ):
        self._request_log = request_log
        self._preferences = preferences
        self._configured = frozenset(configured)
        self.root = root if root is not None else paths.recent_warmup_dir()
        self._lock = threading.Lock()  # one snapshot write at a time
        self.last_replay: dict[str, LastReplay] = {}

    # --- the setting ---------------------------------------------------------------------------------------------

    def limit(self, model: str) -> int:
        """How many recent requests warm ``model`` up; 0 when it is off."""
        chosen = self._preferences.warmup_from_recent_requests() if self._preferences else {}
        if model in chosen:
            return chosen[model]
        return DEFAULT_LIMIT if model in self._configured else 0

    def enabled(self, model: str) -> bool:
        return self.limit(model) > 0

    def set(self, model: str, limit: int) -> int:
        """Turn warm-up from ``model``'s ``limit`` most recent requests on (0: off, the snapshot removed);
        remembered in the preferences. Returns how many records the snapshot holds.

        Turning it on writes the snapshot at once: FailedPrecondition when nothing of ``model`` is recorded (and
        no earlier snapshot exists), as a warm-up with no requests would warm nothing.
        """
        if not 0 <= limit <= MAX_RECORDS:
            raise InvalidArgument(f"'limit' must be a number of requests from 1 to {MAX_RECORDS}, not {limit}")
        if limit:
            records = self.refresh(model, limit)
            if not records:
                raise FailedPrecondition(
                    f"no recorded requests of model {model} to warm up with: turn on its request log "
                    '("Record requests" in the tray, or request_log_sampling in settings.toml), send it some '
                    "requests, then turn this on"
                )
            self._remember(model, limit)
            return records
        self._remember(model, 0)  # first, so that a version starting to load now leaves the snapshot alone
        self.delete_snapshot(model)
        return 0

    def _remember(self, model: str, limit: int) -> None:
        if self._preferences is not None:
            self._preferences.set_warmup_from_recent_requests(model, limit)

    # --- the snapshot --------------------------------------------------------------------------------------------

    def snapshot_path(self, model: str) -> Path:
        return model_dir(self.root, model) / SNAPSHOT_NAME

    def records(self, model: str) -> int:
        """How many requests ``model``'s snapshot holds (0 when it has none)."""
        path = self.snapshot_path(model)
        if not path.is_file():
            return 0
        try:
            return sum(1 for _ in read_prediction_logs(path, skip_torn_tail=True))
        except Exception:  # removed meanwhile
            return 0

    def refresh(self, model: str, limit: int | None = None) -> int:
        """Write ``model``'s snapshot from its newest ``limit`` recorded requests (by default, its setting's);
        with none recorded, the snapshot is kept as it is. Returns how many records the snapshot holds."""
        as_set = limit is None
        limit = self.limit(model) if limit is None else limit
        self._request_log.flush(5)  # what was answered before now is in the files
        newest = _newest_records(self._request_log.files(model), limit)
        with self._lock:
            if as_set and not self.enabled(model):
                return 0  # turned off while the records were read: no snapshot is left behind
            if not newest:
                return self.records(model)
            _write_atomically(self.snapshot_path(model), newest, self.root)
        log.info("warm-up from recent requests of %s: %d records", model, len(newest))
        return len(newest)

    def delete_snapshot(self, model: str) -> None:
        with self._lock:
            self.snapshot_path(model).unlink(missing_ok=True)

    # --- what the model manager calls as a version loads ---------------------------------------------------------

    def before_load(self, model: str) -> None:
        """Refresh the snapshot of ``model`` (when it is on), as a version of it starts loading."""
        if self.enabled(model):
            try:
                self.refresh(model)
            except Exception:  # a full disk: the version loads with the snapshot it has
                log.exception("could not refresh the warm-up from recent requests of %s", model)

    def replay(self, model: str, version: int, servable: Servable) -> tuple[int, int]:
        """Run ``model``'s snapshot (when it is on) on ``servable``, skipping the records it refuses; returns
        (how many ran, how many were skipped)."""
        path = self.snapshot_path(model)
        if not self.enabled(model) or not path.is_file():
            return 0, 0
        ran, skipped = replay_leniently(servable, path, self.limit(model))
        self.last_replay[model] = LastReplay(version, ran, skipped)
        log.info(
            "model %s version %d: warmed up with %d recent requests (%d refused, skipped)", model, version, ran, skipped
        )
        return ran, skipped


def _newest_records(files: list[Path], limit: int) -> list:
    """The newest ``limit`` predict, classify and regress records of ``files`` (oldest first), in order, without
    their responses; the files are read newest first, and only as many as needed."""
    newest: collections.deque = collections.deque()
    if limit <= 0:
        return []
    for path in reversed(files):
        in_file = [r for r in read_records([path]) if r.WhichOneof("log_type") in _KINDS]
        newest.extendleft(reversed(in_file[-(limit - len(newest)) :]))
        if len(newest) >= limit:
            break
    for record in newest:
        getattr(record, record.WhichOneof("log_type")).ClearField("response")
    return list(newest)


def _write_atomically(path: Path, records: list, root: Path) -> None:
    """``records`` as a TFRecord file at ``path``, owner-only; readers see the old file or the new one."""
    import tensorflow as tf

    def write(temp: Path) -> None:
        with tf.io.TFRecordWriter(str(temp)) as writer:
            for record in records:
                writer.write(record.SerializeToString())

    paths.ensure_dir(root)  # first, so that it too is owner-only (mkdir's parents are not)
    paths.replace_atomically(path, write)
