"""Per-user locations under the XDG variables, and the two helpers that write to disk."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from appliance import paths


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """Every XDG base folder in a fresh temporary folder; the runtime one private, as the spec requires."""
    homes = {
        name: tmp_path / name.lower()
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME")
    }
    homes["XDG_RUNTIME_DIR"].mkdir(mode=0o700)
    for name, folder in homes.items():
        monkeypatch.setenv(name, str(folder))
    return homes


def test_every_location_follows_the_xdg_variables(xdg):
    config = xdg["XDG_CONFIG_HOME"] / "appliance"
    runtime = xdg["XDG_RUNTIME_DIR"] / "appliance"
    assert paths.user_models_dir() == xdg["XDG_DATA_HOME"] / "appliance" / "models"
    assert paths.user_config_dir() == config
    assert paths.user_state_dir() == xdg["XDG_STATE_HOME"] / "appliance"
    assert paths.user_log_dir() == xdg["XDG_STATE_HOME"] / "appliance" / "log"
    assert paths.user_runtime_dir() == runtime
    assert paths.preferences_file() == config / "preferences.json"
    assert paths.user_model_config_file() == config / "models.config"
    assert paths.log_file() == xdg["XDG_STATE_HOME"] / "appliance" / "log" / "appliance.log"
    assert paths.discovery_file() == runtime / "appliance.json"
    assert paths.instance_lock_file() == runtime / "appliance.lock"


def test_a_change_of_environment_takes_effect_at_once(xdg, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere"))
    assert paths.preferences_file() == tmp_path / "elsewhere" / "appliance" / "preferences.json"


def test_computing_a_location_creates_nothing(xdg):
    for location in (paths.preferences_file, paths.log_file, paths.user_models_dir, paths.instance_lock_file):
        location()
    assert not any(folder.exists() for name, folder in xdg.items() if name != "XDG_RUNTIME_DIR")
    assert not any(xdg["XDG_RUNTIME_DIR"].iterdir())


def test_an_unusable_runtime_dir_falls_back_to_the_state_dir(xdg):
    (xdg["XDG_RUNTIME_DIR"] / "appliance").write_text("a file where the folder should be")
    assert paths.user_runtime_dir() == paths.user_state_dir()
    assert paths.discovery_file() == xdg["XDG_STATE_HOME"] / "appliance" / "appliance.json"


@pytest.mark.parametrize("runtime", ["unset", "group-writable"])
def test_a_runtime_dir_fallback_prints_no_warning(tmp_path, runtime):
    """platformdirs warns on stderr when it falls back from $XDG_RUNTIME_DIR; the appliance expects fallbacks."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("XDG_RUNTIME_DIR", None)
    if runtime == "group-writable":
        (tmp_path / "runtime").mkdir(mode=0o770)
        env["XDG_RUNTIME_DIR"] = str(tmp_path / "runtime")
    result = subprocess.run(
        [sys.executable, "-c", "from appliance import paths; print(paths.user_runtime_dir())"],
        cwd=paths.PACKAGE_DIR.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.strip()
    assert result.stderr == ""


def test_ensure_dir_makes_an_owner_only_folder_with_its_parents(tmp_path):
    folder = tmp_path / "a" / "b"
    assert paths.ensure_dir(folder) == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert paths.ensure_dir(folder) == folder


def test_write_file_atomically_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "new" / "file.json"
    paths.write_file_atomically(target, b"one")
    paths.write_file_atomically(target, b"two", mode=0o644)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "file.json"
    paths.write_file_atomically(target, b"old")
    with pytest.raises(TypeError):
        paths.write_file_atomically(target, "not bytes")  # fails after the temp file exists
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]


