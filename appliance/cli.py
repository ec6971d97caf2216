"""The ``appliance`` command: serve models, list them, or ask for a prediction.

    appliance                                        # the desktop app: tray icon, bundled + your models
    appliance serve --port 8501                      # the same models, headless, for scripts and services
    appliance serve --model_config_file models.config
    appliance models                                 # what a running appliance serves
    appliance predict digits --input '[[0, 0, 5, 13, 9, 1, 0, 0, ...]]'

Serving flags follow ``tensorflow_model_server``'s names where they exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import __version__
from .config import (
    DEFAULT_CHANNEL_TIMEOUT_SECONDS,
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PORT,
    DEFAULT_REST_API_TIMEOUT_MS,
    DEFAULT_THREADS,
    RemoteSettings,
    Settings,
    access_settings,
    read_settings_file,
    remote_settings,
)
from .errors import InvalidArgument, ServingError
from .logs import configure_logging

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
LAUNCHED = time.monotonic()  # about when the process started: this module is among the first imported
log = logging.getLogger("appliance")


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)")
    net.add_argument(
        "--port",
        "--rest_api_port",
        type=int,
        default=DEFAULT_PORT,
        help="TCP port; 0 picks a free one and prints it (default: %(default)s)",
    )
    net.add_argument(
        "--allowed_host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name to answer besides localhost, 127.0.0.1, [::1] and --host (repeatable); "
        "others get 403 (DNS rebinding protection)",
    )
    net.add_argument(
        "--token",
        default=os.environ.get("APPLIANCE_TOKEN"),
        help="require 'Authorization: Bearer TOKEN' from clients (default: $APPLIANCE_TOKEN; when "
        "--host is not loopback, a token is made once and kept in the config folder)",
    )
    net.add_argument(
        "--require_token_for_control",
        action="store_true",
        help="also on loopback, changes through the control API (PUT .../chosen, POST .../reload) "
        "need the token (made and kept as for --host beyond loopback); predictions and status stay "
        "open (also require_token_for_control = true in settings.toml)",
    )
    net.add_argument(
        "--cors_allowed_origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN (e.g. http://localhost:3000 or chrome-extension://<id>) call "
        "the API from a browser (repeatable; also cors_allowed_origins = [...] in settings.toml); "
        "'*' allows every origin, never with credentials (default: none, no CORS headers at all)",
    )
    net.add_argument(
        "--max_request_bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest request body accepted; larger ones get 413 before they are read "
        "(default: %(default)s); request line and headers are limited to 64 KiB (431)",
    )
    net.add_argument(
        "--connection_limit",
        type=int,
        default=DEFAULT_CONNECTION_LIMIT,
        help="most client connections open at once; more wait to be accepted (default: %(default)s)",
    )
    net.add_argument(
        "--channel_timeout",
        type=int,
        default=DEFAULT_CHANNEL_TIMEOUT_SECONDS,
        help="seconds after which an idle client connection is closed (default: %(default)s)",
    )
    net.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help="request worker threads; keep it at least the largest max_batch_size (default: %(default)s)",
    )
    net.add_argument(
        "--rest_api_timeout_in_ms",
        type=int,
        default=DEFAULT_REST_API_TIMEOUT_MS,
        help="longest a request may wait for and run its model; then 504 (default: %(default)s; 0: none)",
    )
    models = parser.add_argument_group("models (default: the bundled models)")
    models.add_argument(
        "--model_config_file", type=Path, help="a TensorFlow Serving models.config (ModelServerConfig text proto)"
    )
    models.add_argument("--model_name", help="serve one model under this name (with --model_base_path)")
    models.add_argument("--model_base_path", type=Path, help="folder of that model's numbered versions")
    models.add_argument(
        "--models_dir",
        type=Path,
        action="append",
        default=[],
        help="a folder whose sub-folders are models (<name>/<version>/saved_model.pb); repeatable",
    )
    models.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="how often to look for new or removed versions; 0 = only at start (default: %(default)s)",
    )
    remote = parser.add_argument_group(
        "remote TensorFlow Serving (more in settings.toml: token, headers, model names, routing per model)"
    )
    remote.add_argument(
        "--remote_url",
        "--remote-url",
        default=os.environ.get("APPLIANCE_REMOTE_URL"),
        help="a TF Serving REST URL to proxy to, falling back to local models when it is down "
        "(default: $APPLIANCE_REMOTE_URL, then settings.toml)",
    )
    remote.add_argument("--remote_timeout_seconds", type=float, help="read timeout of a remote call (default: 30)")
    remote.add_argument(
        "--remote_probe_seconds", type=float, help="how often the remote's health is probed (default: 2)"
    )
    remote.add_argument("--settings_file", type=Path, help="the settings file (default: the per-user settings.toml)")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="where to run models: a GPU when one is found (auto), or force one (default: %(default)s)",
    )
    runtime.add_argument(
        "--enable_batching",
        type=_flag_value,
        nargs="?",
        const=True,
        default=None,
        help="merge concurrent predict requests into batched model calls (true/false; default: "
        "only models whose version folder has a batching_params.pbtxt, as the bundled ones do)",
    )
    runtime.add_argument(
        "--batching_parameters_file",
        type=Path,
        help="a TF Serving BatchingParameters text proto (max_batch_size, batch_timeout_micros, "
        "max_enqueued_batches, num_batch_threads, allowed_batch_sizes, pad_variable_length_inputs); "
        "implies --enable_batching",
    )
    runtime.add_argument(
        "--enable_model_warmup",
        type=_flag_value,
        nargs="?",
        const=True,
        default=True,
        help="warm each version up (assets.extra/tf_serving_warmup_requests, else a synthetic "
        "request) before it is AVAILABLE (default: true)",
    )
    runtime.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=0,
        help="threads inside one TF op; 0 = TensorFlow's choice",
    )
    runtime.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=int,
        default=0,
        help="threads running TF ops in parallel; 0 (default) = one-row calls that cannot loop run in "
        "the calling thread (the fastest for small models) and the others on TensorFlow's pool; "
        "N > 0 = every call on a pool of N; -1 = every call in the calling thread",
    )
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


# Settings taken as they are from the flag of the same name.
SETTINGS_FROM_FLAGS = (
    "connection_limit",
    "channel_timeout",
    "host",
    "port",
    "model_config_file",
    "model_name",
    "model_base_path",
    "file_system_poll_wait_seconds",
    "device",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
    "max_request_bytes",
    "threads",
    "enable_batching",
    "batching_parameters_file",
    "enable_model_warmup",
    "rest_api_timeout_in_ms",
)


def _flag_value(text: str) -> bool:
    """TF Serving's boolean flag values: --flag, --flag=true, --flag=false."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Serve TensorFlow SavedModels over a local REST API compatible with TensorFlow Serving. "
        "Without a command, runs the desktop app (`appliance desktop`): a tray icon when there is a display.",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    desktop = commands.add_parser(
        "desktop",
        help="the default: serve with a tray icon (headless when there is no display)",
        description="Serve models with a tray icon to switch versions; one per user (a second launch prints the "
        "running one's URL). Without a display or tray, or with --headless, serves headless.",
    )
    _add_serve_flags(desktop)
    desktop.add_argument("--headless", action="store_true", help="no tray icon, even when a display is available")
    serve = commands.add_parser(
        "serve",
        help="serve models over HTTP until interrupted (no tray, no single-instance)",
        description="Serve models over HTTP until SIGINT/SIGTERM (graceful stop).",
    )
    _add_serve_flags(serve)
    models = commands.add_parser("models", help="list the models, versions and states of a running appliance")
    models.add_argument("--url", default=DEFAULT_URL, help="the appliance to ask (default: %(default)s)")
    predict = commands.add_parser(
        "predict", help="send one prediction to a running appliance", description="POST /predict and print the answer."
    )
    predict.add_argument("model", help="model name, e.g. digits")
    predict.add_argument(
        "--input", required=True, help="the input tensor as JSON, or @FILE to read it from a file (@- for stdin)"
    )
    pin = predict.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int, dest="model_version", help="a specific version (default: the chosen one)")
    pin.add_argument("--label", help="a version label, e.g. stable")
    predict.add_argument("--signature_name", help="signature to run (default: serving_default)")
    predict.add_argument("--url", default=DEFAULT_URL, help="the appliance to ask (default: %(default)s)")
    return parser


