"""The ``appliance`` command line: its commands, and flags derived from the settings' declarations.

    appliance                                        # the desktop app: tray icon, bundled + your models
    appliance serve --rest_api_port 8501                      # the same models, headless, for scripts and services
    appliance serve --model_config_file models.config
    appliance models                                 # what a running appliance serves
    appliance predict digits --input '[[0, 0, 5, 13, 9, 1, 0, 0, ...]]'   # one line of JSON; --pretty: indented
    appliance compare digits --version 1 --against 2   # replay recorded requests on both versions, in the appliance
    sudo appliance service install -- --host 0.0.0.0   # serve from boot, for all users (macOS, Windows; Linux: .deb)

Serving flags follow ``tensorflow_model_server``'s names where they exist (see :mod:`appliance.config`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
import urllib.error
from pathlib import Path
from typing import Any

from . import __version__, client, launcher, paths  # launcher notes when the process started: import it early
from .config import (
    DEFAULT_PORT,
    GROUPS,
    INERT_TFSERVING_FLAGS,
    Declared,
    Settings,
    declared_settings,
    read_settings_file,
    settings_from_sources,
    value_type,
)
from .errors import ServingError
from .logs import configure_logging
from .system_service import ServiceError

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
INERT_GROUP = "TF Serving flags with no effect here (accepted; each one given logs a warning saying why)"
INERT_DEST = "tfserving_inert."  # + the flag's name: where the parsed namespace keeps an inert flag's value
SYSTEM_ONLY_SERVE = (
    f"{paths.SYSTEM_ENV}=1 is for `appliance serve`, the system service; unset it to run the desktop app"
)
SERVICE_RUN = (
    "`appliance service run` is what the Windows service manager starts; elsewhere, and in a terminal, "
    "run `appliance serve`"
)
log = logging.getLogger("appliance")


def _flag_value(text: str) -> bool:
    """TF Serving's boolean flag values: --flag, --flag=true, --flag=false."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def default_text(declared: Declared) -> str:
    """A setting's default as ``--help`` and the docs say it."""
    if declared.option.default_doc is not None:
        return declared.option.default_doc
    if isinstance(declared.default, bool):
        return str(declared.default).lower()
    return "none" if declared.default in (None, ()) else str(declared.default)


def _help(declared: Declared) -> str:
    option = declared.option
    sources = [f"${option.env}"] if option.env else []
    if option.toml:
        sources.append("settings.toml" + (" [remote]" if declared.name.startswith("remote.") else ""))
    also = f"; also {' or '.join(sources)}" if sources else ""
    return f"{option.doc} (default: {default_text(declared)}{also})".replace("%", "%%")


def _argument(declared: Declared) -> tuple[list[str], dict[str, Any]]:
    """The names and keywords of ``add_argument`` for one setting."""
    names = [declared.flag, *declared.option.aliases]
    if declared.tfserving_flag not in names:
        names.append(declared.tfserving_flag)
    kind, many = value_type(declared.type)
    keywords: dict[str, Any] = {"dest": declared.name, "default": argparse.SUPPRESS, "help": _help(declared)}
    if many:
        keywords.update(action="append", type=kind)
    elif kind is bool:
        keywords.update(_typed(bool))
    else:
        keywords.update(type=kind, choices=declared.option.choices)
    if not many and kind is not bool and not declared.option.choices:
        keywords["metavar"] = declared.key.upper()
    if declared.option.metavar:
        keywords["metavar"] = declared.option.metavar
    return [name for name in names if name], keywords


def _typed(kind: type) -> dict[str, Any]:
    """The ``add_argument`` keywords of a flag of one value of ``kind``, in TF Serving's syntax."""
    if kind is bool:
        return {"type": _flag_value, "nargs": "?", "const": True, "metavar": "true|false"}
    return {"type": kind, "metavar": kind.__name__.upper()}