def test_the_system_service_uses_system_folders_and_none_of_the_users(xdg, monkeypatch):
    monkeypatch.setenv(paths.SYSTEM_ENV, "1")
    for variable in ("CONFIGURATION_DIRECTORY", "STATE_DIRECTORY", "CACHE_DIRECTORY", "LOGS_DIRECTORY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert paths.system_mode()
    assert paths.settings_file() == paths.Path("/etc/appliance/settings.toml")
    assert paths.user_model_config_file() == paths.Path("/etc/appliance/models.config")
    assert paths.token_file() == paths.Path("/etc/appliance/token")
    assert paths.user_models_dir() == paths.Path("/var/lib/appliance/models")
    assert paths.request_log_dir() == paths.Path("/var/lib/appliance/request-log")
    assert paths.preferences_file() == paths.Path("/var/lib/appliance/preferences.json")  # state, not settings
    assert paths.user_cache_dir() == paths.Path("/var/cache/appliance")
    assert paths.discovery_file() == paths.Path("/run/appliance/appliance.json")
    assert paths.user_log_dir() == paths.Path("/var/log/appliance")


def test_the_system_folders_follow_the_variables_systemd_sets(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.SYSTEM_ENV, "true")
    monkeypatch.setenv("CONFIGURATION_DIRECTORY", str(tmp_path / "etc"))
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'state'}:{tmp_path / 'second'}")  # several: the first
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "cache"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    assert paths.settings_file() == tmp_path / "etc" / "settings.toml"
    assert paths.user_models_dir() == tmp_path / "state" / "models"
    assert paths.preferences_file() == tmp_path / "state" / "preferences.json"
    assert paths.user_cache_dir() == tmp_path / "cache"
    assert paths.discovery_file() == tmp_path / "run" / "appliance.json"
    assert not any(tmp_path.iterdir())  # computing them created nothing

    monkeypatch.setenv(paths.SYSTEM_ENV, "0")
    assert not paths.system_mode()
    assert paths.settings_file() != tmp_path / "etc" / "settings.toml"


@pytest.fixture
def system_env(monkeypatch):
    """The service's environment without systemd's folder variables, as launchd and the Windows SCM start it."""
    monkeypatch.setenv(paths.SYSTEM_ENV, "1")
    for variable in ("CONFIGURATION_DIRECTORY", "STATE_DIRECTORY", "CACHE_DIRECTORY", "LOGS_DIRECTORY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)


# macOS and Windows cannot run here: sys.platform is faked, which is all paths.py looks at to pick the defaults.
def test_the_macos_service_uses_library_folders(system_env, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    support = paths.Path("/Library/Application Support/appliance")
    assert paths.settings_file() == support / "settings.toml"
    assert paths.token_file() == support / "token"
    assert paths.user_models_dir() == support / "models"
    assert paths.preferences_file() == support / "preferences.json"
    assert paths.recent_warmup_dir() == support / "warmup"  # not the daemon user's home (/var/empty)
    assert paths.log_file() == paths.Path("/Library/Logs/appliance/appliance.log")
    assert paths.user_cache_dir() == paths.Path("/Library/Caches/appliance")
    assert paths.discovery_file() == support / "run" / "appliance.json"


def test_the_windows_service_uses_programdata(system_env, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path / "ProgramData"))
    base = tmp_path / "ProgramData" / "appliance"
    assert paths.settings_file() == base / "settings.toml"
    assert paths.user_model_config_file() == base / "models.config"
    assert paths.token_file() == base / "token"
    assert paths.user_models_dir() == base / "models"
    assert paths.request_log_dir() == base / "request-log"
    assert paths.log_file() == base / "logs" / "appliance.log"
    assert paths.user_cache_dir() == base / "cache"
    assert paths.discovery_file() == base / "run" / "appliance.json"
    # A folder variable still wins (tests set them); Windows lists are split on ';', a path keeps its drive colon.
    monkeypatch.setenv("STATE_DIRECTORY", "D:\\state;E:\\other")
    assert str(paths.user_models_dir()).startswith("D:\\state")
    assert not (tmp_path / "ProgramData").exists()  # computing them created nothing


def test_the_desktop_app_looks_for_the_service_in_this_oss_system_folders(monkeypatch, tmp_path):
    """Whatever this process's own mode: the desktop app (not the service) finds the macOS or Windows service."""
    monkeypatch.delenv(paths.SYSTEM_ENV, raising=False)
    monkeypatch.delenv(paths.SYSTEM_RUNTIME_ENV, raising=False)
    monkeypatch.delenv(paths.SYSTEM_CONFIG_ENV, raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    support = paths.Path("/Library/Application Support/appliance")
    assert paths.system_discovery_file() == support / "run" / "appliance.json"
    assert paths.system_token_file() == support / "token"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path))
    assert paths.system_discovery_file() == tmp_path / "appliance" / "run" / "appliance.json"
    assert paths.system_token_file() == tmp_path / "appliance" / "token"
