"""The model manager: loads and unloads versions, tracks their TF Serving states, hands out servables.

Versions go START -> LOADING -> AVAILABLE -> UNLOADING -> END as the repository changes; requests
hold counted handles, so a version closes only after its last request (see :class:`ModelManager`).

    manager = ModelManager(repository, runtime, poll_seconds=1.0)
    manager.start()
    with manager.acquire("digits") as handle:
        handle.servable.predict("serving_default", {"pixels": batch})
    manager.reload_config([ModelConfig("iris", Path("models/iris"))])  # TF Serving's ReloadConfig
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import ModelConfig
from ..errors import Code, FailedPrecondition, InvalidArgument, NotFound, ServingError
from .batching import BatchingPolicy
from .observer import ServingObserver
from .recent_warmup import RecentRequestWarmup
from .repository import ModelSnapshot, Repository, fingerprint, scan_versions, validate_configs
from .request_log import RequestLog
from .runtime import DEFAULT_SIGNATURE, Features, Runtime, Servable
from .shadow import ShadowTraffic

if TYPE_CHECKING:
    from ..preferences import PreferenceStore

log = logging.getLogger(__name__)


class State(enum.Enum):
    """TF Serving's servable states (ModelVersionStatus.State)."""

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """A version's state, and the error that ended it if it failed."""

    version: int
    state: State
    error: ServingError | None = None


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """What status pages and the CLI show about one model."""

    name: str
    base_path: Path
    policy: str
    labels: dict[str, int]
    chosen_version: int | None
    versions: list[VersionStatus]  # newest first
    unloaded: bool = False  # unloaded by request (:meth:`ModelManager.unload_model`)


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How versions load: TF Serving's --num_load_threads, --max_num_load_retries, --load_retry_interval_micros."""

    threads: int = 0  # versions loaded at once; 0: one at a time, in the thread that polls
    retries: int = 0  # tries after the first failed one, before the version ends in error
    retry_interval_seconds: float = 60.0


class ModelsNotAvailable(ServingError):
    """:meth:`ModelManager.reload_config` put the new config in force, but some of its new models did not load."""

    code = Code.UNKNOWN


@dataclasses.dataclass(frozen=True)
class LoadProgress:
    """The version a poll is loading now, and its place in that poll's queue."""

    model: str
    version: int
    index: int
    total: int

    def describe(self) -> str:
        return f"loading {self.model} v{self.version} ({self.index}/{self.total})"


class _Version:
    __slots__ = ("error", "failed_move", "fingerprint", "number", "path", "refs", "servable", "state")

    def __init__(self, number: int, path: Path):
        self.number = number
        self.path = path
        self.state = State.START
        self.error: ServingError | None = None
        self.servable: Servable | None = None
        self.refs = 0
        self.fingerprint: tuple = ()
        # The folder this version's model moved to (a new base_path) and its fingerprint, when loading it
        # there failed: this one keeps serving, and the move is tried again once those files change.
        self.failed_move: tuple[Path, tuple] | None = None

    def status(self) -> VersionStatus:
        return VersionStatus(self.number, self.state, self.error)


class _Model:
    __slots__ = ("config", "pinned", "unloaded", "versions")

    def __init__(self, config: ModelConfig, pinned: int | None = None):
        self.config = config
        self.versions: dict[int, _Version] = {}
        self.pinned = pinned  # the version the user chose, if any
        self.unloaded = False  # unloaded by request: no version aspired until it is loaded again

    def chosen(self) -> _Version | None:
        """The pinned version while it is AVAILABLE, else the newest AVAILABLE one."""
        pinned = self.versions.get(self.pinned) if self.pinned is not None else None
        if pinned is not None and pinned.state is State.AVAILABLE:
            return pinned
        available = [v for v in self.versions.values() if v.state is State.AVAILABLE]
        return max(available, key=lambda v: v.number, default=None)

    def aspired(self, snapshot: ModelSnapshot) -> dict[int, Path]:
        """The policy's versions, plus the pinned one while it is on disk; none while unloaded by request."""
        if self.unloaded:
            return {}
        versions = snapshot.versions
        pinned = self.pinned
        if pinned is not None and pinned in snapshot.on_disk:
            versions[pinned] = snapshot.on_disk[pinned]
        return versions