def _settings_file(args: argparse.Namespace) -> tuple[dict, str]:
    """The settings file's contents and its path."""
    from . import paths

    settings_file = args.settings_file or paths.settings_file()
    return read_settings_file(settings_file), str(settings_file)


def _remote_from_args(args: argparse.Namespace, file_settings: dict, source: str) -> RemoteSettings | None:
    remote = remote_settings(file_settings, source, args.remote_url)
    if remote is None:
        return None
    overrides = {"timeout_seconds": args.remote_timeout_seconds, "probe_seconds": args.remote_probe_seconds}
    return dataclasses.replace(remote, **{k: v for k, v in overrides.items() if v is not None})


def settings_from_args(args: argparse.Namespace) -> Settings:
    if (args.model_name is None) != (args.model_base_path is None):
        raise InvalidArgument("--model_name and --model_base_path go together")
    file_settings, source = _settings_file(args)
    file_origins, file_requires_token = access_settings(file_settings, source)
    return Settings(
        remote=_remote_from_args(args, file_settings, source),
        allowed_hosts=tuple(args.allowed_host),
        token=args.token,
        require_token_for_control=args.require_token_for_control or file_requires_token,
        cors_allowed_origins=(*args.cors_allowed_origin, *file_origins),
        model_roots=tuple(args.models_dir),
        **{name: getattr(args, name) for name in SETTINGS_FROM_FLAGS},
    )


