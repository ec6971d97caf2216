"""The appliance as a Windows service: ``appliance-cli.exe service run``, which the service manager (SCM) starts.

    host = ServiceHost(report, read_settings)   # report(state, wait_hint_ms, exit_code): SetServiceStatus
    host.run()                                  # the SCM's service thread: serves until host.stop()
    run_windows_service(read_settings)          # Windows only: hands this process to the SCM (pywin32)

The service serves as ``appliance serve`` does with ``APPLIANCE_SYSTEM=1`` (folders under
``%ProgramData%\\appliance``) and tells the SCM how it is doing, as the Linux service tells systemd:
START_PENDING while TensorFlow imports and the models load, RUNNING once every model is AVAILABLE or failed
(what ``sc query`` then shows), STOP_PENDING on ``sc stop`` or at shutdown (the graceful stop of SIGTERM:
requests in flight finish), and ``sc control appliance paramchange`` reloads ``settings.toml`` and
``models.config`` as SIGHUP does on Linux. Lines written to stdout/stderr (a service has neither) go to the log.

:class:`ServiceHost` holds that logic and takes the SCM's reporting function, so it runs (and is tested) on every
OS; only :func:`run_windows_service` imports pywin32.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import paths
from .errors import ServingError
from .logs import configure_logging
from .sd_notify import Notifier

if TYPE_CHECKING:
    from .config import Settings
    from .server import Stoppable

log = logging.getLogger(__name__)

SERVICE_NAME = "appliance"
# SERVICE_STATUS.dwCurrentState (winsvc.h), the values pywin32's win32service names
STOPPED, START_PENDING, STOP_PENDING, RUNNING = 1, 2, 3, 4
# How long the SCM should wait for the next report: TensorFlow's import and the first models take seconds to
# minutes; each model loaded reports again (the checkpoint moves on). The stop waits for requests in flight.
START_WAIT_HINT_MS = 120_000
STOP_WAIT_HINT_MS = 45_000
ERROR_SERVICE_SPECIFIC_ERROR = 1066  # win32ExitCode when the service says why with its own exit code

Report = Callable[[int, int, int], None]  # (state, wait hint in ms, exit status): one SetServiceStatus


class ServiceHost(Notifier):
    """Serves and reports to the SCM: the service manager's side of :func:`appliance.service.serve_as_service`."""

    def __init__(self, report: Report, read_settings: Callable[[], Settings]):
        super().__init__(None)  # no systemd: the Notifier's messages become SCM reports (the methods below)
        self._report = report
        self.read_settings = read_settings
        self.reloads: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.state = STOPPED
        self._lock = threading.Lock()
        self._stop_requested = False
        self._stoppable: Stoppable | None = None

    def run(self) -> int:
        """Serve until :meth:`stop`; returns the exit status, reported with SERVICE_STOPPED."""
        self._set(START_PENDING, START_WAIT_HINT_MS)
        try:
            settings = self.read_settings()
            configure_logging(settings.log_level, paths.log_file())  # to stderr only where there is one
        except ServingError as e:
            log.error("%s", e.message)
            status = 2
        else:
            # After configure_logging: its stderr handler writes to the real stderr, not back into the log.
            with (
                contextlib.redirect_stdout(_LinesToLog(logging.INFO)),
                contextlib.redirect_stderr(_LinesToLog(logging.ERROR)),
            ):
                try:
                    status = self._serve(settings)
                except Exception:
                    log.exception("the service failed")
                    status = 1
        self._set(STOPPED, 0, status)
        return status

    def _serve(self, settings: Settings) -> int:
        from . import launcher
        from .service import serve_as_service, use_cache_dir_for_libraries

        use_cache_dir_for_libraries()
        app, failed = launcher.build_listening(settings)
        if app is None:
            return failed
        try:
            with self._lock:
                if self._stop_requested:
                    return 0
            app.start()
            log.info("serving on %s", " and ".join(a for a in (app.url, app.grpc_endpoints) if a))
            serve_as_service(app, self.reloads, self.read_settings, self, stop_with=self._stop_with)
        finally:
            app.close()
        log.info("stopped")
        return 0

    def _stop_with(self, stoppable: Stoppable) -> None:
        with self._lock:
            self._stoppable = stoppable
            stop_now = self._stop_requested
        if stop_now:  # the SCM asked while the models were loading
            stoppable.stop(None, wait=False)

    # -- the SCM's controls (its control thread)

    def stop(self) -> None:
        """SERVICE_CONTROL_STOP or SHUTDOWN: stop as SIGTERM does, gracefully."""
        with self._lock:
            self._stop_requested = True
            stoppable = self._stoppable
        log.info("the service manager asked the service to stop")
        self._set(STOP_PENDING, STOP_WAIT_HINT_MS)
        if stoppable is not None:
            stoppable.stop(None, wait=False)

    def reload(self) -> None:
        """SERVICE_CONTROL_PARAMCHANGE (``sc control appliance paramchange``): reload as SIGHUP does on Linux."""
        self.reloads.put(0)

    def interrogate(self) -> None:
        """SERVICE_CONTROL_INTERROGATE: say the state again."""
        self._set(self.state, START_WAIT_HINT_MS if self.state == START_PENDING else STOP_WAIT_HINT_MS)

    # -- what serve_as_service tells the service manager (the Notifier's messages)

    def ready(self, status: str | None = None) -> None:
        with self._lock:
            starting = self.state == START_PENDING and not self._stop_requested
        if starting:
            self._set(RUNNING, 0)
        if status:
            log.info("%s", status)

    def status(self, text: str) -> None:
        if self.state == START_PENDING:  # loading: one more model done, the SCM's checkpoint moves on
            self._set(START_PENDING, START_WAIT_HINT_MS)
        log.debug("%s", text)

    def reloading(self, status: str = "") -> None:
        log.info("reloading (service control paramchange)")

    def stopping(self, status: str = "") -> None:
        self._set(STOP_PENDING, STOP_WAIT_HINT_MS)

    def _set(self, state: int, wait_hint_ms: int, exit_status: int = 0) -> None:
        self.state = state
        self._report(state, wait_hint_ms, exit_status)


