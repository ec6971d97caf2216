"""Typed settings for the appliance, built once at start and passed down.

Where models come from is described by :class:`ModelConfig` (one model: a base
path holding numbered version directories) and by model roots (a folder whose
sub-folders are models, like the bundled ``models/``). A TF Serving
``models.config`` text proto is read unchanged by :func:`read_model_server_config`.

    settings = Settings(port=0, model_config_file=Path("models.config"))
    configs = read_model_server_config(settings.model_config_file)
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Mapping

from google.protobuf import text_format

from .errors import InvalidArgument

TENSORFLOW_PLATFORM = "tensorflow"
DEFAULT_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


class PolicyKind(enum.Enum):
    """TF Serving's ``model_version_policy`` choices."""

    LATEST = "latest"
    ALL = "all"
    SPECIFIC = "specific"


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which of the versions found on disk should be served."""

    kind: PolicyKind = PolicyKind.LATEST
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: Mapping[int, Path]) -> dict[int, Path]:
        """The aspired subset of ``available`` (version number -> directory)."""
        if self.kind is PolicyKind.ALL:
            return dict(available)
        if self.kind is PolicyKind.SPECIFIC:
            return {v: p for v, p in available.items() if v in self.versions}
        newest = sorted(available, reverse=True)[: self.num_versions]
        return {v: available[v] for v in newest}

    def describe(self) -> str:
        if self.kind is PolicyKind.LATEST:
            return f"latest {self.num_versions}"
        if self.kind is PolicyKind.SPECIFIC:
            return "specific " + ",".join(map(str, self.versions))
        return "all"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One model: a name, the base path of its versions, a policy and labels."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)
    platform: str = TENSORFLOW_PLATFORM


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every tunable of the appliance, with its default."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    model_config_file: Path | None = None
    model_name: str | None = None
    model_base_path: Path | None = None
    model_roots: tuple[Path, ...] = ()
    file_system_poll_wait_seconds: float = 1.0
    device: str = "auto"
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    threads: int = 8
    shutdown_grace_seconds: float = 30.0


def _policy_from_proto(proto) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy(PolicyKind.ALL)
    if choice == "specific":
        return VersionPolicy(PolicyKind.SPECIFIC, versions=tuple(proto.specific.versions))
    if choice == "latest" and proto.latest.num_versions > 0:
        return VersionPolicy(PolicyKind.LATEST, num_versions=proto.latest.num_versions)
    return VersionPolicy()


def read_model_server_config(path: Path) -> list[ModelConfig]:
    """Parse a TF Serving ``ModelServerConfig`` text proto (``--model_config_file``).

    Relative base paths are resolved against the config file's folder, so a
    config can travel with its models.
    """
    from tensorflow_serving.config import model_server_config_pb2

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidArgument(f"cannot read model config file {path}: {e.strerror}") from None
    try:
        proto = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as e:
        raise InvalidArgument(f"model config file {path} is not a valid ModelServerConfig: {e}") from None
    if proto.WhichOneof("config") != "model_config_list":
        raise InvalidArgument(f"model config file {path} has no model_config_list")
    configs = []
    for entry in proto.model_config_list.config:
        if not entry.name or not entry.base_path:
            raise InvalidArgument(f"model config file {path}: every config needs a name and a base_path")
        base_path = Path(entry.base_path)
        if not base_path.is_absolute():
            base_path = Path(path).resolve().parent / base_path
        configs.append(
            ModelConfig(
                name=entry.name,
                base_path=base_path,
                policy=_policy_from_proto(entry.model_version_policy),
                labels=dict(entry.version_labels),
                platform=entry.model_platform or TENSORFLOW_PLATFORM,
            )
        )
    return configs
