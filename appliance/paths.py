"""Where the appliance keeps its files, and how it writes them without ever leaving half a file behind.

    bundled_models_dir()     # -> .../models, the SavedModels shipped with the appliance
    preferences_file()       # -> ~/.config/appliance/preferences.json on Linux
    discovery_file()         # -> $XDG_RUNTIME_DIR/appliance/appliance.json on Linux
    write_file_atomically(ensure_dir(user_config_dir()) / "x.json", b"{}")

Per-user locations come from platformdirs (app name "appliance", no author folder) and are computed on every
call, so a change to ``XDG_*`` or ``HOME`` takes effect at once. Only :func:`ensure_dir` and
:func:`write_file_atomically` touch the disk.

With ``APPLIANCE_SYSTEM=1`` (the system service, ``installer/linux/appliance.service``) the same functions give
system-wide folders instead: settings in ``/etc/appliance``, models and state in ``/var/lib/appliance``, the
discovery file in ``/run/appliance``, each overridden by the variable systemd sets for it
(``$CONFIGURATION_DIRECTORY``, ``$STATE_DIRECTORY``, ``$CACHE_DIRECTORY``, ``$LOGS_DIRECTORY``,
``$RUNTIME_DIRECTORY``), as tests do. On macOS (the LaunchDaemon) and Windows (the service) the defaults are
that OS's own: settings, models and state in ``/Library/Application Support/appliance`` or
``%ProgramData%\\appliance``, logs and caches beside (see :func:`system_dir_defaults`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent
APP_NAME = "appliance"
SYSTEM_ENV = "APPLIANCE_SYSTEM"
# Where the desktop app looks for the system service's discovery file and token (tests: under tmp_path)
SYSTEM_RUNTIME_ENV = "APPLIANCE_SYSTEM_RUNTIME_DIRECTORY"
SYSTEM_CONFIG_ENV = "APPLIANCE_SYSTEM_CONFIGURATION_DIRECTORY"
# systemd's variable for each system-wide folder (systemd.exec(5), "RuntimeDirectory="), which overrides its default
_SYSTEM_DIR_VARIABLES = {
    "config": "CONFIGURATION_DIRECTORY",
    "state": "STATE_DIRECTORY",
    "cache": "CACHE_DIRECTORY",
    "logs": "LOGS_DIRECTORY",
    "runtime": "RUNTIME_DIRECTORY",
}


def system_mode() -> bool:
    """Whether this process is the system service (``APPLIANCE_SYSTEM=1``): system-wide folders, not the user's."""
    return os.environ.get(SYSTEM_ENV, "").strip().lower() in ("1", "true", "yes")


def system_dir_defaults() -> dict[str, Path]:
    """The system-wide folders of this OS, by kind (config, state, cache, logs, runtime).

    Linux keeps the FHS's split (``/etc``, ``/var/lib``, ...). macOS and Windows have no such split for a
    program's settings and data: settings and state share one folder, which the service's user owns, and the
    runtime folder (the discovery file, readable by every user) is a subfolder of it.
    """
    if sys.platform == "win32":
        base = Path(os.environ.get("PROGRAMDATA") or "C:\\ProgramData") / APP_NAME
        return {"config": base, "state": base, "cache": base / "cache", "logs": base / "logs", "runtime": base / "run"}
    if sys.platform == "darwin":
        base = Path("/Library/Application Support") / APP_NAME
        return {
            "config": base,
            "state": base,
            "cache": Path("/Library/Caches") / APP_NAME,
            "logs": Path("/Library/Logs") / APP_NAME,
            "runtime": base / "run",
        }
    return {
        "config": Path("/etc/appliance"),
        "state": Path("/var/lib/appliance"),
        "cache": Path("/var/cache/appliance"),
        "logs": Path("/var/log/appliance"),
        "runtime": Path("/run/appliance"),
    }


def _system_dir(kind: str) -> Path:
    """A system-wide folder: the first path of systemd's variable for it (a list with ':'), else the default."""
    given = os.environ.get(_SYSTEM_DIR_VARIABLES[kind], "").split(";" if sys.platform == "win32" else ":")[0]
    return Path(given) if given else system_dir_defaults()[kind]