class _LinesToLog(io.TextIOBase):
    """A text stream whose lines go to the log: what ``print`` writes to stdout/stderr, which a service lacks."""

    def __init__(self, level: int):
        self.level = level
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                log.log(self.level, "%s", line.removeprefix("appliance: "))
        return len(text)


def run_windows_service(read_settings: Callable[[], Settings]) -> int:
    """Hand this process to the SCM, which runs the service in a thread of its own; returns once it stopped."""
    import servicemanager
    import win32service
    import win32serviceutil

    class ApplianceService(win32serviceutil.ServiceFramework):
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = SERVICE_NAME

        def __init__(self, args):
            super().__init__(args)
            self.host = ServiceHost(self._report, read_settings)

        def _report(self, state: int, wait_hint_ms: int, exit_status: int) -> None:
            failed = {"win32ExitCode": ERROR_SERVICE_SPECIFIC_ERROR, "svcExitCode": exit_status} if exit_status else {}
            self.ReportServiceStatus(state, waitHint=wait_hint_ms, **failed)

        def GetAcceptedControls(self):
            return super().GetAcceptedControls() | win32service.SERVICE_ACCEPT_PARAMCHANGE

        # The base class's SvcRun says RUNNING before serving starts: RUNNING waits for the models here.
        def SvcRun(self):
            self.host.run()

        def SvcStop(self):
            self.host.stop()

        def SvcShutdown(self):
            self.host.stop()

        def SvcInterrogate(self):
            self.host.interrogate()

        def SvcOther(self, control):
            if control == win32service.SERVICE_CONTROL_PARAMCHANGE:
                self.host.reload()

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(ApplianceService)
    servicemanager.StartServiceCtrlDispatcher()
    return 0