class _ServingVersion(argparse.Action):
    """TF Serving's ``--version``: the versions, then exit 0."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            tensorflow = importlib.metadata.version("tensorflow")
        except importlib.metadata.PackageNotFoundError:
            tensorflow = "not installed"
        print(f"appliance {__version__}\nTensorFlow Library: {tensorflow}")
        parser.exit()


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action=_ServingVersion, help="print the versions and exit (as TF Serving)")
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    for declared in declared_settings():
        if declared.flag is not None:
            names, keywords = _argument(declared)
            groups[declared.option.group].add_argument(*names, **keywords)
    inert = parser.add_argument_group(INERT_GROUP)
    for name, flag in INERT_TFSERVING_FLAGS.items():
        help_text = f"TF Serving: {flag.meaning}. No effect here: {flag.why}"
        keywords = {"dest": INERT_DEST + name, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
        inert.add_argument(f"--{name}", **keywords, **_typed(flag.type))


def inert_flags_given(args: argparse.Namespace) -> list[str]:
    """The TF Serving flags given that have no effect here, by name."""
    return [dest[len(INERT_DEST) :] for dest in vars(args) if dest.startswith(INERT_DEST)]


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
    predict.add_argument("--pretty", action="store_true", help="print the answer indented (default: one line of JSON)")
    compare = commands.add_parser(
        "compare",
        help="compare two versions of a model on recorded requests, in a running appliance",
        description="Replay the model's recorded requests (or its versions' warm-up requests, or --log) against "
        "both versions in the running appliance, in the background with a bounded share of the CPU, and print "
        "how their answers differ: agreement on the predicted class, absolute differences, requests that fail on "
        "one version only, and latency.",
    )
    compare.add_argument("model", help="model name, e.g. digits")
    compare.add_argument("--version", type=int, dest="model_version", required=True, help="the version to compare")
    compare.add_argument("--against", type=int, required=True, help="the version to compare it with")
    compare.add_argument("--log", type=Path, help="a request log or warm-up file (TFRecord of PredictionLog)")
    compare.add_argument("--limit", type=int, help="replay at most this many of the latest requests (default: 500)")
    compare.add_argument("--json", action="store_true", help="print the result as JSON")
    compare.add_argument("--url", default=DEFAULT_URL, help="the appliance to ask (default: %(default)s)")
    _add_service_commands(commands)
    return parser


def _add_service_commands(commands) -> None:
    service = commands.add_parser(
        "service",
        help="install, remove or check the system service (serves from boot, for all users)",
        description="The appliance as a system service: a LaunchDaemon on macOS, a Windows service; on Linux the "
        ".deb ships a systemd unit and these print the systemctl commands. install and uninstall need root "
        "(sudo) or an administrator's terminal. See docs/service.md.",
    )
    actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install",
        help="install (or update) the service and start it",
        description="Install the service (or update it to this program and these flags) and start it.",
    )
    install.add_argument(
        "serve_flags", nargs="*", metavar="-- FLAG", help="flags of `appliance serve` for the service, after --"
    )
    uninstall = actions.add_parser("uninstall", help="stop and remove the service")
    uninstall.add_argument(
        "--purge", action="store_true", help="also remove its settings, token, models and logs (the system folders)"
    )
    status = actions.add_parser(
        "status", help="whether the service answers and its models are ready (exit 0), loading (3) or absent (1)"
    )
    status.add_argument("--url", help="the service's URL (default: its discovery file's, else " + DEFAULT_URL + ")")
    status.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="ask until ready, at most this long")
    run = actions.add_parser(
        "run", help="Windows: what the service manager starts (not for a terminal)", description=SERVICE_RUN
    )
    _add_serve_flags(run)


def _service(args: argparse.Namespace) -> int:
    from . import system_service

    os.environ[paths.SYSTEM_ENV] = "1"  # these act on the system service: its folders, not this user's
    if args.action == "run":
        if sys.platform != "win32":
            print(f"appliance: error: {SERVICE_RUN}", file=sys.stderr)
            return 2
        from .windows_service import run_windows_service

        return run_windows_service(lambda: settings_from_args(args))
    if args.action == "status":
        status, line = system_service.status(args.url, args.wait)
        print(line, file=sys.stdout if status == 0 else sys.stderr)
        return status
    if args.action == "install":
        flags = list(args.serve_flags)
        _parser().parse_args(["serve", *flags])  # a wrong flag is said now (exit 2), not at every start
        said = system_service.install(flags)
    else:
        said = system_service.uninstall(args.purge)
    print(said)
    return 0


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings from the parsed flags, the environment and the settings file (``--settings_file``)."""
    given = vars(args)
    settings_file: Path = given.get("settings_file") or paths.settings_file()
    return settings_from_sources(given, read_settings_file(settings_file), str(settings_file))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["desktop", *argv]
    args = parser.parse_args(argv)
    try:
        if args.command in ("serve", "desktop"):
            settings = settings_from_args(args)
            configure_logging(settings.log_level)
            for name in inert_flags_given(args):
                log.warning("%s", INERT_TFSERVING_FLAGS[name].warning(name))
            if args.command == "serve":
                return launcher.serve(settings, lambda: settings_from_args(args))
            if paths.system_mode():
                print(f"appliance: error: {SYSTEM_ONLY_SERVE}", file=sys.stderr)
                return 2
            return launcher.desktop(settings, args.headless)
        configure_logging("WARNING")
        if args.command == "service":
            return _service(args)
        if args.command == "models":
            return client.list_models(args.url)
        if args.command == "compare":
            return client.compare(
                args.url, args.model, args.model_version, args.against, args.log, args.limit, args.json
            )
        return client.predict(
            args.url, args.model, args.input, args.model_version, args.label, args.signature_name, args.pretty
        )
    except ServingError as e:
        print(f"appliance: error: {e.message}", file=sys.stderr)
        return 2
    except ServiceError as e:
        print(f"appliance: error: {e}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        print(
            f"appliance: error: no appliance answers at {args.url} ({reason}); start one with `appliance serve`",
            file=sys.stderr,
        )
        return 1
