"""``appliance serve`` as the system service (``APPLIANCE_SYSTEM=1``, see ``installer/linux/appliance.service``).

    reloads = catch_reload_signals()          # first thing: from now on SIGHUP asks for a reload
    ...                                       # build and start the Application
    serve_as_service(app, reloads, reread_settings, Notifier.from_environment())   # main thread

Besides serving as ``appliance serve`` does, it tells systemd how it is doing (``Type=notify``): STATUS lines
while models load, READY=1 once every model is AVAILABLE or failed, RELOADING=1 then READY=1 around a reload,
STOPPING=1 on SIGTERM/SIGINT. SIGHUP (``systemctl reload appliance``) re-reads ``settings.toml`` and
``models.config`` and applies them while serving (new versions load before old ones unload, so no request is
dropped). It publishes the system-wide discovery file (``/run/appliance/appliance.json``) readable by every user:
it names URLs and the process, never the token.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING

from . import __version__, paths
from .errors import ServingError
from .instance import Discovery, remove_discovery, write_discovery
from .sd_notify import Notifier
from .server import Stoppable, install_signal_handlers
from .serving.manager import ModelsNotAvailable

if TYPE_CHECKING:
    from .application import Application
    from .config import Settings

log = logging.getLogger(__name__)

DISCOVERY_MODE = 0o644  # desktop users find the service without the token (the file holds none)
FINISH_TIMEOUT_S = 30.0  # how long a stop waits for a reload under way (systemd's TimeoutStopSec is 45 s)


def use_cache_dir_for_libraries(environ: MutableMapping[str, str] = os.environ) -> None:
    """Point what Keras and matplotlib write at import (~/.keras, ~/.cache/matplotlib) at the service's cache
    folder, unless the unit's environment says otherwise; call before TensorFlow is imported."""
    cache = paths.user_cache_dir()
    environ.setdefault("KERAS_HOME", str(cache / "keras"))
    environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))


def catch_reload_signals() -> queue.SimpleQueue[int]:
    """Queue each SIGHUP from now on (its default would end the process): reloads asked for while starting are
    carried out once the models have loaded. Call from the main thread."""
    reloads: queue.SimpleQueue[int] = queue.SimpleQueue()  # put() is safe in a signal handler
    signal.signal(signal.SIGHUP, lambda signum, frame: reloads.put(signum))
    return reloads


def serve_as_service(
    app: Application,
    reloads: queue.SimpleQueue[int],
    reread_settings: Callable[[], Settings],
    notifier: Notifier,
    stop_with: Callable[[Stoppable], None] = install_signal_handlers,
) -> None:
    """Serve until SIGTERM/SIGINT, reloading on each SIGHUP ``reloads`` receives; returns once stopped.

    ``stop_with`` is handed what stops the service gracefully (telling the manager it stops): by default
    SIGTERM/SIGINT do; the Windows service hands it to the service manager's stop instead.
    """
    discovery = paths.discovery_file()
    discovery.parent.mkdir(mode=0o755, parents=True, exist_ok=True)  # systemd makes it so (RuntimeDirectoryMode=)
    rest_port = app.server.port if app.server is not None else None
    write_discovery(
        discovery,
        Discovery.for_this_process(app.url, rest_port, __version__, app.grpc_address, app.grpc_port),
        mode=DISCOVERY_MODE,
    )
    lifecycle = _Lifecycle(app, reloads, reread_settings, notifier)
    stop_with(lifecycle)
    app.subscribe(lifecycle.refresh_status)
    worker = threading.Thread(target=lifecycle.run, name="appliance-service", daemon=True)
    worker.start()
    try:
        app.serve_forever()
    finally:
        lifecycle.finish(worker)
        remove_discovery(discovery)


class _Lifecycle:
    """Readiness, reloads and stopping, told to the service manager; the :class:`Stoppable` of the signals."""

    def __init__(
        self,
        app: Application,
        reloads: queue.SimpleQueue[int],
        reread_settings: Callable[[], Settings],
        notifier: Notifier,
    ):
        self.app = app
        self.reload_requests = reloads
        self.reread_settings = reread_settings
        self.notifier = notifier
        self._stopping = threading.Event()
        self._last_status: str | None = None
        self._status_lock = threading.Lock()

    def run(self) -> None:
        """Say READY=1 once the models have loaded, then carry out the reloads asked for, one at a time."""
        self.app.manager.wait_until_ready()
        if self._stopping.is_set():
            return
        self.notifier.ready(self.status_line())
        while not self._stopping.is_set():
            try:
                self.reload_requests.get(timeout=0.5)
            except queue.Empty:
                continue
            while not self.reload_requests.empty():  # several SIGHUPs in a row: one reload reads the latest files
                self.reload_requests.get()
            if not self._stopping.is_set():
                self.reload()

    def reload(self) -> None:
        log.info("SIGHUP received: reloading settings.toml and the models config")
        self.notifier.reloading()
        try:
            settings = self.reread_settings()
            restart_needed = self.app.reload_settings(settings)
        except ModelsNotAvailable as e:
            log.warning("reloaded, but %s", e.message)
        except ServingError as e:
            log.error("reload refused, serving as before: %s", e.message)
            self.notifier.ready(f"reload refused, serving as before: {e.message}")
            return
        except Exception:
            log.exception("reload failed, serving as before")
            self.notifier.ready("reload failed, serving as before (see the log)")
            return
        else:
            for name in restart_needed:
                log.warning("%s changed: it takes effect at the next restart (systemctl restart appliance)", name)
            log.info("reloaded")
        self.notifier.ready(self.status_line())

    def refresh_status(self) -> None:
        """Tell systemd the new status line when it changed (called by the manager after every change)."""
        line = self.status_line()
        with self._status_lock:
            if line == self._last_status:
                return
            self._last_status = line
        self.notifier.status(line)

    def status_line(self) -> str:
        """What ``systemctl status`` shows, e.g. "loading digits v2 (1/3)" or "serving 2 models on http://..."."""
        manager = self.app.manager
        progress = manager.loading_progress()
        if progress is not None or not manager.ready:
            return progress.describe() if progress else "loading models"
        summaries = [s for s in manager.summaries() if not s.unloaded]
        unavailable = [s.name for s in summaries if s.chosen_version is None]
        served = len(summaries) - len(unavailable)
        where = " and ".join(
            a for a in (self.app.url, self.app.grpc_endpoints and "gRPC " + self.app.grpc_endpoints) if a
        )
        line = f"serving {served} model{'s' * (served != 1)} on {where}"
        return line + (f"; unavailable: {', '.join(unavailable)}" if unavailable else "")

    def finish(self, worker: threading.Thread) -> None:
        """Take no more reloads and let one under way complete before the models are closed: a daemon thread
        still inside TensorFlow when the process exits aborts it ("terminate called ...", exit status 134)."""
        self._stopping.set()
        worker.join(FINISH_TIMEOUT_S)

    # -- the Stoppable that SIGTERM/SIGINT stop

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            self.notifier.stopping()
        self.app.stop(timeout, wait=wait)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self.app.wait_stopped(timeout)
