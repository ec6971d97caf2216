"""The running appliance: models, the HTTP server, preferences, and the named commands the tray sends.

    app = Application(settings)
    app.start()                          # models load in the background; the server answers at once
    app.switch_version("digits", 1)      # what the tray's version menu and PUT .../chosen do
    app.quit()

The tray sees only :meth:`Application.tray_state` and the commands; it never
touches TensorFlow or HTTP handling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
import weakref
from pathlib import Path

from . import paths
from .access_token import load_or_create_token
from .api.app import create_app
from .api.metrics import PATH as METRICS_PATH
from .api.metrics import Metrics
from .api.security import AccessPolicy
from .autostart import autostart_for_this_platform
from .config import (
    ModelConfig,
    RemoteSettings,
    Settings,
    model_configs,
    read_model_server_config,
    read_monitoring_config,
)
from .desktop import copy_text, open_in_desktop
from .errors import Code, InvalidArgument, ServingError
from .grpc_server import GrpcServer
from .preferences import PreferenceStore
from .server import Server
from .serving.batching import BatchingParameters, BatchingPolicy, read_batching_parameters
from .serving.compare import Comparison, Comparisons
from .serving.config_watch import ConfigFileWatcher
from .serving.manager import LoadOptions, ModelManager, ModelsNotAvailable, ModelSummary
from .serving.recent_warmup import DEFAULT_LIMIT as DEFAULT_WARMUP_LIMIT
from .serving.recent_warmup import RecentRequestWarmup
from .serving.remote import Remote, RemoteTFServing
from .serving.remote_grpc import RemoteGrpcTFServing
from .serving.repository import Repository
from .serving.request_log import RequestLog
from .serving.routing import Router
from .serving.runtime import DeferredRuntime
from .serving.shadow import DEFAULT_SHARE, ShadowConfig
from .tray.state import ComparisonItem, ModelItem, TrayState, VersionItem

log = logging.getLogger(__name__)

TRAY_FIGURES_POLL_SECONDS = 5.0  # how often the tray's recorded sizes and shadow figures are brought up to date

RELOAD_NEEDS_TOKEN = (
    "HandleReloadConfigRequest names model folders, so it needs the access token: start the appliance with "
    "--require_token_for_control (or --token) and send the metadata 'authorization: Bearer <token>'"
)


def model_sources(settings: Settings) -> tuple[list[ModelConfig], list[Path]]:
    """The configured models and model roots.

    With no model flags: the bundled models, the user's models folder (created
    on first run) and the user's ``models.config`` when there is one.
    """
    configs: list[ModelConfig] = []
    if settings.model_config_file is not None:
        configs += read_model_server_config(settings.model_config_file)
    configs += _flag_model(settings)
    roots = [r.resolve() for r in settings.model_roots]
    if not configs and not roots:
        roots = [paths.bundled_models_dir(), paths.ensure_dir(paths.user_models_dir())]
        user_config = paths.user_model_config_file()
        if user_config.is_file():
            configs += read_model_server_config(user_config)
    return configs, roots


def _flag_model(settings: Settings) -> list[ModelConfig]:
    """The model of --model_name and --model_base_path, if given."""
    if settings.model_name is None:
        return []
    assert settings.model_base_path is not None, "--model_name and --model_base_path go together"
    return [ModelConfig(name=settings.model_name, base_path=settings.model_base_path.resolve())]


def batching_policy(settings: Settings) -> BatchingPolicy:
    """Batching as the flags say; a parameters file implies --enable_batching unless it is false."""
    file = settings.batching_parameters_file
    enabled = settings.enable_batching if settings.enable_batching is not None else (True if file else None)
    parameters = read_batching_parameters(file) if file else BatchingParameters()
    wait = settings.rest_api_timeout_in_ms / 1000 or None
    return BatchingPolicy(enabled, parameters, wait, per_model=settings.enable_per_model_batching_parameters)


def metrics_path(settings: Settings) -> str | None:
    """Where the Prometheus metrics are served: --monitoring_config_file's path, or None for not at all."""
    if settings.monitoring_config_file is None:
        return METRICS_PATH
    prometheus = read_monitoring_config(settings.monitoring_config_file)
    return (prometheus.path or METRICS_PATH) if prometheus.enable else None