def _build(settings: Settings, defer_tensorflow: bool = False):
    """The Application, or the exit status and a one-line error on stderr when it cannot start."""
    from .application import Application
    from .server import PortInUse

    try:
        app = Application(settings, defer_tensorflow)
    except ServingError as e:
        print(f"appliance: error: {e.message}", file=sys.stderr)
        return None, 2
    except PortInUse as e:
        print(f"appliance: error: {e}", file=sys.stderr)
        return None, 1
    except OSError as e:  # e.g. --host names an address this machine does not have
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
    app, failed = _build(settings)
    if app is None:
        return failed
    app.start()
    try:
        _serve_headless(app)
    finally:
        app.close()
    log.info("stopped")
    return 0


def desktop(settings: Settings, headless: bool, log_level: str) -> int:
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
        configure_logging(log_level, paths.log_file())
        # Before the tray probe and TensorFlow start threads, which must not take SIGINT/SIGTERM.
        signals_blocked = not headless and _block_quit_signals()
        reason = "--headless was given" if headless else tray_unavailable_reason()
        if reason and signals_blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, QUIT_SIGNALS)  # headless: Python's handlers take them
            signals_blocked = False
        # With a tray, TensorFlow is imported in the background: the icon shows "loading" meanwhile.
        app, failed = _build(settings, defer_tensorflow=not reason)
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


def _http(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def list_models(url: str) -> int:
    _, health = _http(url.rstrip("/") + "/health")
    device = health.get("device", {})
    print(f"{url}  status: {health.get('status')}  device: {device.get('type')} ({device.get('name')})")
    rows = [("MODEL", "VERSION", "STATE", "CHOSEN", "ERROR")]
    for model in health.get("models", []):
        for v in model["versions"] or [{"version": "-", "state": "NO VERSIONS", "error": None}]:
            chosen = "*" if v["version"] == model["chosen_version"] else ""
            rows.append((model["name"], str(v["version"]), v["state"], chosen, v["error"] or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + ("  " + row[4] if row[4] else ""))
    remote = health.get("remote")
    if remote:
        latency = f", {remote['latency_ms']} ms" if remote.get("latency_ms") is not None else ""
        print(
            f"remote {remote['url']}: {remote['state']}{latency}" + (f" ({remote['error']})" if remote["error"] else "")
        )
        for model, routing in sorted(remote["routing"].items()):
            versions = ", ".join(map(str, remote["versions"].get(model, []))) or "none"
            print(f"  {model}: {routing}; remote serves versions: {versions}")
    return 0


def predict(args: argparse.Namespace) -> int:
    text = args.input
    if text.startswith("@"):
        text = sys.stdin.read() if text == "@-" else Path(text[1:]).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        print(f"appliance: error: --input is not valid JSON: {e}", file=sys.stderr)
        return 2
    body = {"model": args.model, "input": value}
    for key, option in (
        ("version", args.model_version),
        ("label", args.label),
        ("signature_name", args.signature_name),
    ):
        if option is not None:
            body[key] = option
    status, answer = _http(args.url.rstrip("/") + "/predict", body)
    if status != 200:
        print(f"appliance: error {status}: {answer.get('error', answer)}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["desktop", *argv]
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "log_level", "WARNING"))
    try:
        if args.command == "serve":
            return serve(settings_from_args(args))
        if args.command == "desktop":
            return desktop(settings_from_args(args), args.headless, args.log_level)
        if args.command == "models":
            return list_models(args.url)
        return predict(args)
    except ServingError as e:
        print(f"appliance: error: {e.message}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        print(
            f"appliance: error: no appliance answers at {args.url} ({reason}); start one with `appliance serve`",
            file=sys.stderr,
        )
        return 1
