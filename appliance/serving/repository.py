"""Where models live on disk: base paths, their versions, and the models folders (roots) that hold them.

A model's base path holds one directory per version, named by a positive integer (leading zeros allowed,
as TF Serving allows): ``<base>/<version>/saved_model.pb``, or a version folder holding one ``model.keras``,
``model.h5`` or ``model.tflite``. A base path that is itself a SavedModel (``model.export`` writes one) is
version 1. A model root is a folder of such base paths, one per model (the bundled ``models/`` folder), and
of model files (``<name>.keras``, ``.h5``, ``.tflite``: version 1 of model ``<name>``). What a root holds
that is none of these becomes a model in an error state, so it shows where models are shown.
:class:`Repository` turns the configured models and roots into a :class:`ModelSnapshot` per model, each
time it is asked.

    repo = Repository(configs=[], roots=[Path("models")])
    for snapshot in repo.scan(): print(snapshot.config.name, sorted(snapshot.versions), snapshot.error)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..config import TENSORFLOW_PLATFORM, ModelConfig, PolicyKind, VersionPolicy
from ..errors import FailedPrecondition, InvalidArgument, NotFound, ServingError
from .formats import ACCEPTED, model_file_format, model_format, no_model_in

log = logging.getLogger(__name__)

# Entries of a models folder that are no model and no mistake: OS metadata and documents beside the models.
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})
IGNORED_SUFFIXES = frozenset({".md", ".txt", ".py"})


@dataclasses.dataclass(frozen=True)
class ModelSnapshot:
    """One model as found on disk now: every version, and those its policy aspires to serve.

    With ``error``, the entry is no model the appliance can serve: its one version (1, the entry's path)
    is to be shown ended with that error.
    """

    config: ModelConfig
    on_disk: Mapping[int, Path]
    error: ServingError | None = None

    @property
    def versions(self) -> dict[int, Path]:
        """The aspired versions (number -> directory or model file)."""
        if self.error is not None:
            return dict(self.on_disk)
        return self.config.policy.select(self.on_disk)


def parse_version(name: str) -> int | None:
    """The version number a directory name stands for, or None if it is not one."""
    if not name.isdigit() or not name.isascii():
        return None
    version = int(name)
    return version if 0 < version < 2**63 else None


def is_ignored(name: str) -> bool:
    """Whether a models folder's entry is hidden, OS metadata or a document, rather than a model."""
    lowered = name.lower()
    return name.startswith(".") or lowered in IGNORED_NAMES or os.path.splitext(lowered)[1] in IGNORED_SUFFIXES


def scan_versions(base_path: Path) -> dict[int, Path]:
    """Every version under ``base_path``: its numbered folders, else itself as version 1 if it is a model.

    An empty dict if it is gone or holds no model.
    """
    base_path = Path(base_path)
    if base_path.is_file():
        return {1: base_path} if model_file_format(base_path) else {}
    versions: dict[int, Path] = {}
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return versions
    for entry in entries:
        version = parse_version(entry.name)
        # Two spellings of one number ("7" and "007"): keep one, deterministically.
        if version is not None and entry.is_dir() and (version not in versions or entry.name < versions[version].name):
            versions[version] = Path(entry.path)
    if not versions and _is_model(base_path):
        versions[1] = base_path
    return versions


def _is_model(path: Path) -> bool:
    try:
        model_format(path)
    except NotFound:
        return False
    return True


def fingerprint(path: Path) -> tuple:
    """A cheap summary of a version's files (a folder's, or one model file's), to notice it changed."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    if not os.path.isdir(path):
        return ((os.path.basename(path), st.st_size, st.st_mtime_ns),)
    summary = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            file = os.path.join(root, name)
            try:
                st = os.stat(file)
            except OSError:
                continue
            summary.append((os.path.relpath(file, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(summary))


def _holds_anything(folder: Path) -> bool:
    """Whether ``folder`` holds an entry that is not ignored (an empty folder may be a copy just begun)."""
    return any(not is_ignored(entry.name) for entry in os.scandir(folder))


def validate_configs(configs: Sequence[ModelConfig]) -> None:
    """Raise InvalidArgument unless every name is unique, every platform TensorFlow and every base path a folder."""
    seen: set[str] = set()
    for config in configs:
        if config.name in seen:  # TF Serving's words
            raise InvalidArgument(f"Illegal to list model {config.name} multiple times in config list")
        seen.add(config.name)
        if config.platform != TENSORFLOW_PLATFORM:
            raise InvalidArgument(
                f"model {config.name}: model_platform {config.platform!r} is not supported "
                f"(only {TENSORFLOW_PLATFORM!r})"
            )
        if not config.base_path.is_dir():
            raise InvalidArgument(
                f"model {config.name}: base path {config.base_path} does not exist or is not a directory"
            )


class Repository:
    """The configured models plus every model (and every mistake) found under the model roots."""

    ROOT_POLICY = VersionPolicy(PolicyKind.ALL)

    def __init__(self, configs: Sequence[ModelConfig], roots: Iterable[Path] = ()):
        self._roots = [Path(r) for r in roots]
        for root in self._roots:
            if not root.is_dir():
                raise InvalidArgument(f"models folder {root} does not exist or is not a directory")
        validate_configs(configs)
        self._configs = list(configs)
        self._said: set[tuple[str, Path]] = set()  # what was logged once already

    @property
    def configs(self) -> list[ModelConfig]:
        """The configured models (those of the model roots are not among them)."""
        return list(self._configs)

    def replace_configs(self, configs: Sequence[ModelConfig]) -> None:
        """Configure ``configs`` instead of the current list, which stays if they are invalid (InvalidArgument)."""
        validate_configs(configs)
        self._configs = list(configs)

    def _once(self, level: int, key: str, path: Path, message: str, *args) -> None:
        if (key, path) not in self._said:
            self._said.add((key, path))
            log.log(level, message, *args)

    def _root_snapshots(self, taken: dict[str, Path]) -> list[ModelSnapshot]:
        """A snapshot per entry of each root, in root then name order; the first of a name wins."""
        found = []
        for root in self._roots:
            try:
                entries = sorted(os.scandir(root), key=lambda e: e.name)
            except OSError as e:
                log.warning("cannot list models folder %s: %s", root, e)
                continue
            for entry in entries:
                path = Path(entry.path)
                if is_ignored(entry.name):
                    self._once(logging.DEBUG, "ignored", path, "models folder: ignoring %s (not a model)", path)
                    continue
                snapshot = self._entry_snapshot(entry.name, path)
                if snapshot is None:
                    continue
                name = snapshot.config.name
                if name in taken:
                    if snapshot.error is not None or entry.name in taken:
                        self._once(
                            logging.WARNING, "clash", path, "%s is not served: model %s is %s", path, name, taken[name]
                        )
                        continue
                    error = FailedPrecondition(
                        f"{path} is not served: it would be model {name}, which {taken[name]} already is "
                        f"(the first in name order wins); rename or remove one of them"
                    )
                    config = dataclasses.replace(snapshot.config, name=entry.name)
                    snapshot = ModelSnapshot(config, {1: path}, error)
                taken[snapshot.config.name] = path
                found.append(snapshot)
        return found

    def _entry_snapshot(self, entry_name: str, path: Path) -> ModelSnapshot | None:
        """The model a root's entry is, or its error state; None for a folder that is empty so far."""
        config = ModelConfig(name=entry_name, base_path=path, policy=self.ROOT_POLICY)
        if path.is_file():
            if model_file_format(path) is None:
                return ModelSnapshot(config, {1: path}, NotFound(f"{path} is not a model: {ACCEPTED}"))
            return ModelSnapshot(dataclasses.replace(config, name=path.stem), {1: path})
        if not path.is_dir():
            error = NotFound(f"{path} is neither a model file nor a folder (a broken link?): {ACCEPTED}")
            return ModelSnapshot(config, {1: path}, error)
        snapshot = self._folder_snapshot(config)
        return snapshot if snapshot.on_disk else None

    def _folder_snapshot(self, config: ModelConfig) -> ModelSnapshot:
        """A base path's versions; an error state when it holds something, but nothing servable."""
        path = config.base_path
        try:
            on_disk = scan_versions(path)
            if not on_disk and _holds_anything(path):
                return ModelSnapshot(config, {1: path}, no_model_in(path))
        except OSError as e:
            return ModelSnapshot(config, {1: path}, NotFound(f"cannot read {path}: {e.strerror}"))
        if on_disk.get(1) == path:
            self._once(
                logging.INFO,
                "flat",
                path,
                "model %s: %s holds a model without version folder, served as version 1",
                config.name,
                path,
            )
        return ModelSnapshot(config, on_disk)

    def scan(self) -> list[ModelSnapshot]:
        """Every model with its aspired versions, in configuration order, then each root's in name order."""
        configured = [self._folder_snapshot(config) for config in self._configs]
        return configured + self._root_snapshots({c.name: c.base_path for c in self._configs})
