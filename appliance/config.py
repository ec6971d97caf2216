"""Every setting of the appliance, declared once, and TF Serving's ``models.config``.

:class:`Settings` holds every tunable with its type and default; each field's
:func:`setting` declaration also gives its command-line flag (and TF Serving's
name for it), its ``settings.toml`` key, its environment variable and a
one-line doc, from which the ``appliance`` flags, the settings file reading and
the table in ``docs/configuration.md`` are all derived.

    settings = settings_from_sources({"port": 0}, read_settings_file(path), str(path))
    configs = read_model_server_config(Path("models.config"))
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import os
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from .errors import InvalidArgument

log = logging.getLogger(__name__)

TENSORFLOW_PLATFORM = "tensorflow"
DEFAULT_PORT = 8501  # REST
DEFAULT_GRPC_PORT = 8500
GRPC_SCHEMES = ("grpc://", "grpcs://")  # a remote TF Serving reached over gRPC (grpcs: TLS)
DEFAULT_THREADS = 32  # at least the bundled models' max_batch_size, so a full batch can form


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
    # logging_config's sampling_config: the share of requests recorded locally (None: not recorded)
    sampling_rate: float | None = None


class Routing(enum.Enum):
    """Where a model's requests go when a remote TF Serving is configured."""

    REMOTE_ONLY = "remote_only"
    LOCAL_ONLY = "local_only"
    PREFER_REMOTE = "prefer_remote"
    PREFER_LOCAL = "prefer_local"


# The groups settings are listed in, in ``--help`` and in the docs: key -> title.
GROUPS = {
    "network": "network",
    "models": "models (default: the bundled models)",
    "remote": "remote TensorFlow Serving (more in settings.toml: token, headers, model names, routing per model)",
    "runtime": "runtime",
}


@dataclasses.dataclass(frozen=True)
class Option:
    """How one setting is given and documented (see :func:`setting`)."""

    doc: str
    group: str
    flag: str | bool = True  # True: --<field name>; False: not on the command line
    aliases: tuple[str, ...] = ()  # other spellings of the flag
    tfserving: str | bool = False  # tensorflow_model_server's flag: True when it has the field's name
    toml: bool = False  # read from settings.toml (under [remote] for the remote's settings)
    env: str | None = None  # environment variable read when the flag is not given
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    default_doc: str | None = None  # the default, in words, where the value alone does not say it