class ServableHandle:
    """A counted reference to an AVAILABLE version; release it (or leave the ``with``) when done."""

    __slots__ = ("_manager", "_version", "name", "servable", "version")

    def __init__(self, manager: ModelManager, name: str, version: _Version):
        self._manager = manager
        self._version: _Version | None = version
        self.name = name
        self.version = version.number
        self.servable: Servable = version.servable  # type: ignore[assignment]  # an AVAILABLE version holds one

    def record_predict(self, signature_name: str, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]):
        """Hand an answered Predict to the request log and to shadow traffic (a dict lookup each when the model is
        neither recorded nor shadowed)."""
        request_log = self._manager.request_log
        if request_log is not None:
            request_log.record_predict(self.name, self.version, signature_name or DEFAULT_SIGNATURE, inputs, outputs)
        self._manager.shadow.offer(self.name, self.version, signature_name, inputs, outputs)

    def record_examples(
        self, kind: str, signature_name: str, context: Features | None, examples: Sequence[Features], answer: Sequence
    ) -> None:
        """Hand an answered Classify (``kind`` "classify") or Regress ("regress") to the request log."""
        request_log = self._manager.request_log
        if request_log is not None:
            request_log.record_examples(
                kind, self.name, self.version, signature_name or DEFAULT_SIGNATURE, context, examples, answer
            )

    def release(self) -> None:
        if self._version is not None:
            self._manager._release(self._version)
            self._version = None

    def __enter__(self) -> ServableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class ModelManager:
    """Owns every loaded version; safe to call from any number of request threads.

    Each version found by the :class:`~appliance.serving.repository.Repository`
    goes START -> LOADING -> AVAILABLE -> UNLOADING -> END, or from LOADING to END
    with an error that status reports and that never disturbs other versions or
    models. A background thread polls the repository: a new version is loaded
    before a removed one is unloaded, and a version is only closed once the last
    request holding a handle to it has finished (handles are reference-counted).
    A version that failed to load is retried when its files change, so a model
    that was still being copied is picked up once it is complete.

    Each model has a *chosen* version: the one used by requests that name no
    version (``/predict`` and unversioned TF Serving calls). It is the version the
    user chose with :meth:`choose` (remembered in the preferences) while that is
    AVAILABLE, else the newest AVAILABLE version. Choosing a version that is not
    loaded loads it first; requests already running finish on the old one, so a
    switch drops nothing. :meth:`reload` loads a model's AVAILABLE versions afresh
    from disk and swaps them in the same way, and :meth:`reload_config` replaces
    the configured models as TF Serving's ReloadConfig does.

    :meth:`unload_model` unloads every version of a model and keeps it unloaded
    across polls until :meth:`load_model` (Triton's model repository extension);
    that mark lives in memory only, so a restart serves the model again, as
    Triton's does, and a config reload that drops the model forgets it.

    ``loading`` sets how many versions load at once and how often a failed load is
    retried; ``allow_labels_for_unavailable`` is TF Serving's
    --allow_version_labels_for_unavailable_models (see :meth:`reload_config`).
    """

    def __init__(
        self,
        repository: Repository,
        runtime: Runtime,
        poll_seconds: float = 1.0,
        preferences: PreferenceStore | None = None,
        observer: ServingObserver | None = None,
        batching: BatchingPolicy | None = None,
        loading: LoadOptions | None = None,
        allow_labels_for_unavailable: bool = False,
        request_log: RequestLog | None = None,
        recent_warmup: RecentRequestWarmup | None = None,
    ):
        self.request_log = request_log  # what the APIs record answered requests into (see ServableHandle)
        self._recent_warmup = recent_warmup  # replayed by each version after its own warm-up
        self._repository = repository
        self._loading = loading or LoadOptions()
        self._allow_labels_for_unavailable = allow_labels_for_unavailable
        self._batching = batching or BatchingPolicy(enabled=False)
        self.observer = observer or ServingObserver()
        self._runtime = runtime
        self._poll_seconds = poll_seconds
        self._preferences = preferences
        self._listeners: list[Callable[[], None]] = []
        self._progress: LoadProgress | None = None
        self._reconciling = threading.Lock()  # one poll, choose() or reload_config() changes versions at a time
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._models: dict[str, _Model] = {}
        self._acquisitions = 0  # handles given out so far: background work watches it for live traffic
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.shadow = ShadowTraffic(self)  # where record_predict sends a sampled share of requests to a candidate

    @property
    def device(self):
        return self._runtime.device

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Load the initial versions and keep polling, in a background thread."""
        self._thread = threading.Thread(target=self._poll_forever, name="appliance-model-poller", daemon=True)
        self._thread.start()

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until the first pass over the repository has loaded (or failed) every version."""
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        """Stop polling and unload every version once its in-flight requests finish."""
        self.shadow.stop()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            loaded = [
                (name, v) for name, m in self._models.items() for v in m.versions.values() if v.state is State.AVAILABLE
            ]
        for name, version in loaded:
            self._unload(name, version)

    def _poll_forever(self) -> None:
        try:
            self.poll()
        finally:
            self._ready.set()
        # TensorFlow and the models loaded are here to stay: frozen, the collector stops walking their ~10^6
        # objects, which it did whenever a large JSON body (10^5 lists) triggered a full collection (~200 ms).
        gc.collect()
        gc.freeze()
        if self._poll_seconds <= 0:
            return
        while not self._stopping.wait(self._poll_seconds):
            try:
                self.poll()
            except Exception:  # a poll must never end the poller
                log.exception("polling the model repository failed")

    # -- reconciling disk with memory --------------------------------------

    def poll(self) -> None:
        """One pass: load new versions (and changed failed ones), then retire removed ones."""
        with self._reconciling:
            self._poll()

    def _poll(self, only: str | None = None) -> None:
        """:meth:`poll`'s pass, under ``_reconciling``; ``only``: for that model alone, the others left as they are."""
        snapshots = self._repository.scan()
        if only is not None:
            snapshots = [snapshot for snapshot in snapshots if snapshot.config.name == only]
        to_load: list[tuple[str, _Version]] = []
        to_move: list[tuple[str, _Version, _Version]] = []
        refused: list[tuple[str, int, ServingError]] = []
        aspired: dict[str, dict[int, Path]] = {}
        with self._lock:
            for snapshot in snapshots:
                aspired[snapshot.config.name] = self._track(snapshot, to_load, to_move, refused)
            to_unload = [
                (name, v)
                for name, model in self._models.items()
                if only is None or name == only
                for v in model.versions.values()
                if v.state is State.AVAILABLE and v.number not in aspired.get(name, {})
            ]
        for name, number, error in refused:
            log.warning("model %s version %d: not served: %s", name, number, error.message)
        # The versions unversioned requests will use first, so each model answers as soon as possible.
        to_load.sort(key=lambda item: item[1].number != self._first_choice(item[0], aspired[item[0]]))
        self._load_all(to_load + [(name, fresh) for name, _, fresh in to_move])
        for name, old, fresh in to_move:
            self._finish_move(name, old, fresh)
        for name, version in to_unload:
            self._unload(name, version)
        with self._lock:
            gone = [n for n in self._models if n not in aspired and (only is None or n == only)]
            for name in gone:
                log.info("model %s: no longer configured or on disk", name)
                del self._models[name]
        if to_load or to_move or refused or to_unload or gone:
            self._notify()

    def _track(
        self,
        snapshot: ModelSnapshot,
        to_load: list[tuple[str, _Version]],
        to_move: list[tuple[str, _Version, _Version]],
        refused: list[tuple[str, int, ServingError]],
    ) -> dict[int, Path]:
        """Bring one model's versions in line with ``snapshot`` (under the lock); returns its aspired versions.

        Versions to load are added to ``to_load``; those the repository found no model for end at once,
        with its error, and are added to ``refused``. An AVAILABLE version now found in another folder (its
        model's base_path changed) is added to ``to_move`` with a fresh version to load from there.
        """
        name = snapshot.config.name
        model = self._models.get(name)
        if model is None:
            pinned = self._preferences.chosen_version(name) if self._preferences else None
            model = self._models[name] = _Model(snapshot.config, pinned)
            if snapshot.error is None:  # else the version's error is logged
                log.info(
                    "model %s: serving %s (versions: %s)",
                    name,
                    snapshot.config.base_path,
                    snapshot.config.policy.describe(),
                )
        model.config = snapshot.config
        aspired = model.aspired(snapshot)
        for number, path in aspired.items():
            current = model.versions.get(number)
            if current is not None and current.state is State.AVAILABLE and current.path != path:
                if snapshot.error is None and current.failed_move != (path, fingerprint(path)):
                    to_move.append((name, current, _Version(number, path)))
                continue
            if self._needs_load(current, path):
                version = model.versions[number] = _Version(number, path)
                if snapshot.error is None:
                    to_load.append((name, version))
                else:
                    version.state, version.error = State.END, snapshot.error
                    version.fingerprint = fingerprint(path)
                    refused.append((name, number, snapshot.error))
        for number, version in list(model.versions.items()):
            if number not in aspired and version.state is State.END and version.error:
                del model.versions[number]  # a failed version that left the disk
        return aspired

    def _first_choice(self, name: str, aspired: dict[int, Path]) -> int | None:
        """The version that will be chosen once loaded: the pinned one if it is aspired, else the newest."""
        pinned = self._models[name].pinned
        return pinned if pinned in aspired else max(aspired, default=None)

    @staticmethod
    def _needs_load(current: _Version | None, path: Path) -> bool:
        if current is None:
            return True
        if current.state is not State.END:
            return False
        # Retired versions that reappear are loaded again; failed ones only once their files change.
        return current.error is None or fingerprint(path) != current.fingerprint

    def _load_all(self, queue: list[tuple[str, _Version]]) -> None:
        """Load the versions of ``queue``: in its order, one at a time or ``loading.threads`` at once.

        :meth:`loading_progress` names the first of the loads under way, with its place in ``queue``.
        """
        running: dict[int, LoadProgress] = {}

        def load(index: int, name: str, version: _Version) -> None:
            with self._lock:
                running[index] = LoadProgress(name, version.number, index, len(queue))
                self._progress = running[min(running)]
            try:
                self._load(name, version)
            finally:
                with self._lock:
                    del running[index]
                    self._progress = running[min(running)] if running else None

        if self._loading.threads > 0 and len(queue) > 1:
            with ThreadPoolExecutor(self._loading.threads, thread_name_prefix="appliance-load") as pool:
                for future in [pool.submit(load, i, name, v) for i, (name, v) in enumerate(queue, 1)]:
                    future.result()
        else:
            for index, (name, version) in enumerate(queue, 1):
                load(index, name, version)

    def _load(self, name: str, version: _Version) -> None:
        """Load ``version``: AVAILABLE, or END with the error of its last try (``loading.retries`` more tries)."""
        with self._lock:
            version.state = State.LOADING
        self._notify()
        started = time.perf_counter()
        if self._recent_warmup is not None:
            self._recent_warmup.before_load(name)
        servable, error = self._try_load(name, version)
        for attempt in range(1, self._loading.retries + 1):
            if error is None:
                break
            log.warning(
                "model %s version %d: failed to load, retry %d of %d in %g s: %s",
                name,
                version.number,
                attempt,
                self._loading.retries,
                self._loading.retry_interval_seconds,
                error.message,
            )
            if self._stopping.wait(max(self._loading.retry_interval_seconds, 0)):
                break
            servable, error = self._try_load(name, version)
        with self._lock:
            if error is None:
                version.servable, version.state = servable, State.AVAILABLE
            else:
                version.error, version.state = error, State.END
        seconds = time.perf_counter() - started
        self.observer.model_loaded(name, version.number, seconds, error)
        if error is None:
            log.info("model %s version %d: AVAILABLE (loaded in %.0f ms)", name, version.number, seconds * 1000)
        else:
            log.warning("model %s version %d: failed to load: %s", name, version.number, error.message)

    def _try_load(self, name: str, version: _Version) -> tuple[Servable | None, ServingError | None]:
        """One try at loading ``version``'s files: its servable, or the error that says why not."""
        version.fingerprint = fingerprint(version.path)  # the files this try read
        try:
            servable = self._runtime.load(version.path)
            try:
                if self._recent_warmup is not None:
                    self._recent_warmup.replay(name, version.number, servable)
                return self._batching.wrap(servable, version.path, name, version.number, self.observer), None
            except BaseException:
                servable.close()
                raise
        except ServingError as e:
            return None, e
        except Exception as e:  # keep a surprising loader failure to this version alone
            log.exception("model %s version %d: unexpected error while loading", name, version.number)
            return None, ServingError(f"Failed to load {version.path}: {type(e).__name__}: {e}", Code.UNKNOWN)

    def _swap_in(self, name: str, old: _Version, fresh: _Version) -> bool:
        """Serve the loaded ``fresh`` in place of ``old``, closed after its last request; False if ``old`` left.

        Requests arriving meanwhile get ``old``; once ``fresh`` is in, those holding ``old`` finish on it.
        """
        swapped = False
        with self._lock:
            model = self._models.get(name)
            if model is not None and model.versions.get(old.number) is old and old.state is State.AVAILABLE:
                model.versions[old.number] = fresh
                old.state, swapped = State.UNLOADING, True
        self._close_when_released(old if swapped else fresh)
        return swapped

    def _finish_move(self, name: str, old: _Version, fresh: _Version) -> None:
        """Swap in a version loaded from its model's new base_path; if that failed, ``old`` keeps serving."""
        if fresh.state is State.AVAILABLE:
            if self._swap_in(name, old, fresh):
                log.info("model %s version %d: now served from %s", name, fresh.number, fresh.path)
            return
        assert fresh.error is not None  # _load() sets it whenever the version is not AVAILABLE
        with self._lock:
            old.failed_move = (fresh.path, fresh.fingerprint)
        log.warning(
            "model %s version %d: keeps serving %s, since %s failed to load: %s",
            name,
            old.number,
            old.path,
            fresh.path,
            fresh.error.message,
        )

    def _unload(self, name: str, version: _Version) -> None:
        with self._lock:
            version.state = State.UNLOADING
        self._notify()
        self._close_when_released(version)
        log.info("model %s version %d: unloaded", name, version.number)

    def _close_when_released(self, version: _Version) -> None:
        """Wait until no handle holds ``version``, then close its servable; it ends END."""
        with self._lock:
            while version.refs:
                self._released.wait()
            servable, version.servable = version.servable, None
        if servable is not None:
            servable.close()
            del servable
            self._runtime.reclaim_memory()
        with self._lock:
            version.state = State.END

    # -- reloading a model ---------------------------------------------------

    def reload(self, name: str) -> list[int]:
        """Load every AVAILABLE version of ``name`` afresh from disk and swap it in; returns their numbers.

        Requests arriving meanwhile get the old servable until the new one is
        swapped in; those holding the old one finish on it, and it is closed
        after the last. A version that fails to load keeps serving its old
        servable; the first such failure is raised once every version was tried.
        """
        with self._reconciling:
            with self._lock:
                model = self._configured(name)
                current = self._available(model)
                if not current:
                    why = self._unloaded_hint(name) if model.unloaded else ""
                    raise FailedPrecondition(f"model {name} has no AVAILABLE version to reload. {why}".rstrip())
            failures = self._reload_versions(name, current)
        self._notify()
        if failures:
            raise self._reload_failure(name, *failures[0])
        return [v.number for v in current]

    @staticmethod
    def _available(model: _Model) -> list[_Version]:
        """``model``'s AVAILABLE versions, newest first (under the lock)."""
        return [v for _, v in sorted(model.versions.items(), reverse=True) if v.state is State.AVAILABLE]

    def _reload_versions(self, name: str, current: list[_Version]) -> list[tuple[int, ServingError]]:
        """Load each of ``current`` afresh and swap it in (under ``_reconciling``); the versions that failed."""
        failures: list[tuple[int, ServingError]] = []
        for old in current:
            fresh = _Version(old.number, old.path)  # its own refcount: held handles keep the old one
            self._load(name, fresh)
            if fresh.state is not State.AVAILABLE:
                assert fresh.error is not None  # _load() sets it whenever the version is not AVAILABLE
                failures.append((old.number, fresh.error))
                continue
            if self._swap_in(name, old, fresh):
                log.info("model %s version %d: reloaded", name, old.number)
        return failures

    @staticmethod
    def _reload_failure(name: str, number: int, error: ServingError) -> ServingError:
        return ServingError(
            f"version {number} of model {name} could not be reloaded and keeps serving as it was: {error.message}",
            error.code,
        )

    # -- unloading and loading by request (Triton's model repository extension) ---------------------------------

    def unload_model(self, name: str) -> list[int]:
        """Unload every version of model ``name`` and keep it unloaded until :meth:`load_model`.

        New requests get NotFound at once, saying how to load it again; those holding a version finish on it,
        and this returns once the last has (the versions end END). Returns the versions that were unloaded.
        """
        with self._reconciling:
            with self._lock:
                model = self._configured(name)
                model.unloaded = True
                current = self._available(model)
                for version in current:  # in the same step as the mark: no request gets a version after it
                    version.state = State.UNLOADING
            self._notify()
            for version in current:
                self._close_when_released(version)
                log.info("model %s version %d: unloaded by request", name, version.number)
        log.info("model %s: unloaded until it is loaded again", name)
        self._notify()
        return [v.number for v in current]

    def load_model(self, name: str) -> list[int]:
        """Serve model ``name``'s aspired versions again: returns their numbers once served, or raises why not.

        An unloaded model (:meth:`unload_model`) loads its versions again; a loaded one reloads them afresh
        from disk as :meth:`reload` does (requests finish on the old ones), and loads those its policy aspires
        to that are not loaded; versions that failed to load are tried again. Raises the first failure's
        error (its code, e.g. NOT_FOUND for a folder without a model), naming the versions that do serve.
        """
        with self._reconciling:
            with self._lock:
                model = self._configured(name)
                model.unloaded = False
                current = self._available(model)
                for number, version in list(model.versions.items()):
                    if version.state is State.END and version.error is not None:
                        del model.versions[number]  # asked for explicitly: tried again, changed files or not
            reloaded = self._reload_versions(name, current)
            self._poll(only=name)  # loads its aspired versions that are not loaded (all of them after an unload)
            with self._lock:
                polled = self._models.get(name)  # a poll may have found it gone from disk
                versions = sorted(polled.versions.values(), key=lambda v: v.number, reverse=True) if polled else []
                failed = [(v.number, v.error) for v in versions if v.state is State.END and v.error is not None]
                served = [v.number for v in versions if v.state is State.AVAILABLE]
                where = polled.config.base_path if polled else "its base_path"
        self._notify()
        if reloaded:
            raise self._reload_failure(name, *reloaded[0])
        if failed:
            number, error = failed[0]
            serving = f" Versions served: {', '.join(map(str, served))}." if served else ""
            raise ServingError(f"version {number} of model {name} failed to load: {error.message}{serving}", error.code)
        if not served:
            raise NotFound(f"model {name} has no version to load under {where}")
        log.info("model %s: loaded by request (versions %s)", name, ", ".join(map(str, served)))
        return served

    # -- replacing the configured models -------------------------------------

    def reload_config(self, configs: Sequence[ModelConfig]) -> None:
        """Serve ``configs`` in place of the configured models, as TF Serving's ReloadConfig does.

        New models are loaded, models no longer listed are unloaded (those found under a model root
        stay), and changed policies, labels and base paths are applied, through the same path as a poll:
        new versions load before removed ones unload, which close after their last request. An invalid
        list (InvalidArgument) or a label naming a version that is not AVAILABLE (FailedPrecondition,
        unless ``allow_labels_for_unavailable`` and the label is new or names the same version) leaves
        the old config in force. Returns once the change is made; raises :class:`ModelsNotAvailable`
        when a model new to the config has no version that loaded (the new config stays in force).
        """
        validate_configs(configs)
        with self._reconciling:
            with self._lock:
                self._check_labels(configs)
            before = {c.name for c in self._repository.configs}
            self._repository.replace_configs(configs)
            log.info("model config: now %s", ", ".join(c.name for c in configs) or "no configured model")
            self._poll()
            with self._lock:
                failed = [why for c in configs if c.name not in before and (why := self._unavailable(c.name))]
        if failed:  # TF Serving's words (ServerCore::WaitUntilModelsAvailable)
            raise ModelsNotAvailable(f"{len(failed)} model(s) did not become available: {{{''.join(failed)}}}")

    def _check_labels(self, configs: Sequence[ModelConfig]) -> None:
        """Refuse a label naming a version that is not AVAILABLE now, as TF Serving does (under the lock)."""
        for config in configs:
            model = self._models.get(config.name)
            current = model.config.labels if model else {}
            for label, number in config.labels.items():
                if self._allow_labels_for_unavailable and current.get(label, number) == number:
                    continue
                version = model.versions.get(number) if model else None
                if version is None or version.state is not State.AVAILABLE:
                    raise FailedPrecondition(
                        f"Request to assign label to version {number} of model {config.name}, "
                        "which is not currently available for inference"
                    )

    def _unavailable(self, name: str) -> str | None:
        """None if model ``name`` has an AVAILABLE version, else why not in TF Serving's words (under the lock)."""
        model = self._models.get(name)
        versions = sorted(model.versions.values(), key=lambda v: v.number, reverse=True) if model else []
        if any(v.state is State.AVAILABLE for v in versions):
            return None
        failed = next((v for v in versions if v.error is not None), None)
        if failed is None or failed.error is None:
            where = model.config.base_path if model else "its base_path"
            return f"{{{{name: {name}}} due to error: NOT_FOUND: no version found under {where}}}, "
        error = failed.error
        return f"{{{{name: {name} version: {failed.number}}} due to error: {error.code.name}: {error.message}}}, "

    # -- choosing a version ------------------------------------------------

    def choose(self, name: str, version: int | None = None, label: str | None = None) -> int:
        """Make a version the chosen one of model ``name`` (and remember it); returns its number.

        A version on disk that is not loaded is loaded first; until it is
        AVAILABLE the previous choice keeps answering, and requests running on
        the previous version finish there.
        """
        with self._reconciling:
            with self._lock:
                model = self._models.get(name)
                if label is not None:
                    version = self._label_version(name, model, label)
                if model is None:
                    raise NotFound(f"Could not find any versions of model {name}. {self._models_served()}")
                if version is None:
                    raise InvalidArgument("choose a version by number or label")
                if model.unloaded:
                    raise FailedPrecondition(f"model {name} is unloaded. {self._unloaded_hint(name)}")
                current = model.versions.get(version)
                ready = current is not None and current.state is State.AVAILABLE
            if not ready:
                self._load_on_demand(model, version)
            with self._lock:
                model.pinned = version
            if self._preferences is not None:
                try:
                    self._preferences.set_chosen_version(name, version)
                except OSError as e:  # the switch stands; only remembering it failed
                    log.warning("model %s: version %d chosen but not remembered: %s", name, version, e)
        log.info("model %s: version %d chosen", name, version)
        self._notify()
        return version

    def _load_on_demand(self, model: _Model, number: int) -> None:
        on_disk = scan_versions(model.config.base_path)
        path = on_disk.get(number)
        if path is None:
            listed = ", ".join(map(str, sorted(on_disk, reverse=True))) or "none"
            name = model.config.name
            raise NotFound(f"Could not find version {number} of model {name}. Versions on disk: {listed}.")
        with self._lock:
            version = model.versions.get(number)
            if version is None or version.state is State.END:
                version = model.versions[number] = _Version(number, path)
        if version.state is State.START:
            self._load(model.config.name, version)
        if version.state is not State.AVAILABLE:
            error = version.error.message if version.error else version.state.value
            raise FailedPrecondition(f"version {number} of model {model.config.name} cannot be served: {error}")

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from the manager's threads) after every change of versions or choices."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener's failure must not stop loading
                log.exception("a state listener failed")

    def loading_progress(self) -> LoadProgress | None:
        """What the current poll is loading, e.g. digits v2, the 1st of 3; None when idle."""
        return self._progress

    # -- requests ----------------------------------------------------------

    def acquire(self, name: str, version: int | None = None, label: str | None = None) -> ServableHandle:
        """A handle to the requested version: explicit, by label, or the chosen one."""
        found: _Version | None
        with self._lock:
            model = self._models.get(name)
            if label is not None:
                version = self._label_version(name, model, label)
            if version is None:
                chosen = model.chosen() if model else None
                if chosen is None:
                    raise NotFound(f"Servable not found for request: Latest({name}). {self._hint(name, model)}")
                found = chosen
            else:
                found = model.versions.get(version) if model else None
                if found is None or found.state is not State.AVAILABLE:
                    raise NotFound(
                        f"Servable not found for request: Specific({name}, {version}). {self._hint(name, model)}"
                    )
            found.refs += 1
            self._acquisitions += 1
        return ServableHandle(self, name, found)

    @property
    def acquisitions(self) -> int:
        """How many handles :meth:`acquire` has given out: unchanged over a while means no request was served."""
        return self._acquisitions

    def _release(self, version: _Version) -> None:
        with self._lock:
            version.refs -= 1
            if not version.refs:
                self._released.notify_all()

    def _label_version(self, name: str, model: _Model | None, label: str) -> int:
        labels = model.config.labels if model else {}
        if label not in labels:
            if model is None:
                hint = self._models_served()
            elif labels:
                listed = ", ".join(f"{k} (version {v})" for k, v in sorted(labels.items()))
                hint = f"Labels of model {name}: {listed}."
            else:
                hint = f"Model {name} has no labels."
            raise InvalidArgument(f"Unrecognized servable version label: {label}. {hint}")
        return labels[label]

    def _configured(self, name: str) -> _Model:
        """Model ``name``, or NotFound naming the models served (under the lock)."""
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"Could not find any versions of model {name}. {self._models_served()}")
        return model

    # Hints added to TF Serving's messages, which clients may match on, so they follow its first sentence.
    # Called with the lock held.

    def _models_served(self) -> str:
        if not self._models:
            return "No model is served."
        return "Models served: " + ", ".join(sorted(self._models)) + "."

    def _hint(self, name: str, model: _Model | None) -> str:
        """The models served when ``name`` is none of them, else the versions of ``name`` and their states."""
        if model is None:
            return self._models_served()
        if model.unloaded:
            return f"Model {name} was unloaded by request. {self._unloaded_hint(name)}"
        if not model.versions:
            return f"Model {name} has no versions yet."
        versions = ", ".join(
            str(v.number) if v.state is State.AVAILABLE else f"{v.number} ({v.state.value})"
            for _, v in sorted(model.versions.items(), reverse=True)
        )
        return f"Versions of model {name}: {versions}."

    @staticmethod
    def _unloaded_hint(name: str) -> str:
        return f"Load it again with POST /v2/repository/models/{name}/load."

    # -- status ------------------------------------------------------------

    def model_names(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def chosen_version(self, name: str) -> int | None:
        with self._lock:
            model = self._models.get(name)
            chosen = model.chosen() if model else None
            return chosen.number if chosen else None

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """TF Serving's GetModelStatus: every version newest first, or the one asked for.

        There is no label: TF Serving's status reads only the version number, so a label lists every version.
        """
        with self._lock:
            model = self._models.get(name)
            if model is None or not model.versions:
                if version is not None:
                    raise NotFound(f"Could not find version {version} of model {name}. {self._hint(name, model)}")
                raise NotFound(f"Could not find any versions of model {name}. {self._hint(name, model)}")
            if version is None:
                return [v.status() for _, v in sorted(model.versions.items(), reverse=True)]
            if version not in model.versions:
                raise NotFound(f"Could not find version {version} of model {name}. {self._hint(name, model)}")
            return [model.versions[version].status()]

    def summaries(self) -> list[ModelSummary]:
        with self._lock:
            return [self._summary(name, model) for name, model in self._models.items()]

    def summary(self, name: str) -> ModelSummary:
        with self._lock:
            model = self._configured(name)
            return self._summary(name, model)

    @staticmethod
    def _summary(name: str, model: _Model) -> ModelSummary:
        chosen = model.chosen()
        return ModelSummary(
            name=name,
            base_path=model.config.base_path,
            policy=model.config.policy.describe(),
            labels=dict(model.config.labels),
            chosen_version=chosen.number if chosen else None,
            versions=[v.status() for _, v in sorted(model.versions.items(), reverse=True)],
            unloaded=model.unloaded,
        )
