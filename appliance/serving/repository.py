"""Where models live on disk: base paths, their numbered versions, and roots of models.

A model's base path holds one directory per version, named by a positive
integer (leading zeros allowed, as TF Serving allows): ``<base>/<version>/saved_model.pb``.
A model root is a folder whose sub-folders are such base paths, one per model
(the bundled ``models/`` folder). :class:`Repository` turns the configured
models and roots into a :class:`ModelSnapshot` per model, each time it is asked.

    repo = Repository(configs=[], roots=[Path("models")])
    for snapshot in repo.scan(): print(snapshot.config.name, sorted(snapshot.versions))
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..config import TENSORFLOW_PLATFORM, ModelConfig, PolicyKind, VersionPolicy
from ..errors import InvalidArgument

log = logging.getLogger(__name__)

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


@dataclasses.dataclass(frozen=True)
class ModelSnapshot:
    """One model as found on disk now: every version directory, and those its policy aspires to serve."""

    config: ModelConfig
    on_disk: Mapping[int, Path]

    @property
    def versions(self) -> dict[int, Path]:
        """The aspired versions (number -> directory)."""
        return self.config.policy.select(self.on_disk)


def parse_version(name: str) -> int | None:
    """The version number a directory name stands for, or None if it is not one."""
    if not name.isdigit() or not name.isascii():
        return None
    version = int(name)
    return version if 0 < version < 2**63 else None


def scan_versions(base_path: Path) -> dict[int, Path]:
    """Every version directory under ``base_path`` (an empty dict if it is gone)."""
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
    return versions


def fingerprint(version_dir: Path) -> tuple:
    """A cheap summary of a version directory's files, to notice it changed."""
    summary = []
    for root, _dirs, files in os.walk(version_dir):
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            summary.append((os.path.relpath(path, version_dir), st.st_size, st.st_mtime_ns))
    return tuple(sorted(summary))


def _looks_like_model(path: Path) -> bool:
    return any(parse_version(p.name) is not None for p in path.iterdir() if p.is_dir())


class Repository:
    """The configured models plus every model found under the model roots."""

    ROOT_POLICY = VersionPolicy(PolicyKind.ALL)

    def __init__(self, configs: Sequence[ModelConfig], roots: Iterable[Path] = ()):
        self._configs = list(configs)
        self._roots = [Path(r) for r in roots]
        self._validate()

    def _validate(self) -> None:
        names = [c.name for c in self._configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidArgument(f"model name configured more than once: {', '.join(duplicates)}")
        for config in self._configs:
            if config.platform != TENSORFLOW_PLATFORM:
                raise InvalidArgument(
                    f"model {config.name}: model_platform {config.platform!r} is not supported "
                    f"(only {TENSORFLOW_PLATFORM!r})"
                )
            if not config.base_path.is_dir():
                raise InvalidArgument(
                    f"model {config.name}: base path {config.base_path} does not exist or is not a directory"
                )
        for root in self._roots:
            if not root.is_dir():
                raise InvalidArgument(f"models folder {root} does not exist or is not a directory")

    def _root_configs(self) -> list[ModelConfig]:
        taken = {c.name for c in self._configs}
        found = []
        for root in self._roots:
            try:
                children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError as e:
                log.warning("cannot list models folder %s: %s", root, e)
                continue
            for child in children:
                if child.name in taken or not _looks_like_model(child):
                    continue
                taken.add(child.name)
                found.append(ModelConfig(name=child.name, base_path=child, policy=self.ROOT_POLICY))
        return found

    def scan(self) -> list[ModelSnapshot]:
        """Every model with its aspired versions, in configuration order."""
        snapshots = []
        for config in self._configs + self._root_configs():
            snapshots.append(ModelSnapshot(config, scan_versions(config.base_path)))
        return snapshots