def bundled_models_dir() -> Path:
    """The folder of bundled SavedModels (``models/``)."""
    candidates = []
    if getattr(sys, "frozen", False):
        candidates.append(Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "models")
    candidates += [PACKAGE_DIR.parent / "models", PACKAGE_DIR / "models"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def user_models_dir() -> Path:
    """Models the user added (``~/.local/share/appliance/models`` on Linux, ``/var/lib/appliance/models`` for the
    system service)."""
    if system_mode():
        return _system_dir("state") / "models"
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "models"


def request_log_dir() -> Path:
    """Recorded requests, a folder per model (``~/.local/share/appliance/request-log`` on Linux)."""
    if system_mode():
        return _system_dir("state") / "request-log"
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "request-log"


def recent_warmup_dir() -> Path:
    """Warm-up files made from recent requests, a folder per model (``~/.local/share/appliance/warmup``; the
    service's: in its state folder)."""
    if system_mode():
        return _system_dir("state") / "warmup"
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "warmup"


def user_config_dir() -> Path:
    """The user's settings (``~/.config/appliance`` on Linux; the service: ``/etc/appliance``)."""
    if system_mode():
        return _system_dir("config")
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def user_log_dir() -> Path:
    """The appliance's logs (``~/.local/state/appliance/log`` on Linux)."""
    if system_mode():
        return _system_dir("logs")
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def user_state_dir() -> Path:
    """State that outlives a run but is not a setting (``~/.local/state/appliance`` on Linux)."""
    if system_mode():
        return _system_dir("state")
    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def user_cache_dir() -> Path:
    """What the appliance can make again, e.g. Keras files converted to SavedModels (``~/.cache/appliance``)."""
    if system_mode():
        return _system_dir("cache")
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def user_runtime_dir() -> Path:
    """Files that only mean something while the appliance runs: the runtime dir, else the state dir.

    The runtime dir is missing or unusable in some sessions (no ``/run/user/<uid>`` under ssh or in a
    container, an unsafe fallback that platformdirs refuses); the state dir then takes its place.
    """
    if system_mode():
        return _system_dir("runtime")
    # platformdirs warns on stderr when it falls back from $XDG_RUNTIME_DIR: a fallback expected here.
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR", UserWarning)
    try:
        runtime = Path(platformdirs.user_runtime_dir(APP_NAME, appauthor=False))
    except (OSError, RuntimeError):
        return user_state_dir()
    return runtime if _could_create_dir(runtime) else user_state_dir()


def preferences_file() -> Path:
    """The user's choices made in the app (JSON, see ``appliance.preferences``); the service's are state."""
    return (user_state_dir() if system_mode() else user_config_dir()) / "preferences.json"


def token_file() -> Path:
    """The access token clients must send when the appliance listens beyond loopback."""
    return user_config_dir() / "token"


def settings_file() -> Path:
    """The appliance's own settings (TOML), e.g. a remote TF Serving."""
    return user_config_dir() / "settings.toml"


def user_model_config_file() -> Path:
    """The user's TF Serving ``models.config``."""
    return user_config_dir() / "models.config"


def log_file() -> Path:
    """The appliance's rotating log file."""
    return user_log_dir() / "appliance.log"


def discovery_file() -> Path:
    """Where a running appliance says which URL it serves on (see ``appliance.instance``)."""
    return user_runtime_dir() / "appliance.json"


def system_discovery_file() -> Path:
    """Where the system service says which URL it serves on, as the desktop app looks for it: whatever this
    process's own mode, ``/run/appliance/appliance.json`` on Linux (macOS, Windows: :func:`system_dir_defaults`)
    unless ``$APPLIANCE_SYSTEM_RUNTIME_DIRECTORY`` names another folder (tests point it at the service's)."""
    return Path(os.environ.get(SYSTEM_RUNTIME_ENV) or system_dir_defaults()["runtime"]) / "appliance.json"


def system_token_file() -> Path:
    """The system service's token, as the desktop app looks for it: ``/etc/appliance/token`` on Linux (macOS,
    Windows: :func:`system_dir_defaults`) unless ``$APPLIANCE_SYSTEM_CONFIGURATION_DIRECTORY`` names another
    folder."""
    return Path(os.environ.get(SYSTEM_CONFIG_ENV) or system_dir_defaults()["config"]) / "token"


def instance_lock_file() -> Path:
    """The file whose OS lock marks the one running desktop appliance."""
    return user_runtime_dir() / "appliance.lock"


def ensure_dir(path: Path) -> Path:
    """Create the folder ``path`` (owner-only, 0o700) and its parents when missing; return ``path``."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_file_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that readers, and a crash at any moment, see the old file or the new one
    (see :func:`replace_atomically`)."""
    replace_atomically(path, lambda temp: temp.write_bytes(data), mode)


def replace_atomically(path: Path, write: Callable[[Path], object], mode: int = 0o600) -> None:
    """Replace ``path`` with what ``write(temp)`` writes to a temp file, so that readers, and a crash at any moment,
    see the old file or the new one.

    The temp file is hidden in the same folder (``.<name>.<random>.tmp``, which a kill mid-write can leave behind)
    and made with ``mode`` before ``write`` runs; it is flushed to disk, then renamed over ``path``; the folder is
    created when missing.
    """
    folder = ensure_dir(path.parent)
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    temp = Path(temp_name)
    try:
        temp.chmod(mode)  # mkstemp makes 0o600; the caller may want the file readable by others
        write(temp)
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    # The rename itself is only durable once the folder's entry is on disk; Windows cannot open a folder for this.
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _could_create_dir(path: Path) -> bool:
    """Whether ``path`` is a usable folder, or could be made one: its nearest existing ancestor is a writable folder."""
    existing = path
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError:  # a parent this user may not search
        return False
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