def setting(default: Any = None, doc: str = "", *, factory: Callable[[], Any] | None = None, **option: Any) -> Any:
    """A dataclass field declaring one setting: its default (or ``factory``) and its :class:`Option`."""
    assert option["group"] in GROUPS, option["group"]
    metadata = {"option": Option(doc, **option)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class RemoteSettings:
    """A remote TensorFlow Serving (REST or gRPC) to proxy to, and how to reach it: ``[remote]`` in settings.toml."""

    url: str = setting(
        dataclasses.MISSING,
        "a TF Serving to proxy to, falling back to local models when it is down: its REST URL (http://, https://) "
        "or gRPC address (grpc://host:8500, grpcs:// for TLS)",
        group="remote",
        flag="--remote_url",
        aliases=("--remote-url",),
        toml=True,
        env="APPLIANCE_REMOTE_URL",
        default_doc="none: local models only",
    )
    connect_timeout_seconds: float = setting(
        2.0, "connect timeout of a remote call", group="remote", flag=False, toml=True
    )
    timeout_seconds: float = setting(
        30.0, "read timeout of a remote call", group="remote", flag="--remote_timeout_seconds", toml=True
    )
    token: str | None = setting(
        None, 'sent to the remote as "Authorization: Bearer <token>"', group="remote", flag=False, toml=True
    )
    headers: Mapping[str, str] = setting(
        doc='more headers sent to the remote, e.g. { "X-Team" = "vision" }',
        group="remote",
        factory=dict,
        flag=False,
        toml=True,
    )
    model_names: Mapping[str, str] = setting(
        doc='local model name -> name on the remote, e.g. { digits = "mnist" }',
        group="remote",
        factory=dict,
        flag=False,
        toml=True,
    )
    routing: Mapping[str, Routing] = setting(
        doc='per model ("*": every other one): prefer_remote, prefer_local, remote_only or local_only',
        group="remote",
        factory=dict,
        flag=False,
        toml=True,
        default_doc='{ "*" = "prefer_remote" }',
    )
    default_routing: Routing = setting(Routing.PREFER_REMOTE, group="remote", flag=False)  # routing's "*"
    probe_seconds: float = setting(
        2.0, "how often the remote's health is probed", group="remote", flag="--remote_probe_seconds", toml=True
    )
    failures_to_open: int = setting(
        3, "failed calls in a row after which the remote counts as down", group="remote", flag=False, toml=True
    )
    ssl_ca_file: Path | None = setting(
        None,
        "grpcs://: the PEM file of the CA that signed the remote's certificate",
        group="remote",
        flag=False,
        toml=True,
        default_doc="the system's trusted CAs",
    )
    ssl_cert_file: Path | None = setting(
        None,
        "grpcs://: a client certificate (PEM) for a remote that verifies its clients; with ssl_key_file",
        group="remote",
        flag=False,
        toml=True,
    )
    ssl_key_file: Path | None = setting(
        None, "grpcs://: the private key (PEM) of ssl_cert_file", group="remote", flag=False, toml=True
    )

    @property
    def grpc(self) -> bool:
        """Whether the remote is reached over gRPC (grpc:// or grpcs://) rather than REST."""
        return self.url.startswith(GRPC_SCHEMES)

    def remote_name(self, model: str) -> str:
        return self.model_names.get(model, model)

    def routing_of(self, model: str) -> Routing:
        return self.routing.get(model, self.default_routing)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every tunable of the appliance, with its default, its flag, settings.toml key and environment variable."""

    # -- network
    host: str = setting("127.0.0.1", "address to bind", group="network", default_doc="127.0.0.1, loopback only")
    port: int = setting(
        DEFAULT_GRPC_PORT,
        "gRPC port (TF Serving's PredictionService and ModelService); 0 picks a free one and prints it",
        group="network",
        tfserving=True,
    )
    rest_api_port: int = setting(
        DEFAULT_PORT,
        "REST port; 0 picks a free one and prints it (in TF Serving, 0 turns REST off: here --enable_rest_api=false)",
        group="network",
        tfserving=True,
    )
    enable_rest_api: bool = setting(True, "serve the REST API (and the start page) on --rest_api_port", group="network")
    enable_grpc_api: bool = setting(True, "serve the gRPC API on --port", group="network")
    grpc_socket_path: Path | None = setting(
        None, "also serve the gRPC API on this UNIX domain socket", group="network", tfserving=True
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        "a Host name to answer besides localhost, 127.0.0.1, [::1] and --host (repeatable); others get 403 "
        "(DNS rebinding protection)",
        group="network",
        flag="--allowed_host",
        metavar="NAME",
    )
    token: str | None = setting(
        None,
        "require 'Authorization: Bearer TOKEN' from clients",
        group="network",
        env="APPLIANCE_TOKEN",
        default_doc="none on loopback; when --host is not loopback, a token is made once and kept in the config folder",
    )
    require_token_for_control: bool = setting(
        False,
        "also on loopback, changes need the token (made and kept as for --host beyond loopback): the control API's "
        "(PUT .../chosen, POST .../reload, POST and DELETE .../compare) and the v2 model repository's load and "
        "unload (REST and gRPC); predictions and status stay open",
        group="network",
        toml=True,
    )
    cors_allowed_origins: tuple[str, ...] = setting(
        (),
        "let web pages from ORIGIN (e.g. http://localhost:3000 or chrome-extension://<id>) call the API from a "
        "browser (repeatable; the settings file's list is added); '*' allows every origin, never with credentials",
        group="network",
        flag="--cors_allowed_origin",
        toml=True,
        metavar="ORIGIN",
        default_doc="none, no CORS headers at all",
    )
    rest_api_enable_cors_support: bool = setting(
        False,
        "answer CORS requests from every origin, as --cors_allowed_origin '*' does",
        group="network",
        tfserving=True,
    )
    monitoring_config_file: Path | None = setting(
        None,
        'a TF Serving MonitoringConfig text proto: prometheus_config { enable: true path: "/metrics" } serves the '
        "metrics at that path (false: not at all)",
        group="network",
        tfserving=True,
        default_doc="the metrics at /monitoring/prometheus/metrics",
    )
    max_request_bytes: int = setting(
        64 * 1024 * 1024,
        "largest request body accepted; larger ones get 413 before they are read (a gzipped one as soon as it "
        "inflates past it); request line and headers are limited to 64 KiB (431)",
        group="network",
    )
    connection_limit: int = setting(
        100, "most client connections open at once; more wait to be accepted", group="network"
    )
    channel_timeout: int = setting(120, "seconds after which an idle client connection is closed", group="network")
    threads: int = setting(
        DEFAULT_THREADS,
        "REST request worker threads; keep it at least the largest max_batch_size",
        group="network",
        tfserving="rest_api_num_threads",
    )
    grpc_max_threads: int = setting(
        DEFAULT_THREADS,
        "gRPC request worker threads; keep it at least the largest max_batch_size",
        group="network",
        tfserving=True,
    )
    grpc_channel_arguments: str = setting(
        "",
        "gRPC server channel arguments, comma-separated KEY=VALUE (e.g. grpc.max_connection_age_ms=60000); "
        "integer values are passed as integers",
        group="network",
        tfserving=True,
        metavar="ARGS",
    )
    ssl_config_file: Path | None = setting(
        None,
        "a TF Serving SSLConfig text proto (server_key, server_cert, custom_ca, client_verify): TLS for gRPC, with "
        "client certificates checked against custom_ca when client_verify is true",
        group="network",
        tfserving=True,
    )
    enable_grpc_healthcheck_service: bool = setting(
        True,
        "serve grpc.health.v1.Health and gRPC server reflection on the gRPC port (TF Serving: off by default)",
        group="network",
        tfserving=True,
    )
    enable_serialization_as_tensor_content: bool = setting(
        False,
        "gRPC responses carry tensors as raw bytes in tensor_content instead of typed fields (float_val, ...)",
        group="network",
        tfserving=True,
    )
    rest_api_timeout_in_ms: int = setting(
        30_000,
        "longest a request may wait for and run its model, then 504; 0: no limit",
        group="network",
        tfserving=True,
    )
    shutdown_grace_seconds: float = setting(
        30.0, "how long a stop waits for requests in flight", group="network", flag=False
    )
    # -- models
    model_config_file: Path | None = setting(
        None, "a TensorFlow Serving models.config (ModelServerConfig text proto)", group="models", tfserving=True
    )
    model_name: str | None = setting(
        None, "serve one model under this name (with --model_base_path)", group="models", tfserving=True
    )
    model_base_path: Path | None = setting(
        None, "folder of that model's numbered versions", group="models", tfserving=True
    )
    request_log_sampling: Mapping[str, float] = setting(
        doc="per model, the share of its answered requests recorded on this machine (0 to 1), e.g. "
        "{ digits = 1.0 }; wins over models.config's logging_config sampling_rate",
        group="models",
        factory=dict,
        flag=False,
        toml=True,
        default_doc="none: no model is recorded",
    )
    warmup_from_recent_requests: tuple[str, ...] = setting(
        (),
        "models whose new versions are warmed up, after their own warm-up, with their 100 most recent recorded "
        'requests (see request_log_sampling), e.g. ["digits"]; the tray\'s choice wins',
        group="models",
        flag=False,
        toml=True,
        metavar="MODEL",
        default_doc="none",
    )
    model_roots: tuple[Path, ...] = setting(
        (),
        "a folder whose sub-folders are models (<name>/<version>/saved_model.pb); repeatable",
        group="models",
        flag="--models_dir",
        default_doc="the bundled models and the per-user models folder",
    )
    file_system_poll_wait_seconds: float = setting(
        1.0, "how often to look for new or removed versions; 0 = only at start", group="models", tfserving=True
    )
    model_config_file_poll_wait_seconds: float = setting(
        0.0,
        "how often to re-read --model_config_file and apply what changed, with no dropped request; 0 = only at start",
        group="models",
        tfserving=True,
    )
    allow_version_labels_for_unavailable_models: bool = setting(
        False,
        "let a models.config give a label to a version that is not AVAILABLE yet",
        group="models",
        tfserving=True,
    )
    num_load_threads: int = setting(0, "versions loaded at once; 0 = one at a time", group="models", tfserving=True)
    max_num_load_retries: int = setting(
        0,
        "times a failed load is retried (TF Serving: 5); a failed version is also retried whenever its files change",
        group="models",
        tfserving=True,
    )
    load_retry_interval_micros: int = setting(
        60_000_000, "the wait before each retry of a failed load, in microseconds", group="models", tfserving=True
    )
    # -- remote
    remote: RemoteSettings | None = setting(None, group="remote", flag=False)  # the [remote] table and its flags
    settings_file: Path | None = setting(
        None, "the settings file", group="remote", default_doc="the per-user settings.toml"
    )
    # -- runtime
    device: str = setting(
        "auto",
        "where to run models: a GPU when one is found (auto), or force one",
        group="runtime",
        choices=("auto", "cpu", "gpu"),
    )
    enable_batching: bool | None = setting(
        None,
        "merge concurrent predict requests into batched model calls (true/false)",
        group="runtime",
        tfserving=True,
        default_doc="only models whose version folder has a batching_params.pbtxt, as the bundled ones do",
    )
    batching_parameters_file: Path | None = setting(
        None,
        "a TF Serving BatchingParameters text proto (max_batch_size, batch_timeout_micros, max_enqueued_batches, "
        "num_batch_threads, allowed_batch_sizes, pad_variable_length_inputs); implies --enable_batching",
        group="runtime",
        tfserving=True,
    )
    enable_per_model_batching_parameters: bool = setting(
        True,
        "a version folder's own batching_params.pbtxt sets its batching (TF Serving: off by default)",
        group="runtime",
        tfserving=True,
    )
    enable_model_warmup: bool = setting(
        True,
        "warm each version up (assets.extra/tf_serving_warmup_requests, else a synthetic request) before it is "
        "AVAILABLE",
        group="runtime",
        tfserving=True,
    )
    num_request_iterations_for_warmup: int = setting(
        1,
        "times each record of a version's assets.extra/tf_serving_warmup_requests is run; 0 = once",
        group="runtime",
        tfserving=True,
    )
    saved_model_tags: str = setting(
        "serve",
        "the tags of the MetaGraph to load from each SavedModel, comma-separated; a SavedModel without that tag-set "
        "fails to load",
        group="runtime",
        tfserving=True,
    )
    prefer_tflite_model: bool = setting(
        False,
        "serve a version folder's model.tflite (with LiteRT) instead of its saved_model.pb when it has both",
        group="runtime",
        tfserving=True,
    )
    enable_signature_method_name_check: bool = setting(
        False,
        "classify and regress only signatures of that method_name, and predict only signatures of TF Serving's "
        "three methods",
        group="runtime",
        tfserving=True,
    )
    per_process_gpu_memory_fraction: float = setting(
        0.0,
        "the fraction of each GPU's memory the models may take, reserved at start; 0 = take it as needed (memory "
        "growth); no effect on the CPU",
        group="runtime",
        tfserving=True,
    )
    tensorflow_session_parallelism: int = setting(
        0,
        "threads for both TensorFlow pools (intra- and inter-op) when neither of those flags is given; 0 = their "
        "defaults",
        group="runtime",
        tfserving=True,
    )
    tensorflow_session_config_file: Path | None = setting(
        None,
        "a TensorFlow ConfigProto text proto the model sessions start from; the thread and GPU memory flags, when "
        "given, win over it",
        group="runtime",
        tfserving=True,
    )
    mixed_precision: str = setting(
        "",
        "bfloat16: run float32 models with oneDNN's bfloat16 auto mixed precision (CPUs with bfloat16 support); "
        "other values are ignored with a warning",
        group="runtime",
        tfserving=True,
        default_doc="none",
    )
    tensorflow_intra_op_parallelism: int = setting(
        0, "threads inside one TF op; 0 = TensorFlow's choice", group="runtime", tfserving=True
    )
    tensorflow_inter_op_parallelism: int = setting(
        0,
        "threads running TF ops in parallel; 0 = one-row calls that cannot loop run in the calling thread (the "
        "fastest for small models) and the others on TensorFlow's pool; N > 0 = every call on a pool of N; -1 = "
        "every call in the calling thread",
        group="runtime",
        tfserving=True,
    )
    log_level: str = setting(
        "INFO", "the least severe log records written", group="runtime", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    shadow: Mapping[str, Mapping[str, float]] = setting(
        doc="per model, a candidate version that also gets a share (0 to 1, 0.1 by default) of the live requests "
        "answered by its other versions, in the background, to compare its answers: e.g. "
        "{ digits = { version = 2, share = 0.1 } }; the tray's choice wins over it",
        group="models",
        factory=dict,
        flag=False,
        toml=True,
        default_doc="none: no shadow traffic",
    )

    def op_parallelism(self) -> tuple[int, int]:
        """The (intra-op, inter-op) threads of the model sessions: TF Serving's precedence of the three flags.

        Either of --tensorflow_intra_op_parallelism and --tensorflow_inter_op_parallelism given (not 0): both as
        given; else --tensorflow_session_parallelism for both.
        """
        intra, inter = self.tensorflow_intra_op_parallelism, self.tensorflow_inter_op_parallelism
        if intra or inter:
            return intra, inter
        return self.tensorflow_session_parallelism, self.tensorflow_session_parallelism

    def saved_model_tag_set(self) -> tuple[str, ...]:
        """--saved_model_tags as a tuple (``"serve,gpu"`` -> ``("serve", "gpu")``)."""
        return tuple(tag.strip() for tag in self.saved_model_tags.split(",") if tag.strip())


@dataclasses.dataclass(frozen=True)
class Declared:
    """One declared setting: where it lives (``remote.url``), its type and default, and its :class:`Option`."""

    name: str
    type: Any
    default: Any
    option: Option

    @property
    def key(self) -> str:
        """Its name in its table of settings.toml (``url`` in ``[remote]``)."""
        return self.name.rpartition(".")[2]

    @property
    def flag(self) -> str | None:
        flag = self.option.flag
        return f"--{self.key}" if flag is True else (flag or None)

    @property
    def tfserving_flag(self) -> str | None:
        tfserving = self.option.tfserving
        return f"--{self.key}" if tfserving is True else (f"--{tfserving}" if tfserving else None)


def _declared(cls: type, prefix: str = "") -> Iterator[Declared]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        yield Declared(prefix + field.name, hints[field.name], default, field.metadata["option"])


def declared_settings() -> list[Declared]:
    """Every setting, the remote's (``remote.<name>``) included, in declaration order."""
    remote = list(_declared(RemoteSettings, "remote."))
    own = [d for d in _declared(Settings) if d.name != "remote"]
    at = next(i for i, d in enumerate(own) if d.option.group == "remote")
    return [*own[:at], *remote, *own[at:]]


def value_type(annotation: Any) -> tuple[type, bool]:
    """The type of one value of a setting (``Path`` for ``tuple[Path, ...]``), and whether it is a list."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return args[0], True
    if args and origin is not None and origin not in (dict, Mapping):
        return args[0], False
    return (origin or annotation), False


@dataclasses.dataclass(frozen=True)
class TFServingFlag:
    """One flag of TF Serving's ``tensorflow_model_server`` (``model_servers/main.cc``) and what it does here.

    With ``why``, the flag cannot act here: it is accepted with a value of ``type`` and warns once (see
    :meth:`warning`). Without, the declared setting whose TF Serving name it is carries it (``--version``
    excepted), acting as in TF Serving unless ``here`` says how it differs.
    """

    meaning: str  # TF Serving's, in a few words
    default: Any  # TF Serving's
    here: str = ""
    type: type = bool
    why: str = ""
    instead: str = ""

    def warning(self, name: str) -> str:
        return f"--{name} has no effect here: {self.why}; {self.instead}"


TFSERVING_DEFAULT_THREADS = "4 x the CPUs"
NO_FLAG_NEEDED = "no flag is needed"

# Every flag of tensorflow_model_server, in main.cc's order (tests/tfserving_flags.txt lists their names).
TFSERVING_FLAGS: dict[str, TFServingFlag] = {
    "port": TFServingFlag(
        "gRPC port; 0 turns gRPC off", 8500, "0 picks a free port and prints it; --enable_grpc_api=false turns gRPC off"
    ),
    "grpc_socket_path": TFServingFlag("also serve gRPC on this UNIX domain socket", None),
    "rest_api_port": TFServingFlag(
        "REST port; 0 (the default) turns REST off",
        0,
        "REST is on by default, for the start page and REST clients; 0 picks a free port and prints it; "
        "--enable_rest_api=false turns REST off",
    ),
    "rest_api_num_threads": TFServingFlag("REST worker threads", TFSERVING_DEFAULT_THREADS),
    "rest_api_timeout_in_ms": TFServingFlag("timeout of a REST call", 30000),
    "rest_api_enable_cors_support": TFServingFlag(
        "CORS headers on every REST answer", False, "answers as --cors_allowed_origin '*' does"
    ),
    "enable_batching": TFServingFlag(
        "batch concurrent requests", False, "by default a version that ships a batching_params.pbtxt is batched"
    ),
    "allow_version_labels_for_unavailable_models": TFServingFlag(
        "let models.config label a version that is not AVAILABLE yet", False
    ),
    "batching_parameters_file": TFServingFlag(
        "a BatchingParameters text proto", None, "implies --enable_batching (TF Serving refuses it without)"
    ),
    "enable_per_model_batching_parameters": TFServingFlag(
        "a version's batching_params.pbtxt sets its batching (with --enable_batching)",
        False,
        "on by default, and also without --enable_batching",
    ),
    "model_config_file": TFServingFlag(
        "a ModelServerConfig text proto: the models to serve",
        None,
        "--model_name and --model_base_path may be given too, and add their model (TF Serving ignores them)",
    ),
    "model_config_file_poll_wait_seconds": TFServingFlag("how often to re-read --model_config_file; 0 = never", 0),
    "model_name": TFServingFlag(
        "the name of the one model served", "default", "without it (and --model_base_path) the bundled models serve"
    ),
    "model_base_path": TFServingFlag(
        "the folder of that model's versions (required without --model_config_file)",
        None,
        "without it (and --model_name) the bundled models serve",
    ),
    "num_load_threads": TFServingFlag("versions loaded at once; 0 = one at a time", 0),
    "num_unload_threads": TFServingFlag(
        "threads unloading versions; 0 = the manager's thread",
        0,
        type=int,
        why="versions are unloaded one at a time by the manager's thread, as TF Serving's default (0) does, and an "
        "unload (closing a session) takes milliseconds",
        instead=NO_FLAG_NEEDED,
    ),
    "max_num_load_retries": TFServingFlag(
        "times a failed load is retried", 5, "a failed version is also retried whenever its files change"
    ),
    "load_retry_interval_micros": TFServingFlag("the wait before each load retry", 60_000_000),
    "file_system_poll_wait_seconds": TFServingFlag("how often to look for new versions", 1),
    "flush_filesystem_caches": TFServingFlag(
        "flush TensorFlow's file system caches after loads",
        True,
        why="TensorFlow caches only remote file systems (gs://, s3://), and the appliance serves models from local "
        "folders",
        instead=NO_FLAG_NEEDED,
    ),
    "tensorflow_session_parallelism": TFServingFlag("threads of both TensorFlow pools", 0),
    "tensorflow_session_config_file": TFServingFlag(
        "a ConfigProto text proto for the model sessions",
        None,
        "the thread and GPU memory flags win over the file only when given (in TF Serving, always)",
    ),
    "tensorflow_intra_op_parallelism": TFServingFlag("threads inside one op", 0),
    "tensorflow_inter_op_parallelism": TFServingFlag(
        "threads running ops in parallel",
        0,
        "0: one-row calls that cannot loop run in the calling thread, the others on TensorFlow's pool",
    ),
    "use_alts_credentials": TFServingFlag(
        "Google ALTS credentials for gRPC",
        False,
        why="ALTS works only between Google Cloud machines (it needs their handshaker service)",
        instead="use --ssl_config_file for TLS and client certificates",
    ),
    "ssl_config_file": TFServingFlag("an SSLConfig text proto: TLS for gRPC", None),
    "platform_config_file": TFServingFlag(
        "a PlatformConfigMap text proto: session and batching config per platform",
        None,
        type=Path,
        why="only the tensorflow platform is served here, and tensorflow-serving-api has no Python module for its "
        "SavedModelBundleSourceAdapterConfig",
        instead="use --tensorflow_session_config_file, --batching_parameters_file and --saved_model_tags",
    ),
    "per_process_gpu_memory_fraction": TFServingFlag(
        "the fraction of each GPU's memory to take; 0 = TensorFlow's choice (nearly all)",
        0.0,
        "0: memory growth, so a shared card keeps its free memory",
    ),
    "saved_model_tags": TFServingFlag("the tags of the MetaGraph to load", "serve"),
    "grpc_channel_arguments": TFServingFlag("gRPC server channel arguments", ""),
    "grpc_max_threads": TFServingFlag("gRPC worker threads", TFSERVING_DEFAULT_THREADS),
    "enable_model_warmup": TFServingFlag(
        "run a version's warm-up records before it is AVAILABLE",
        True,
        "a version without records gets a synthetic request per signature",
    ),
    "num_request_iterations_for_warmup": TFServingFlag("times each warm-up record is run; 0 = once", 0),
    "version": TFServingFlag("print the version and exit", False, "prints the appliance's and TensorFlow's versions"),
    "monitoring_config_file": TFServingFlag(
        "a MonitoringConfig text proto: whether and where to serve Prometheus metrics",
        None,
        "without it the metrics are served at /monitoring/prometheus/metrics (TF Serving: not at all)",
    ),
    "remove_unused_fields_from_bundle_metagraph": TFServingFlag(
        "drop the MetaGraphDef's graph after a load to save memory",
        True,
        why="each version keeps its graph to tell which calls may loop (see --tensorflow_inter_op_parallelism), and "
        "frees it with the version",
        instead=NO_FLAG_NEEDED,
    ),
    "prefer_tflite_model": TFServingFlag(
        "serve a SavedModel folder's model.tflite instead of its saved_model.pb", False, "runs it with LiteRT"
    ),
    "num_tflite_pools": TFServingFlag(
        "TFLite interpreter pools per model",
        "the CPUs",
        type=int,
        why="each .tflite model has one LiteRT interpreter whose calls take turns (a small model's call lasts "
        "microseconds)",
        instead="serve a SavedModel where one model must run many calls at once",
    ),
    "num_tflite_interpreters_per_pool": TFServingFlag(
        "TFLite interpreters per pool",
        1,
        type=int,
        why="each .tflite model has one LiteRT interpreter whose calls take turns (a small model's call lasts "
        "microseconds)",
        instead="serve a SavedModel where one model must run many calls at once",
    ),
    "enable_signature_method_name_check": TFServingFlag("check a signature's method_name against the API", False),
    "xla_cpu_compilation_enabled": TFServingFlag(
        "allow XLA:CPU JIT (off: models that need it fail)",
        False,
        why="XLA JIT is always allowed here (TensorFlow's own default), so models compiled with jit_compile run",
        instead=NO_FLAG_NEEDED,
    ),
    "xla_gpu_compilation_enabled": TFServingFlag(
        "allow XLA:CPU and XLA:GPU JIT (off: models that need it fail)",
        False,
        why="XLA JIT is always allowed here (TensorFlow's own default), so models compiled with jit_compile run",
        instead=NO_FLAG_NEEDED,
    ),
    "enable_profiler": TFServingFlag(
        "serve TensorFlow's profiler on the gRPC port",
        True,
        why="the gRPC port serves TF Serving's prediction and model services (and health, reflection) only",
        instead="profile a model with tf.profiler in a script, or read the Prometheus metrics",
    ),
    "thread_pool_factory_config_file": TFServingFlag(
        "a ThreadPoolConfig text proto: custom TensorFlow thread pools for requests",
        None,
        type=Path,
        why="model calls run on their sessions' own pools or in the calling thread",
        instead="size those with --tensorflow_intra_op_parallelism and --tensorflow_inter_op_parallelism",
    ),
    "mixed_precision": TFServingFlag("bfloat16: oneDNN bfloat16 auto mixed precision", ""),
    "skip_initialize_tpu": TFServingFlag(
        "skip initializing the TPU system at start (TPU builds)",
        False,
        why="the appliance runs models on CPUs and GPUs: there is no TPU to initialize",
        instead=NO_FLAG_NEEDED,
    ),
    "enable_grpc_healthcheck_service": TFServingFlag(
        "serve the standard gRPC health service", False, "on by default, with gRPC server reflection"
    ),
    "enable_serialization_as_tensor_content": TFServingFlag(
        "gRPC Predict answers tensors as tensor_content bytes", False
    ),
}
INERT_TFSERVING_FLAGS = {name: flag for name, flag in TFSERVING_FLAGS.items() if flag.why}


def _from_file(declared: Declared, value: Any, source: str) -> Any:
    """A settings.toml value, checked against the setting's type."""
    kind, many = value_type(declared.type)
    key = declared.name
    if many:
        noun = (declared.option.metavar or "value").lower()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidArgument(f'{source}: {key} must be a list of {noun}s, e.g. ["..."]')
        return tuple(kind(item) for item in value)
    if kind is bool and not isinstance(value, bool):
        raise InvalidArgument(f"{source}: {key} must be true or false")
    if key == "request_log_sampling":
        return _sampling_rates(value, source)
    if key == "shadow":
        return _shadow_table(value, source)
    return value


def _sampling_rates(table: Any, source: str) -> dict[str, float]:
    """settings.toml's ``request_log_sampling``: model name -> a share of requests in [0, 1]."""
    if not isinstance(table, dict):
        raise InvalidArgument(f"{source}: request_log_sampling must be a table, e.g. {{ digits = 1.0 }}")
    for model, rate in table.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise InvalidArgument(f"{source}: request_log_sampling.{model} must be a number from 0 to 1, not {rate!r}")
    return {model: float(rate) for model, rate in table.items()}


def _shadow_table(table: Any, source: str) -> dict[str, dict[str, float]]:
    """settings.toml's ``shadow``: model name -> {"version": a positive integer, "share": a number in (0, 1]}."""
    example = "{ digits = { version = 2, share = 0.1 } }"
    if not isinstance(table, dict):
        raise InvalidArgument(f"{source}: shadow must be a table, e.g. {example}")
    shadowed = {}
    for model, entry in table.items():
        version = entry.get("version") if isinstance(entry, dict) else None
        share = entry.get("share", 0.1) if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or set(entry) - {"version", "share"}:
            raise InvalidArgument(f"{source}: shadow.{model} must be a table of version and share, e.g. {example}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgument(f"{source}: shadow.{model}.version must be a positive integer, not {version!r}")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise InvalidArgument(f"{source}: shadow.{model}.share must be a number in (0, 1], not {share!r}")
        shadowed[model] = {"version": version, "share": float(share)}
    return shadowed


def settings_from_sources(
    given: Mapping[str, Any], file_settings: Mapping[str, Any], source: str, environ: Mapping[str, str] = os.environ
) -> Settings:
    """The settings from the flags given (by declared name), the environment and the settings file.

    A flag wins over its environment variable, which wins over the settings file; a list
    (``--cors_allowed_origin``) is the flag's values followed by the file's.
    """
    values: dict[str, Any] = {}
    remote: dict[str, Any] = dict(file_settings.get("remote", {}))  # checked as a whole by _remote_from_table
    for declared in declared_settings():
        option, in_remote = declared.option, declared.name.startswith("remote.")
        in_file = option.toml and not in_remote and declared.key in file_settings
        from_file = _from_file(declared, file_settings[declared.key], source) if in_file else None
        if declared.name in given:
            value = given[declared.name]
            if value_type(declared.type)[1]:
                value = (*value, *(from_file or ()))
        elif option.env and environ.get(option.env):
            value = value_type(declared.type)[0](environ[option.env])
        elif in_file:
            value = from_file
        else:
            continue
        (remote if in_remote else values)[declared.key] = value
    if (values.get("model_name") is None) != (values.get("model_base_path") is None):
        raise InvalidArgument("--model_name and --model_base_path go together")
    _check_tensorflow_flags(values)
    configured = bool(file_settings.get("remote")) or "url" in remote
    return Settings(**values, remote=_remote_from_table(remote, source) if configured else None)


def _check_tensorflow_flags(values: Mapping[str, Any]) -> None:
    threads = ("tensorflow_session_parallelism", "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism")
    if all(values.get(name, 0) > 0 for name in threads):
        raise InvalidArgument(
            "Either configure --tensorflow_session_parallelism or (--tensorflow_intra_op_parallelism, "
            "--tensorflow_inter_op_parallelism) separately. You cannot configure all."
        )
    if not 0.0 <= values.get("per_process_gpu_memory_fraction", 0.0) <= 1.0:
        raise InvalidArgument("--per_process_gpu_memory_fraction must be between 0.0 and 1.0")
    if "saved_model_tags" in values and not values["saved_model_tags"].strip(" ,"):
        raise InvalidArgument("--saved_model_tags names no tag: give e.g. serve, or serve,gpu")


def _policy_from_proto(proto) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy(PolicyKind.ALL)
    if choice == "specific":
        return VersionPolicy(PolicyKind.SPECIFIC, versions=tuple(proto.specific.versions))
    if choice == "latest" and proto.latest.num_versions > 0:
        return VersionPolicy(PolicyKind.LATEST, num_versions=proto.latest.num_versions)
    return VersionPolicy()


def parse_model_server_config(text: str, source: str):
    """A TF Serving ``ModelServerConfig`` proto from its text form; ``source`` names it in errors."""
    from tensorflow_serving.config import model_server_config_pb2

    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as e:
        raise InvalidArgument(f"{source} is not a valid ModelServerConfig: {e}") from None


def model_configs(proto, base_dir: Path, source: str = "model config") -> list[ModelConfig]:
    """The models a ``ModelServerConfig`` proto lists; relative base paths are taken relative to ``base_dir``.

    ``base_dir`` is a config file's folder, so a config can travel with its models, or the working
    directory for a config sent in a request.
    """
    if proto.WhichOneof("config") != "model_config_list":
        raise InvalidArgument(f"{source} has no model_config_list")
    configs = []
    for entry in proto.model_config_list.config:
        if not entry.name or not entry.base_path:
            raise InvalidArgument(f"{source}: every config needs a name and a base_path")
        configs.append(
            ModelConfig(
                name=entry.name,
                base_path=base_dir / entry.base_path,  # an absolute base_path replaces base_dir
                policy=_policy_from_proto(entry.model_version_policy),
                labels=dict(entry.version_labels),
                platform=entry.model_platform or TENSORFLOW_PLATFORM,
                sampling_rate=_sampling_rate(entry, source),
            )
        )
    return configs


def _sampling_rate(entry, source: str) -> float | None:
    """A model's ``logging_config`` sampling rate; the log is always written locally, whatever the collector."""
    if not entry.HasField("logging_config"):
        return None
    logging_config = entry.logging_config
    rate = logging_config.sampling_config.sampling_rate
    if not 0 <= rate <= 1:
        raise InvalidArgument(f"{source}: model {entry.name}: sampling_rate must be from 0 to 1, not {rate}")
    collector = logging_config.log_collector_config
    if collector.type or collector.filename_prefix:
        log.warning(
            "%s: model %s: log_collector_config (type %r, filename_prefix %r) ignored: the appliance records "
            "requests only on this machine, in its data folder",
            source,
            entry.name,
            collector.type,
            collector.filename_prefix,
        )
    return rate or None


def read_model_server_config(path: Path) -> list[ModelConfig]:
    """Parse a TF Serving ``ModelServerConfig`` text file (``--model_config_file``) into its models.

    Relative base paths are resolved against the file's folder.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidArgument(f"cannot read model config file {path}: {e.strerror}") from None
    source = f"model config file {path}"
    return model_configs(parse_model_server_config(text, source), Path(path).resolve().parent, source)


@dataclasses.dataclass(frozen=True)
class PrometheusConfig:
    """TF Serving's ``prometheus_config``: whether the metrics are served, and where ("" = the default path)."""

    enable: bool
    path: str = ""


@functools.cache
def _monitoring_config_message():
    """A message class for tensorflow.serving.MonitoringConfig (the pip package ships no module for it)."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="appliance/monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".tensorflow.serving.PrometheusConfig",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


def read_monitoring_config(path: Path) -> PrometheusConfig:
    """Parse a TF Serving ``MonitoringConfig`` text proto (``--monitoring_config_file``)::

    prometheus_config { enable: true path: "/metrics" }
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidArgument(f"cannot read monitoring config file {path}: {e.strerror}") from None
    try:
        proto = text_format.Parse(text, _monitoring_config_message()())
    except text_format.ParseError as e:
        raise InvalidArgument(f"monitoring config file {path} is not a valid MonitoringConfig: {e}") from None
    prometheus = proto.prometheus_config
    if prometheus.path and not prometheus.path.startswith("/"):
        raise InvalidArgument(f"monitoring config file {path}: the prometheus_config path must start with /")
    return PrometheusConfig(prometheus.enable, prometheus.path)


def _remote_from_table(table: Mapping, source: str) -> RemoteSettings:
    known = {f.name for f in dataclasses.fields(RemoteSettings)} - {"routing", "default_routing"}
    unknown = sorted(set(table) - known - {"routing"})
    if unknown:
        raise InvalidArgument(f"{source}: unknown [remote] setting {unknown[0]!r}")
    if not isinstance(table.get("url"), str) or not table["url"].startswith(("http://", "https://", *GRPC_SCHEMES)):
        raise InvalidArgument(
            f"{source}: [remote] url must be an http://, https://, grpc:// or grpcs:// URL, not {table.get('url')!r}"
        )
    files = {}
    for key in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        if key in table:
            if not isinstance(table[key], str):
                raise InvalidArgument(f"{source}: [remote] {key} must be the path of a PEM file")
            files[key] = Path(table[key]).expanduser()
    if ("ssl_cert_file" in files) != ("ssl_key_file" in files):
        raise InvalidArgument(f"{source}: [remote] ssl_cert_file and ssl_key_file go together")
    try:
        routing = {model: Routing(mode) for model, mode in dict(table.get("routing", {})).items()}
        default = Routing(routing.pop("*", Routing.PREFER_REMOTE))
    except ValueError as e:
        modes = ", ".join(r.value for r in Routing)
        raise InvalidArgument(f"{source}: {e}; routing modes are {modes}") from None
    values = {k: v for k, v in table.items() if k != "routing"} | files
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

    Top-level keys are the settings declared with ``toml=True`` (see ``docs/configuration.md``)::

        cors_allowed_origins = ["http://localhost:3000"]
        require_token_for_control = true
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InvalidArgument(f"settings file {path} cannot be read: {e}") from None
