"""Run the appliance as a process: headless, or as the desktop app with its tray; signals and a graceful stop.

    status = serve(settings)                  # headless until SIGINT/SIGTERM
    status = serve(settings, reread_settings)  # as the system service too (APPLIANCE_SYSTEM=1): SIGHUP reloads
    status = desktop(settings, headless=False)  # one per user, with a tray icon when the desktop has one
                                                # (or the tray of the system service when one runs)

The tray owns the main thread (GUI toolkits need it) and the server runs beside
it; SIGINT/SIGTERM are then awaited by a thread of their own.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import __version__
from .errors import ServingError
from .logs import configure_logging

if TYPE_CHECKING:
    from .config import Settings

LAUNCHED = time.monotonic()  # about when the process started: the command line imports this module first
log = logging.getLogger("appliance")


def _listen(settings: Settings):
    """The REST listening socket on --host:--rest_api_port (None with --enable_rest_api=false) and None, or None
    and the exit status after a one-line error on stderr.

    Called before anything slow (TensorFlow's import takes seconds), so a busy port is said at once, and kept
    for the server, so no other process can take the port between this check and serving.
    """
    from .server import PortInUse, listening_socket

    if not settings.enable_rest_api:
        return None, None
    try:
        return listening_socket(settings.host, settings.rest_api_port), None
    except PortInUse as e:
        print(f"appliance: error: {_in_use(e, '--rest_api_port')}", file=sys.stderr)
        return None, 2
    except OSError as e:  # e.g. --host names an address this machine does not have
        print(f"appliance: error: {e.strerror or e}", file=sys.stderr)
        return None, 1


def _in_use(error, flag: str) -> str:
    where = f"[{error.host}]:{error.port}" if ":" in error.host else f"{error.host}:{error.port}"
    return (
        f"{where} is already in use: stop the program listening there, "
        f"or pass {flag} with another port (0 picks a free one)"
    )


def _build(settings: Settings, sock: socket.socket | None, defer_tensorflow: bool = False):
    """The Application serving on ``sock`` (and binding gRPC's port), or the exit status and a one-line error on
    stderr when it cannot start."""
    from .application import Application
    from .grpc_server import SocketInUse
    from .server import PortInUse

    try:
        app = Application(settings, defer_tensorflow, sock)
    except (ServingError, PortInUse, SocketInUse, OSError) as e:
        if sock is not None:
            sock.close()
        if isinstance(e, ServingError):
            message, status = e.message, 2
        elif isinstance(e, PortInUse):  # REST's port is bound already: this is gRPC's
            message, status = _in_use(e, "--port"), 2
        elif isinstance(e, SocketInUse):
            message, status = f"{e}: stop the server there, or pass another --grpc_socket_path", 2
        else:  # e.g. a models folder that cannot be created
            message, status = str(e.strerror or e), 1
        print(f"appliance: error: {message}", file=sys.stderr)
        return None, status
    if app.token and not settings.token:
        from .api.security import is_loopback
        from .paths import token_file

        who = (
            "control requests (choosing, reloading) must send"
            if is_loopback(settings.host)
            else "listening beyond loopback: clients must send"
        )
        print(f"appliance: {who} 'Authorization: Bearer <token>' with the token in {token_file()}", flush=True)
    return app, None


def build_listening(settings: Settings):
    """The Application listening as ``serve`` makes it (not started yet), or None and the exit status after a
    one-line error on stderr: for hosts that run it themselves (the Windows service)."""
    sock, failed = _listen(settings)
    if failed is not None:
        return None, failed
    return _build(settings, sock)


def _say_where(app) -> None:
    """Print where each API listens, REST's line first (scripts read the first line for the URL), then gRPC's."""
    rest = f"serving on {app.url}" if app.url else "REST API off (--enable_rest_api=false)"
    grpc = f"gRPC on {app.grpc_endpoints}" if app.grpc_endpoints else "gRPC API off (--enable_grpc_api=false)"
    print(f"appliance: {rest}\nappliance: {grpc}", flush=True)


def _serve_headless(app) -> None:
    from .server import install_signal_handlers

    install_signal_handlers(app)
    _say_where(app)
    app.serve_forever()


def serve(settings: Settings, reread_settings: Callable[[], Settings] | None = None) -> int:
    """Run the server in the foreground until SIGINT/SIGTERM; returns the exit status.

    As the system service (``APPLIANCE_SYSTEM=1``), it also tells systemd how it is doing and reloads on SIGHUP
    what ``reread_settings()`` reads then (see :mod:`appliance.service`).
    """
    from . import paths
    from .sd_notify import Notifier

    notifier = Notifier.from_environment() if paths.system_mode() else None
    if notifier is not None:
        from .service import catch_reload_signals, use_cache_dir_for_libraries

        reloads = catch_reload_signals()
        use_cache_dir_for_libraries()
        notifier.status("starting: importing TensorFlow")
    sock, failed = _listen(settings)
    if failed is not None:
        return failed
    app, failed = _build(settings, sock)
    if app is None:
        return failed
    app.start()
    try:
        if notifier is None:
            _serve_headless(app)
        else:
            from .service import serve_as_service

            _say_where(app)
            serve_as_service(app, reloads, reread_settings or (lambda: settings), notifier)
    finally:
        app.close()
    log.info("stopped")
    return 0


def desktop(settings: Settings, headless: bool) -> int:
    """The desktop app: one per user, with a tray icon when the desktop has a tray, else headless."""
    from . import paths
    from .instance import Discovery, InstanceLock, find_running_instance, remove_discovery, write_discovery
    from .tray import tray_unavailable_reason

    lock = InstanceLock(paths.instance_lock_file())
    if not lock.acquire():
        running = find_running_instance(paths.instance_lock_file(), paths.discovery_file())
        print(_already_running(running))
        return 0
    try:
        from .attached import find_service

        service = find_service(settings.rest_api_port if settings.enable_rest_api else None)
        if service is not None:
            configure_logging(settings.log_level, paths.log_file())
            return _attach(service, headless)
        sock, failed = _listen(settings)
        if failed is not None:
            return failed
        configure_logging(settings.log_level, paths.log_file())
        # Before the tray probe and TensorFlow start threads, which must not take SIGINT/SIGTERM.
        signals_blocked = not headless and _block_quit_signals()
        reason = "--headless was given" if headless else tray_unavailable_reason()
        if reason and signals_blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, QUIT_SIGNALS)  # headless: Python's handlers take them
            signals_blocked = False
        # With a tray, TensorFlow is imported in the background: the icon shows "loading" meanwhile.
        app, failed = _build(settings, sock, defer_tensorflow=not reason)
        if app is None:
            return failed
        rest_port = app.server.port if app.server is not None else None
        found_at = Discovery.for_this_process(app.url, rest_port, __version__, app.grpc_address, app.grpc_port)
        write_discovery(paths.discovery_file(), found_at)
        app.start()
        try:
            if reason:
                log.info("serving without a tray icon: %s", reason)
                _serve_headless(app)
            else:
                _run_with_tray(app, signals_blocked)
        finally:
            app.close()
            remove_discovery(paths.discovery_file())
        log.info("stopped")
        return 0
    finally:
        lock.release()


def _attach(service, headless: bool) -> int:
    """Show a tray for the system service running at ``service.url``; serve nothing (see :mod:`.attached`)."""
    from .attached import AttachedService
    from .tray import Tray, tray_unavailable_reason

    signals_blocked = not headless and _block_quit_signals()
    reason = "--headless was given" if headless else tray_unavailable_reason()
    if reason:
        if signals_blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, QUIT_SIGNALS)
        print(f"appliance is running as a system service on {service.url}; nothing to start", flush=True)
        return 0
    attached = AttachedService(service)
    tray = Tray(attached.tray_state, attached)
    attached.subscribe(tray.refresh)
    attached.on_quit(tray.stop)
    if signals_blocked:
        _await_quit_signals(attached)
    threading.Thread(target=attached.poll_forever, name="appliance-service-health", daemon=True).start()
    print(
        f"appliance: attached to the system service on {service.url}"
        + (" (read-only)" if attached.read_only else "")
        + ": closing this tray leaves it running",
        flush=True,
    )
    tray.run()
    log.info("tray closed; the service keeps running")
    return 0


def _already_running(running) -> str:
    if running is None:
        return "appliance: already running"
    grpc = f"gRPC on {running.grpc_address}" if running.grpc_address else ""
    if running.url:
        return f"appliance: already running at {running.url}" + (f" ({grpc})" if grpc else "")
    return f"appliance: already running, {grpc}"


def _run_with_tray(app, signals_blocked: bool) -> None:
    """The tray owns the main thread (GUI toolkits need it); the server runs beside it."""
    from .tray import Tray

    tray = Tray(app.tray_state, app)
    app.subscribe(tray.refresh)
    app.on_quit(tray.stop)
    app.on_notification(tray.notify)
    if signals_blocked:
        _await_quit_signals(app)
    server_thread = threading.Thread(target=app.serve_forever, name="appliance-server", daemon=True)
    server_thread.start()
    _say_where(app)
    log.info("tray icon shown %.2f s after launch", time.monotonic() - LAUNCHED)
    try:
        tray.run()
    finally:
        app.stop()
        server_thread.join()


QUIT_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _block_quit_signals() -> bool:
    """Block SIGINT/SIGTERM in this thread and every thread started later (TensorFlow's included).

    With a GUI main loop (not Python) holding the main thread, a Python signal
    handler might never run: the signals are instead awaited by a thread of their
    own (:func:`_await_quit_signals`). Returns False where this is not possible (Windows).
    """
    if not hasattr(signal, "pthread_sigmask"):
        return False  # Windows: Ctrl+C reaches the console only; Quit in the tray menu ends the app
    signal.pthread_sigmask(signal.SIG_BLOCK, QUIT_SIGNALS)
    return True


def _await_quit_signals(app) -> None:
    def wait_for_signal():
        received = signal.sigwait(QUIT_SIGNALS)
        log.info("%s received: quitting", signal.Signals(received).name)
        app.quit()

    threading.Thread(target=wait_for_signal, name="appliance-signals", daemon=True).start()
