"""The Application in process: what it tells the tray, and the named commands the tray sends it.

Real models, a real manager and server; per-user folders under tmp_path.
"""

from __future__ import annotations

import shutil
import time

import pytest

from appliance.application import Application
from appliance.config import Settings

from .conftest import MODELS, user_dirs_env


@pytest.fixture
def app(tmp_path, monkeypatch):
    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    application = Application(Settings(port=0, file_system_poll_wait_seconds=0))
    yield application
    application.server.stop()
    application.close()


def wait_for(condition, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_tray_state_follows_loading_and_lists_user_models(app, tmp_path):
    assert app.tray_state().status == "loading"
    user_models = tmp_path / "data" / "appliance" / "models"
    shutil.copytree(MODELS / "iris" / "1", user_models / "flowers" / "3")
    app.start()
    assert app.manager.wait_until_ready(60)
    state = app.tray_state()
    assert state.status == "ready" and state.detail == "ready: 3 models"
    assert state.url == app.url and state.backend == "local" and state.device.startswith("CPU")
    models = {m.name: m for m in state.models}
    assert list(models) == ["digits", "iris", "flowers"]
    assert models["digits"].chosen_version == 2
    assert [(v.version, v.state) for v in models["flowers"].versions] == [(3, "AVAILABLE")]


def test_switch_version_command_changes_the_chosen_version_and_notifies(app):
    app.start()
    assert app.manager.wait_until_ready(60)
    changes = []
    app.subscribe(lambda: changes.append(app.tray_state()))
    app.switch_version("digits", 1)
    assert wait_for(lambda: app.manager.chosen_version("digits") == 1)
    assert wait_for(lambda: changes and {m.name: m for m in changes[-1].models}["digits"].chosen_version == 1)
    app.switch_version("digits", 9)  # not on disk: logged, the choice stays
    time.sleep(0.5)
    assert app.manager.chosen_version("digits") == 1


def test_start_at_login_command_writes_the_autostart_entry(app, tmp_path):
    entry = tmp_path / "config" / "autostart" / "appliance.desktop"
    notified = []
    app.subscribe(lambda: notified.append(True))
    app.set_start_at_login(True)
    assert entry.is_file() and app.tray_state().start_at_login
    app.set_start_at_login(False)
    assert not entry.exists() and not app.tray_state().start_at_login
    assert len(notified) == 2


def test_degraded_when_a_user_model_is_broken(app, tmp_path):
    broken = tmp_path / "data" / "appliance" / "models" / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a model")
    app.start()
    assert app.manager.wait_until_ready(60)
    state = app.tray_state()
    assert state.status == "degraded" and "broken" in state.detail
    (version,) = {m.name: m for m in state.models}["broken"].versions
    assert version.state == "END" and version.error


def test_quit_stops_the_server_and_runs_quit_callbacks(app):
    stopped = []
    app.on_quit(lambda: stopped.append(True))
    thread = app.server.start()
    app.quit()
    thread.join(timeout=60)
    assert not thread.is_alive() and stopped == [True]
