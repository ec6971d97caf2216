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
from collections.abc import Mapping
from pathlib import Path

from google.protobuf import text_format

from .errors import InvalidArgument

TENSORFLOW_PLATFORM = "tensorflow"
DEFAULT_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_CONNECTION_LIMIT = 100
DEFAULT_CHANNEL_TIMEOUT_SECONDS = 120
DEFAULT_THREADS = 32  # at least the bundled models' max_batch_size, so a full batch can form
DEFAULT_REST_API_TIMEOUT_MS = 30_000  # TF Serving's --rest_api_timeout_in_ms


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


class Routing(enum.Enum):
    """Where a model's requests go when a remote TF Serving is configured."""

    REMOTE_ONLY = "remote_only"
    LOCAL_ONLY = "local_only"
    PREFER_REMOTE = "prefer_remote"
    PREFER_LOCAL = "prefer_local"


@dataclasses.dataclass(frozen=True)
class RemoteSettings:
    """A remote TensorFlow Serving (REST) to proxy to, and how to reach it."""

    url: str
    connect_timeout_seconds: float = 2.0
    timeout_seconds: float = 30.0
    token: str | None = None  # sent as "Authorization: Bearer <token>"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    model_names: Mapping[str, str] = dataclasses.field(default_factory=dict)  # local name -> remote name
    routing: Mapping[str, Routing] = dataclasses.field(default_factory=dict)  # per model
    default_routing: Routing = Routing.PREFER_REMOTE
    probe_seconds: float = 2.0
    failures_to_open: int = 3

    def remote_name(self, model: str) -> str:
        return self.model_names.get(model, model)

    def routing_of(self, model: str) -> Routing:
        return self.routing.get(model, self.default_routing)


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
    enable_batching: bool | None = None  # None: only versions shipping their own batching_params.pbtxt
    batching_parameters_file: Path | None = None
    enable_model_warmup: bool = True
    rest_api_timeout_in_ms: int = DEFAULT_REST_API_TIMEOUT_MS  # longest a model call may run; 0 = no limit
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    threads: int = DEFAULT_THREADS
    shutdown_grace_seconds: float = 30.0
    remote: RemoteSettings | None = None
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides loopback's and --host's
    token: str | None = None  # required from clients; made and stored when listening beyond loopback
    require_token_for_control: bool = False  # control changes need the token (made if need be) on loopback too
    cors_allowed_origins: tuple[str, ...] = ()  # web page origins that may call the API from a browser
    connection_limit: int = DEFAULT_CONNECTION_LIMIT  # open client connections; more wait to be accepted
    channel_timeout: int = DEFAULT_CHANNEL_TIMEOUT_SECONDS  # an idle connection is closed after this


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


def _remote_from_table(table: Mapping, source: str) -> RemoteSettings:
    known = {f.name for f in dataclasses.fields(RemoteSettings)} - {"routing", "default_routing"}
    unknown = sorted(set(table) - known - {"routing"})
    if unknown:
        raise InvalidArgument(f"{source}: unknown [remote] setting {unknown[0]!r}")
    if not isinstance(table.get("url"), str) or not table["url"].startswith(("http://", "https://")):
        raise InvalidArgument(f"{source}: [remote] url must be an http:// or https:// URL")
    try:
        routing = {model: Routing(mode) for model, mode in dict(table.get("routing", {})).items()}
        default = Routing(routing.pop("*", Routing.PREFER_REMOTE))
    except ValueError as e:
        modes = ", ".join(r.value for r in Routing)
        raise InvalidArgument(f"{source}: {e}; routing modes are {modes}") from None
    values = {k: v for k, v in table.items() if k != "routing"}
    return RemoteSettings(**values, routing=routing, default_routing=default)


def read_settings_file(path: Path) -> dict:
    """The appliance's own settings file (TOML); an empty dict when there is none.

    ``[remote]`` configures a remote TF Serving::

        [remote]
        url = "http://gpu-box:8501"
        timeout_seconds = 10
        token = "..."                      # sent as a bearer token
        headers = { "X-Team" = "vision" }
        model_names = { digits = "mnist" } # local name -> name on the remote
        routing = { "*" = "prefer_remote", iris = "local_only" }

    Top-level keys set access (see :func:`access_settings`)::

        cors_allowed_origins = ["http://localhost:3000"]
        require_token_for_control = true
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InvalidArgument(f"settings file {path} cannot be read: {e}") from None


def remote_settings(file_settings: Mapping, source: str, url: str | None) -> RemoteSettings | None:
    """The remote from the settings file, with ``url`` (flag or environment) taking precedence."""
    table = dict(file_settings.get("remote", {}))
    if url:
        table["url"] = url
    return _remote_from_table(table, source) if table else None


def access_settings(file_settings: Mapping, source: str) -> tuple[tuple[str, ...], bool]:
    """The settings file's ``cors_allowed_origins`` (a list of origins) and ``require_token_for_control``."""
    origins = file_settings.get("cors_allowed_origins", [])
    if not isinstance(origins, list) or not all(isinstance(origin, str) for origin in origins):
        raise InvalidArgument(
            f'{source}: cors_allowed_origins must be a list of origins, e.g. ["http://localhost:3000"]'
        )
    require = file_settings.get("require_token_for_control", False)
    if not isinstance(require, bool):
        raise InvalidArgument(f"{source}: require_token_for_control must be true or false")
    return tuple(origins), require
