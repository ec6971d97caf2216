"""Run the appliance as a process: headless, or as the desktop app with its tray; signals and a graceful stop.

    status = serve(settings)                  # headless until SIGINT/SIGTERM
    status = desktop(settings, headless=False)  # one per user, with a tray icon when the desktop has one

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
from typing import TYPE_CHECKING

from . import __version__
from .errors import ServingError
from .logs import configure_logging

if TYPE_CHECKING:
    from .config import Settings

LAUNCHED = time.monotonic()  # about when the process started: the command line imports this module first
log = logging.getLogger("appliance")


def _listen(settings: Settings):
    """The listening socket on --host:--port, or None and the exit status after a one-line error on stderr.

    Called before anything slow (TensorFlow's import takes seconds), so a busy port is said at once, and kept
    for the server, so no other process can take the port between this check and serving.
    """
    from .server import PortInUse, listening_socket

    try:
        return listening_socket(settings.host, settings.rest_api_port), None
    except PortInUse as e:
        where = f"[{e.host}]:{e.port}" if ":" in e.host else f"{e.host}:{e.port}"
        print(
            f"appliance: error: {where} is already in use: stop the program listening there, "
            "or pass --rest_api_port with another port (0 picks a free one)",
            file=sys.stderr,
        )
        return None, 2
    except OSError as e:  # e.g. --host names an address this machine does not have
        print(f"appliance: error: {e.strerror or e}", file=sys.stderr)
        return None, 1


def _build(settings: Settings, sock: socket.socket, defer_tensorflow: bool = False):
    """The Application serving on ``sock``, or the exit status and a one-line error on stderr when it cannot start."""
    from .application import Application

    try:
        app = Application(settings, defer_tensorflow, sock)
    except ServingError as e:
        sock.close()
        print(f"appliance: error: {e.message}", file=sys.stderr)
        return None, 2
    except OSError as e:  # e.g. a models folder that cannot be created
        sock.close()
        print(f"appliance: error: {e.strerror or e}", file=sys.stderr)
        return None, 1
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


def _serve_headless(app) -> None:
    from .server import install_signal_handlers

    install_signal_handlers(app.server)
    print(f"appliance: serving on {app.url}", flush=True)
    app.server.serve_forever()


def serve(settings: Settings) -> int:
    """Run the server in the foreground until SIGINT/SIGTERM; returns the exit status."""
    sock, failed = _listen(settings)
    if sock is None:
        return failed
    app, failed = _build(settings, sock)
    if app is None:
        return failed
    app.start()
    try:
        _serve_headless(app)
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
        print(f"appliance: already running at {running.url}" if running else "appliance: already running")
        return 0
    try:
        sock, failed = _listen(settings)
        if sock is None:
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
        write_discovery(paths.discovery_file(), Discovery.for_this_process(app.url, app.server.port, __version__))
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


def _run_with_tray(app, signals_blocked: bool) -> None:
    """The tray owns the main thread (GUI toolkits need it); the server runs beside it."""
    from .tray import Tray

    tray = Tray(app.tray_state, app)
    app.subscribe(tray.refresh)
    app.on_quit(tray.stop)
    if signals_blocked:
        _await_quit_signals(app)
    server_thread = app.server.start()
    print(f"appliance: serving on {app.url}", flush=True)
    log.info("tray icon shown %.2f s after launch", time.monotonic() - LAUNCHED)
    try:
        tray.run()
    finally:
        app.server.stop()
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