def _version_items(summary: ModelSummary) -> tuple[VersionItem, ...]:
    labels: dict[int, list[str]] = {}
    for label, version in sorted(summary.labels.items()):
        labels.setdefault(version, []).append(label)
    return tuple(
        VersionItem(v.version, v.state.value, v.error.message if v.error else None, tuple(labels.get(v.version, ())))
        for v in summary.versions
    )


def _comparing_detail(models: tuple[ModelItem, ...]) -> str | None:
    """ "comparing digits v1 with v2: 24%" for each running comparison, or None."""
    running = [
        f"comparing {m.name} v{c.version} with v{c.against}: {100 * c.done // max(c.total, 1)}%"
        for m in models
        if (c := m.comparison) is not None and c.state == "running"
    ]
    return "; ".join(running) or None


class Application:
    """One appliance: builds the manager and the server from the settings, and carries out commands."""

    def __init__(self, settings: Settings, defer_tensorflow: bool = False, sock: socket.socket | None = None):
        """With ``defer_tensorflow``, TensorFlow is imported by the loading thread, so this returns at once.

        ``sock`` is the REST listening socket (see :func:`appliance.server.listening_socket`), bound by the caller
        before anything slow; without it, the server binds ``settings.host``:``settings.rest_api_port`` itself.
        The gRPC port is bound here, before TensorFlow is imported: a busy one raises PortInUse at once.
        """
        if not settings.enable_rest_api and not settings.enable_grpc_api:
            raise InvalidArgument(
                "--enable_rest_api=false and --enable_grpc_api=false leave nothing to serve: keep one of them on"
            )
        self.settings = settings
        configs, roots = model_sources(settings)
        repository = Repository(configs, roots)
        self.request_log = RequestLog()
        self._configured_sampling: dict[str, float] = {}  # models.config's and settings.toml's rates
        cors_origins = settings.cors_allowed_origins
        if settings.rest_api_enable_cors_support:  # TF Serving's flag: every origin
            cors_origins = (*cors_origins, "*")
        access = AccessPolicy.for_settings(
            settings.host,
            allowed_hosts=settings.allowed_hosts,
            token=settings.token,
            require_token_for_control=settings.require_token_for_control,
            cors_allowed_origins=cors_origins,
            load_token=lambda: load_or_create_token(paths.token_file()),
        )
        self.token = access.token_in_use  # what clients send: the tray copies it, the CLI says where it is
        self.grpc = self._grpc_server(settings, access) if settings.enable_grpc_api else None
        try:
            runtime = DeferredRuntime(self._local_runtime) if defer_tensorflow else self._local_runtime()
            self._runtime = runtime
            self.preferences = PreferenceStore(paths.preferences_file())
            self._record_requests_of(configs)
            self.recent_warmup = RecentRequestWarmup(
                self.request_log, self.preferences, settings.warmup_from_recent_requests
            )
            self.metrics = Metrics()
            self.manager = ModelManager(
                repository,
                runtime,
                settings.file_system_poll_wait_seconds,
                self.preferences,
                observer=self.metrics.observer,
                batching=batching_policy(settings),
                loading=LoadOptions(
                    settings.num_load_threads, settings.max_num_load_retries, settings.load_retry_interval_micros / 1e6
                ),
                allow_labels_for_unavailable=settings.allow_version_labels_for_unavailable_models,
                request_log=self.request_log,
                recent_warmup=self.recent_warmup if settings.enable_model_warmup else None,
            )
            self.config_watcher: ConfigFileWatcher | None = None
            if settings.model_config_file is not None and settings.model_config_file_poll_wait_seconds > 0:
                self.config_watcher = ConfigFileWatcher(
                    settings.model_config_file,
                    settings.model_config_file_poll_wait_seconds,
                    lambda configs: self._reload_config([*configs, *_flag_model(settings)]),
                )
            self.remote = self._remote(settings.remote, repository, settings.threads) if settings.remote else None
            self.router = Router(self.manager, self.remote)
            self.comparisons = Comparisons(self.manager, recorded=self.request_log.files)
            self._apply_shadow()
            self.server = (
                Server(
                    create_app(
                        self.manager,
                        max_request_bytes=settings.max_request_bytes,
                        router=self.router,
                        access=access,
                        metrics=self.metrics,
                        metrics_path=metrics_path(settings),
                        comparisons=self.comparisons,
                        recent_warmup=self.recent_warmup,
                    ),
                    settings.host,
                    settings.rest_api_port,
                    threads=settings.threads,
                    max_request_body_size=settings.max_request_bytes,
                    connection_limit=settings.connection_limit,
                    channel_timeout=settings.channel_timeout,
                    shutdown_grace_seconds=settings.shutdown_grace_seconds,
                    sock=sock,
                )
                if settings.enable_rest_api
                else None
            )
        except BaseException:
            if self.grpc is not None:
                self.grpc.stop(0)
            raise
        self.autostart = autostart_for_this_platform()
        self._quit_callbacks: list = []
        self._listeners: list = []
        self._notification_callbacks: list = []
        # A comparison the tray asked for and the comparisons refused, by model, with the comparison that was the
        # latest then: shown until another one starts.
        self._compare_refusals: dict[str, tuple[Comparison | None, ComparisonItem]] = {}
        self._notified: weakref.WeakSet[Comparison] = weakref.WeakSet()
        self.comparisons.subscribe(self._comparison_changed)
        self._closing = threading.Event()
        self._figures_watcher: threading.Thread | None = None

    @staticmethod
    def _grpc_server(settings: Settings, access: AccessPolicy) -> GrpcServer:
        return GrpcServer(
            settings.host,
            settings.port,
            socket_path=settings.grpc_socket_path,
            max_threads=settings.grpc_max_threads,
            channel_arguments=settings.grpc_channel_arguments,
            ssl_config_file=settings.ssl_config_file,
            max_message_bytes=settings.max_request_bytes,
            access=access,
            health_and_reflection=settings.enable_grpc_healthcheck_service,
            shutdown_grace_seconds=settings.shutdown_grace_seconds,
        )

    def _local_runtime(self):
        from .serving.runtime.local_tf import LocalTFRuntime  # imports TensorFlow: seconds

        settings = self.settings
        runtime = LocalTFRuntime(
            settings.device,
            *settings.op_parallelism(),
            settings.rest_api_timeout_in_ms,
            settings.enable_model_warmup,
            warmup_iterations=settings.num_request_iterations_for_warmup,
            saved_model_tags=settings.saved_model_tag_set(),
            session_config_file=settings.tensorflow_session_config_file,
            gpu_memory_fraction=settings.per_process_gpu_memory_fraction,
            mixed_precision=settings.mixed_precision,
            check_method_names=settings.enable_signature_method_name_check,
            prefer_tflite=settings.prefer_tflite_model,
        )
        log.info("device: %s", runtime.device.describe())
        return runtime

    @property
    def url(self) -> str | None:
        """The REST API's URL, e.g. "http://127.0.0.1:8501"; None with --enable_rest_api=false."""
        return self.server.url if self.server is not None else None

    @property
    def grpc_endpoints(self) -> str | None:
        """Where gRPC listens, e.g. "127.0.0.1:8500 and unix:/run/appliance.sock"; None when it is off."""
        if self.grpc is None:
            return None
        return self.grpc.address + (f" and unix:{self.grpc.socket_path}" if self.grpc.socket_path else "")

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.port if self.grpc is not None else None

    @property
    def grpc_address(self) -> str | None:
        """Where gRPC clients connect, e.g. "127.0.0.1:8500"; None with --enable_grpc_api=false."""
        return self.grpc.address if self.grpc is not None else None

    @classmethod
    def _remote(cls, remote: RemoteSettings, repository: Repository, threads: int) -> Remote:
        """The remote TF Serving of ``remote.url``: over gRPC (grpc://, grpcs://) or over REST."""
        remote_class = RemoteGrpcTFServing if remote.grpc else RemoteTFServing
        return remote_class(remote, cls._remote_model_names(remote, repository), threads)

    @staticmethod
    def _remote_model_names(remote: RemoteSettings, repository: Repository) -> list[str]:
        """The models to ask the remote about: every local one, and every one named in the remote settings."""
        names = [s.config.name for s in repository.scan()]
        names += [n for n in (*remote.model_names, *remote.routing) if n not in names]
        return names

    def start(self) -> None:
        """Start loading models, watching the remote and serving gRPC (in the background)."""
        self.request_log.start()
        self.manager.start()
        if self.config_watcher is not None:
            self.config_watcher.start()
        if self.remote is not None:
            self.remote.start()
        if self.grpc is not None:
            threading.Thread(
                target=self._serve_grpc, args=(self.grpc,), name="appliance-grpc-start", daemon=True
            ).start()

    def _serve_grpc(self, server: GrpcServer) -> None:
        if isinstance(self._runtime, DeferredRuntime):
            # The services' protos import TensorFlow: let one thread import it, not this one and the loading
            # thread at once (in the frozen app, two threads importing it together failed the first load).
            with contextlib.suppress(Exception):  # a runtime that cannot be made: the loading thread says why
                self._runtime.make()
        try:
            server.start(self._grpc_services)
        except Exception:
            log.exception("the gRPC API could not start")
            server.stop(0)
            return
        self.manager.wait_until_ready()
        server.set_serving(True)

    def _grpc_services(self, server) -> list[str]:
        """Add the gRPC API's services to ``server``; returns their full names (for health and reflection)."""
        # TF Serving's stubs import TensorFlow. The *_service_pb2 modules hold the services' descriptors, which
        # reflection reads (the *_pb2_grpc ones import only the messages').
        from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

        from .api.grpc_model_service import add_model_service
        from .api.grpc_prediction import add_prediction_service
        from .api.v2.grpc_service import SERVICE_NAME, add_inference_service

        prediction = add_prediction_service(
            server,
            self.manager,
            router=self.router,
            metrics=self.metrics,
            tensor_content=self.settings.enable_serialization_as_tensor_content,
        )
        add_model_service(server, self.manager, self.apply_config, route_status=prediction.model_status)
        add_inference_service(server, self.manager, self.metrics)  # the Open Inference Protocol (v2)
        return [
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
            model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
            SERVICE_NAME,
        ]

    def serve_forever(self) -> None:
        """Serve REST in this thread (or just wait, without REST) until :meth:`stop` has finished."""
        if self.server is not None:
            self.server.serve_forever()
        if self.grpc is not None:
            self.grpc.wait_stopped()

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> None:
        """Stop serving REST and gRPC gracefully (see :meth:`Server.stop`); idempotent, from any thread."""
        for server in (self.server, self.grpc):
            if server is not None:
                server.stop(timeout, wait=False)
        if wait:
            self.wait_stopped()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until both servers have stopped; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for server in (self.server, self.grpc):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if server is not None and not server.wait_stopped(remaining):
                return False
        return True

    def close(self) -> None:
        """Stop serving gRPC, unload every model; call once the REST server has stopped."""
        if self.grpc is not None:
            self.grpc.stop()
        if self.config_watcher is not None:
            self.config_watcher.stop()
        if self.remote is not None:
            self.remote.stop()
        self._closing.set()
        self.comparisons.cancel_all()
        self.manager.stop()
        self.request_log.stop()

    def apply_config(self, config) -> None:
        """Serve the models of a ``ModelServerConfig`` proto (gRPC's HandleReloadConfigRequest) instead.

        Relative base paths are taken from the working directory; see :meth:`ModelManager.reload_config`.
        Such a request names folders of this machine, so it is carried out only where a token is in use (the gRPC
        server's interceptor has then checked it): with none, any local program could make the appliance read
        any folder its user can.
        """
        if self.token is None:
            raise ServingError(RELOAD_NEEDS_TOKEN, Code.PERMISSION_DENIED)
        self._reload_config(model_configs(config, Path.cwd(), "the config of the request"))

    def reload_settings(self, settings: Settings) -> list[str]:
        """Apply freshly read ``settings`` while serving (the service's SIGHUP): the models config (as
        :meth:`ModelManager.reload_config` does, no request dropped), ``request_log_sampling`` and ``shadow``.

        Returns the names of the other settings that changed: they take effect at the next start. Raises
        ServingError when the models config cannot be read or is refused (the models served stay as they are),
        and ModelsNotAvailable when it is in force but some of its new models did not load.
        """
        live = ("request_log_sampling", "shadow")  # settings.toml's keys that apply at once; flags cannot change
        restart_needed = [
            field.name
            for field in dataclasses.fields(settings)
            if field.name not in live and getattr(settings, field.name) != getattr(self.settings, field.name)
        ]
        configs, _ = model_sources(settings)
        self.settings = dataclasses.replace(
            self.settings, request_log_sampling=settings.request_log_sampling, shadow=settings.shadow
        )
        try:
            self.manager.reload_config(configs)
        except ModelsNotAvailable:
            self._record_requests_of(configs)
            self._apply_shadow()
            raise
        self._record_requests_of(configs)
        self._apply_shadow()
        return restart_needed

    def _reload_config(self, configs: list[ModelConfig]) -> None:
        self.manager.reload_config(configs)
        self._record_requests_of(configs)

    def _record_requests_of(self, configs: list[ModelConfig]) -> None:
        """Record requests as the configs' logging_config, settings.toml's request_log_sampling and the tray's
        "Record requests" (each winning over the one before) say."""
        rates = {c.name: c.sampling_rate for c in configs if c.sampling_rate}
        self._configured_sampling = {**rates, **self.settings.request_log_sampling}
        self._apply_sampling()

    def _apply_sampling(self) -> None:
        self.request_log.replace_sampling({**self._configured_sampling, **self.preferences.request_log_sampling()})

    def on_quit(self, callback) -> None:
        """Call ``callback()`` when :meth:`quit` is asked for (e.g. to end the tray's loop)."""
        self._quit_callbacks.append(callback)

    # -- what the tray shows ---------------------------------------------

    def tray_state(self) -> TrayState:
        summaries = [s for s in self.manager.summaries() if not s.unloaded]  # unloaded by request: not a fault
        progress = self.manager.loading_progress()
        unavailable = [s.name for s in summaries if s.chosen_version is None]
        if progress is not None or not self.manager.ready:
            status = "loading"
            detail = progress.describe() if progress else "loading models"
        elif summaries and len(unavailable) == len(summaries):
            status, detail = "error", "no model could be loaded"
        elif unavailable:
            status, detail = "degraded", f"unavailable: {', '.join(unavailable)}"
        else:
            status, detail = "ready", f"ready: {len(summaries)} model{'s' * (len(summaries) != 1)}"
        models = tuple(self._model_item(summary) for summary in summaries)
        comparing = _comparing_detail(models)
        if comparing:
            detail = comparing if status == "ready" else f"{detail}; {comparing}"
        return TrayState(
            status=status,
            detail=detail,
            url=self.url,
            grpc_address=self.grpc_endpoints,
            device=self.manager.device.describe(),
            backend=self._backend_line(),
            models=models,
            start_at_login=self.autostart.is_enabled(),
            token_in_use=self.token is not None,
        )

    def _comparison_item(self, name: str) -> ComparisonItem | None:
        """The model's running or last comparison, or the refusal of the one the tray asked for since."""
        try:
            latest = self.comparisons.latest(name)
        except ServingError:  # no longer served
            return None
        refusal = self._compare_refusals.get(name)
        if refusal is not None and refusal[0] is latest and (latest is None or latest.state != "running"):
            return refusal[1]
        if latest is None:
            return None
        done, total = latest.progress
        result = latest.result
        return ComparisonItem(
            latest.version,
            latest.against,
            latest.state,
            done,
            total,
            summary=result.summary() if result is not None else None,
            error=latest.error.message if latest.error is not None else None,
        )

    def _model_item(self, summary: ModelSummary) -> ModelItem:
        name = summary.name
        recorded_sizes = self.request_log.file_sizes(name)  # one listing of its files per redraw
        return ModelItem(
            name,
            summary.chosen_version,
            _version_items(summary),
            self.request_log.recording(name),
            comparison=self._comparison_item(name),
            recorded_bytes=sum(recorded_sizes),
            recorded_files=len(recorded_sizes),
            warmup_from_recent_requests=self.recent_warmup.enabled(name),
            has_recorded_requests=bool(recorded_sizes) or self.recent_warmup.snapshot_path(name).is_file(),
            shadow_version=self._shadow_version(name),
            shadow_summary=self._shadow_summary(name),
        )

    def _backend_line(self) -> str:
        if self.remote is None:
            return "local"
        remote = self.remote.status()
        if remote.state == "up":
            latency = f", {remote.latency_ms:.0f} ms" if remote.latency_ms is not None else ""
            return f"remote {remote.url} (up{latency})"
        return f"local (remote {remote.url} {remote.state})"

    def subscribe(self, listener) -> None:
        """Call ``listener()`` whenever models, versions, chosen versions or settings change."""
        self._listeners.append(listener)
        self.manager.subscribe(listener)
        if self._figures_watcher is None:
            self._figures_watcher = threading.Thread(
                target=self._watch_tray_figures, name="appliance-tray-figures", daemon=True
            )
            self._figures_watcher.start()

    def on_notification(self, callback) -> None:
        """Call ``callback(message)`` with news worth a desktop notification (a comparison has finished)."""
        self._notification_callbacks.append(callback)

    def _notify_listeners(self) -> None:
        for listener in self._listeners:
            listener()

    def _watch_tray_figures(self) -> None:
        """Tell the listeners when figures the tray shows have moved: the recorded requests' sizes (while
        recording) and shadow traffic's agreement (while some model is shadowed)."""
        sizes: dict[str, int] = {}  # of the models recorded, or with records, when last looked at
        while not self._closing.wait(TRAY_FIGURES_POLL_SECONDS):
            recording = self.request_log.sampling()
            now = {name: self.request_log.bytes_on_disk(name) for name in {*recording, *sizes}}
            if now != sizes or self.manager.shadow.active():
                self._notify_listeners()
            sizes = {name: size for name, size in now.items() if size or name in recording}

    def _comparison_changed(self, comparison: Comparison) -> None:
        """A comparison started, moved on or ended: redraw the tray; once it has ended, say how it went."""
        self._notify_listeners()
        if comparison.state in ("running", "cancelled") or comparison in self._notified:
            return
        self._notified.add(comparison)
        pair = f"{comparison.name} v{comparison.version} with v{comparison.against}"
        if comparison.error is not None:
            message = f"Comparison of {pair} failed: {comparison.error.message}"
        else:
            message = comparison.result.summary() if comparison.result is not None else ""
            log.info("compared %s: %s", pair, message)
        for callback in self._notification_callbacks:
            callback(message)

    # -- commands ------------------------------------------------------------

    def set_recording(self, model: str, enabled: bool) -> None:
        """Record ``model``'s requests (at its configured rate, else all of them) or stop; remembered."""
        rate = (self._configured_sampling.get(model) or 1.0) if enabled else 0.0
        self.preferences.set_request_log_sampling(model, rate)
        self._apply_sampling()
        for listener in self._listeners:
            listener()

    def delete_recorded_requests(self, model: str) -> None:
        """Remove every recorded request of ``model`` (recording goes on if it is on)."""
        removed = self.request_log.delete(model)
        self.recent_warmup.delete_snapshot(model)  # it holds recorded requests too
        log.info("deleted the recorded requests of %s (%d files)", model, removed)
        self._notify_listeners()  # the tray shows their size

    def compare_versions(self, model: str, version: int) -> None:
        """Compare ``version`` of ``model`` with its chosen version on its recorded requests, in the background;
        a refusal is logged and shown in the tray."""
        # Reading the recorded requests takes a while and the tray calls from its GUI thread.
        threading.Thread(
            target=self._compare, args=(model, version), name="appliance-compare-start", daemon=True
        ).start()

    def _compare(self, model: str, version: int) -> None:
        latest = None
        chosen = None
        try:
            latest = self.comparisons.latest(model)
            chosen = self.manager.chosen_version(model)
            if chosen is None:
                raise ServingError(f"model {model} has no chosen version to compare with", Code.FAILED_PRECONDITION)
            self.comparisons.start(model, version, chosen)
        except Exception as e:
            message = getattr(e, "message", None) or str(e)
            log.warning("cannot compare %s v%d with the chosen version: %s", model, version, message)
            refusal = ComparisonItem(version, chosen if chosen is not None else version, "refused", error=message)
            self._compare_refusals[model] = (latest, refusal)
            self._notify_listeners()

    def cancel_comparison(self, model: str) -> None:
        """Cancel the running comparison of ``model``, if any (the figures so far are kept)."""
        with contextlib.suppress(ServingError):
            comparison = self.comparisons.latest(model)
            if comparison is not None and comparison.state == "running":
                comparison.cancel()
                log.info("cancelled the comparison of %s v%d with v%d", model, comparison.version, comparison.against)

    def set_warmup_from_recent_requests(self, model: str, enabled: bool) -> None:
        """Warm ``model``'s new versions up with its most recent recorded requests, or stop; remembered."""
        # Writing the snapshot reads the request log: off the tray's GUI thread.
        threading.Thread(
            target=self._set_warmup, args=(model, enabled), name="appliance-warmup-setting", daemon=True
        ).start()

    def _set_warmup(self, model: str, enabled: bool) -> None:
        try:
            records = self.recent_warmup.set(model, DEFAULT_WARMUP_LIMIT if enabled else 0)
            log.info("warm-up from recent requests of %s: %s", model, f"{records} records" if enabled else "off")
        except Exception as e:  # shown in the log; the setting stays as it was
            log.warning("cannot change the warm-up from recent requests of %s: %s", model, getattr(e, "message", e))
        self._notify_listeners()

    def set_shadow(self, model: str, version: int | None) -> None:
        """Send a share of ``model``'s live requests also to ``version`` (None: off); remembered. The share is the
        one in force, else settings.toml's, else 10%."""
        current = self.manager.shadow.figures(model)
        share = current.config.share if current else self.settings.shadow.get(model, {}).get("share", DEFAULT_SHARE)
        self.preferences.set_shadow(model, version, share)
        self._apply_shadow()
        for listener in self._listeners:
            listener()

    def _apply_shadow(self) -> None:
        """Shadow traffic as settings.toml's ``shadow`` and the tray's choices (winning over it) say."""
        wanted = {**self.settings.shadow, **self.preferences.shadow()}
        self.manager.shadow.replace(
            {model: ShadowConfig(int(c["version"]), c["share"]) for model, c in wanted.items() if c is not None}
        )

    def _shadow_version(self, model: str) -> int | None:
        figures = self.manager.shadow.figures(model)
        return figures.version if figures else None

    def _shadow_summary(self, model: str) -> str | None:
        figures = self.manager.shadow.figures(model)
        return figures.summary() if figures else None

    def switch_version(self, model: str, version: int) -> None:
        """Serve ``version`` of ``model`` to requests that name no version (loading it first if needed)."""
        # A load takes a while and the tray calls from its GUI thread: do it in the background.
        threading.Thread(target=self._switch, args=(model, version), name="appliance-switch", daemon=True).start()

    def _switch(self, model: str, version: int) -> None:
        try:
            self.manager.choose(model, version)
        except Exception as e:  # shown in the log; the previous choice keeps serving
            log.warning("cannot switch %s to version %d: %s", model, version, getattr(e, "message", e))

    def open_docs(self) -> None:
        if self.url is not None:
            open_in_desktop(self.url + "/")

    def copy_url(self) -> None:
        if self.url is not None:
            copy_text(self.url)

    def copy_grpc_address(self) -> None:
        if self.grpc_address is not None:
            copy_text(self.grpc_address)

    def copy_token(self) -> None:
        if self.token is not None:
            copy_text(self.token)

    def open_models_folder(self) -> None:
        open_in_desktop(paths.ensure_dir(paths.user_models_dir()))

    def view_logs(self) -> None:
        log_file = paths.log_file()
        open_in_desktop(log_file if log_file.exists() else log_file.parent)

    def set_start_at_login(self, enabled: bool) -> None:
        if enabled:
            self.autostart.enable()
        else:
            self.autostart.disable()
        log.info("start at login: %s", "on" if enabled else "off")
        for listener in self._listeners:
            listener()

    def quit(self) -> None:
        """Stop serving gracefully and end the tray."""
        log.info("quit requested")
        self.stop(wait=False)
        for callback in self._quit_callbacks:
            callback()
