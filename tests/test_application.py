"""The Application in process: what it tells the tray, and the named commands the tray sends it.

Real models, a real manager and server; per-user folders under tmp_path.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import grpc
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from appliance.application import Application
from appliance.config import Settings
from appliance.errors import InvalidArgument
from appliance.server import PortInUse
from appliance.tray.state import ComparisonItem

from .conftest import MODELS, user_dirs_env


@pytest.fixture
def app(tmp_path, monkeypatch):
    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    application = Application(Settings(port=0, rest_api_port=0, file_system_poll_wait_seconds=0))
    yield application
    application.stop()
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


def test_metrics_report_what_the_manager_loaded(app):
    app.server.start()
    app.start()
    assert app.manager.wait_until_ready(60)
    response = requests.get(app.url + "/monitoring/prometheus/metrics", timeout=30)
    loads = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "appliance_model_load_seconds"
    }
    assert all(loads.get((("model", "digits"), ("version", v)), 0) > 0 for v in ("1", "2")), loads


def test_require_token_for_control_makes_a_token_the_tray_offers_to_copy(tmp_path, monkeypatch):
    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    copied = []
    monkeypatch.setattr("appliance.application.copy_text", copied.append)
    plain = Application(Settings(port=0, rest_api_port=0, file_system_poll_wait_seconds=0))
    try:
        assert plain.token is None and not plain.tray_state().token_in_use
        plain.copy_token()
        assert copied == []
    finally:
        plain.server.stop()
        plain.close()
    guarded = Application(
        Settings(port=0, rest_api_port=0, file_system_poll_wait_seconds=0, require_token_for_control=True)
    )
    try:
        assert guarded.token == (tmp_path / "config" / "appliance" / "token").read_text().strip()
        assert guarded.tray_state().token_in_use
        guarded.copy_token()
        assert copied == [guarded.token]
    finally:
        guarded.server.stop()
        guarded.close()


def test_connection_settings_reach_the_http_server(tmp_path, monkeypatch):
    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    application = Application(
        Settings(port=0, rest_api_port=0, file_system_poll_wait_seconds=0, connection_limit=7, channel_timeout=9)
    )
    try:
        limits = application.server._waitress.adj
        assert (limits.connection_limit, limits.channel_timeout) == (7, 9)
        assert limits.max_request_header_size == 64 * 1024
    finally:
        application.server.stop()
        application.close()


def test_apply_config_takes_base_paths_from_the_working_directory_and_labels_as_the_flag_says(tmp_path, monkeypatch):
    from tensorflow_serving.config import model_server_config_pb2

    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(MODELS / "iris", tmp_path / "flowers")
    (tmp_path / "empty").mkdir()
    settings = Settings(
        port=0,
        rest_api_port=0,
        file_system_poll_wait_seconds=0,
        model_roots=(tmp_path / "empty",),
        allow_version_labels_for_unavailable_models=True,
        require_token_for_control=True,  # a config naming folders is applied only where a token is in use
    )
    application = Application(settings)
    try:
        application.start()
        assert application.manager.wait_until_ready(60)
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.config.add(name="flowers", base_path="flowers", version_labels={"stable": 2})
        application.apply_config(config)  # a label on a model still to load: allowed by the flag only
        with application.manager.acquire("flowers", label="stable") as handle:
            assert handle.version == 2
        assert application.manager.summary("flowers").base_path == tmp_path / "flowers"
    finally:
        application.server.stop()
        application.close()


def test_grpc_is_served_beside_rest_and_healthy_once_the_models_are_loaded(app):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    assert app.grpc_port and app.grpc_address == f"127.0.0.1:{app.grpc_port}"
    assert app.tray_state().grpc_address == app.grpc_address
    app.start()
    with grpc.insecure_channel(app.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert app.manager.wait_until_ready(60)
        assert wait_for(
            lambda: (
                health.Check(health_pb2.HealthCheckRequest(), timeout=30).status
                == health_pb2.HealthCheckResponse.SERVING
            )
        )
    app.stop()
    assert app.wait_stopped(0)


def test_either_api_can_be_turned_off_but_not_both(tmp_path, monkeypatch):
    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    rest_only = Application(Settings(port=0, rest_api_port=0, file_system_poll_wait_seconds=0, enable_grpc_api=False))
    try:
        assert (rest_only.grpc, rest_only.grpc_port, rest_only.grpc_address) == (None, None, None)
        assert rest_only.tray_state().grpc_address is None and rest_only.url
    finally:
        rest_only.stop()
        rest_only.close()
    grpc_only = Application(Settings(port=0, rest_api_port=0, file_system_poll_wait_seconds=0, enable_rest_api=False))
    try:
        assert grpc_only.server is None and grpc_only.url is None and grpc_only.tray_state().url is None
        serving = threading.Thread(target=grpc_only.serve_forever)
        serving.start()
        grpc_only.quit()  # what the tray's Quit does
        serving.join(60)
        assert not serving.is_alive()
    finally:
        grpc_only.close()
    with pytest.raises(InvalidArgument, match="leave nothing to serve"):
        Application(Settings(port=0, rest_api_port=0, enable_rest_api=False, enable_grpc_api=False))


def test_a_busy_grpc_port_raises_port_in_use(tmp_path, monkeypatch):
    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(PortInUse):
            Application(Settings(port=holder.getsockname()[1], rest_api_port=0))


def _application(tmp_path, monkeypatch, **settings) -> Application:
    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    (tmp_path / "models").mkdir(exist_ok=True)
    return Application(
        Settings(
            rest_api_port=0, port=0, model_roots=(tmp_path / "models",), file_system_poll_wait_seconds=0, **settings
        )
    )


def test_monitoring_config_serves_the_metrics_at_its_path_or_not_at_all(tmp_path, monkeypatch):
    config = tmp_path / "monitoring.config"
    config.write_text('prometheus_config { enable: true path: "/metrics" }')
    moved = _application(tmp_path, monkeypatch, monitoring_config_file=config)
    try:
        moved.server.start()
        scrape = requests.get(moved.url + "/metrics", timeout=30)
        assert scrape.status_code == 200 and "process_cpu_seconds_total" in scrape.text
        assert requests.get(moved.url + "/monitoring/prometheus/metrics", timeout=30).status_code == 404
        documented = requests.get(moved.url + "/openapi.json", timeout=30).json()["paths"]
        assert "/metrics" in documented and "/monitoring/prometheus/metrics" not in documented
    finally:
        moved.server.stop()
        moved.close()
    config.write_text('prometheus_config { enable: false path: "/metrics" }')
    hidden = _application(tmp_path, monkeypatch, monitoring_config_file=config)
    try:
        hidden.server.start()
        for path in ("/metrics", "/monitoring/prometheus/metrics"):
            assert requests.get(hidden.url + path, timeout=30).status_code == 404, path
    finally:
        hidden.server.stop()
        hidden.close()


def test_rest_api_enable_cors_support_answers_every_origin(tmp_path, monkeypatch):
    app = _application(tmp_path, monkeypatch, rest_api_enable_cors_support=True)
    try:
        app.server.start()
        origin = {"Origin": "http://localhost:3000"}
        preflight = requests.options(
            app.url + "/v1/models/any:predict", headers={**origin, "Access-Control-Request-Method": "POST"}, timeout=30
        )
        assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == "*"
        health = requests.get(app.url + "/health", headers=origin, timeout=30)
        assert health.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        app.server.stop()
        app.close()
    plain = _application(tmp_path, monkeypatch)
    try:
        plain.server.start()
        health = requests.get(plain.url + "/health", headers={"Origin": "http://localhost:3000"}, timeout=30)
        assert "Access-Control-Allow-Origin" not in health.headers
    finally:
        plain.server.stop()
        plain.close()


def test_tf_serving_runtime_flags_reach_the_runtime(tmp_path, monkeypatch, tfs_testdata):
    from appliance.application import batching_policy
    from appliance.errors import NotFound

    app = _application(
        tmp_path,
        monkeypatch,
        tensorflow_session_parallelism=2,
        saved_model_tags="serve,gpu",
        mixed_precision="bfloat16",
        enable_per_model_batching_parameters=False,
    )
    try:
        runtime = app._local_runtime()
        config = runtime.session_config
        assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (2, 2)
        assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16
        with pytest.raises(NotFound, match=r"matching supplied tags: \{ serve gpu \}"):
            runtime.load(tfs_testdata / "saved_model_half_plus_two_cpu" / "00000123")
        assert batching_policy(app.settings).per_model is False
    finally:
        app.server.stop()
        app.close()


def test_record_requests_command_records_remembers_and_delete_removes(app, tmp_path):
    from appliance.preferences import PreferenceStore
    from appliance.serving.request_log import read_records

    app.server.start()
    app.start()
    assert app.manager.wait_until_ready(60)
    changes = []
    app.subscribe(lambda: changes.append(app.tray_state()))
    body = {"model": "digits", "input": [[3.0] * 64]}
    requests.post(app.url + "/predict", json=body, timeout=30).raise_for_status()  # not recorded yet
    app.set_recording("digits", True)
    assert {m.name: m.recording for m in changes[-1].models} == {"digits": True, "iris": False}
    for _ in range(3):
        requests.post(app.url + "/predict", json=body, timeout=30).raise_for_status()
    assert app.request_log.flush()
    files = app.request_log.files("digits")
    assert files[0].is_relative_to(tmp_path / "data" / "appliance" / "request-log")
    assert len(list(read_records(files))) == 3
    assert PreferenceStore(app.preferences.path).request_log_sampling() == {"digits": 1.0}

    app.delete_recorded_requests("digits")
    assert app.request_log.files("digits") == []
    app.set_recording("digits", False)
    requests.post(app.url + "/predict", json=body, timeout=30).raise_for_status()
    assert app.request_log.flush() and app.request_log.files("digits") == []
    assert not {m.name: m.recording for m in app.tray_state().models}["digits"]


def _digits(state):
    return {m.name: m for m in state.models}["digits"]


def test_compare_command_shows_progress_in_the_tray_then_notifies_its_summary(app):
    import numpy as np

    app.server.start()
    app.start()
    assert app.manager.wait_until_ready(60)
    app.set_recording("digits", True)
    rng = np.random.default_rng(20)
    for _ in range(20):
        body = {"model": "digits", "input": rng.uniform(0, 16, (1, 64)).tolist()}
        requests.post(app.url + "/predict", json=body, timeout=30).raise_for_status()
    assert app.request_log.flush()
    files = app.request_log.files("digits")
    assert files and _digits(app.tray_state()).recorded_files == len(files)
    assert _digits(app.tray_state()).recorded_bytes == sum(f.stat().st_size for f in files)

    states, notes = [], []
    app.subscribe(lambda: states.append(app.tray_state()))
    app.on_notification(notes.append)
    app.compare_versions("digits", 1)  # against the chosen version, 2
    assert wait_for(lambda: notes)
    comparison = app.comparisons.latest("digits")
    assert (comparison.version, comparison.against, comparison.state) == (1, 2, "done")
    assert comparison.progress == (20, 20)
    assert notes == [comparison.result.summary()]

    running = [s for s in states if (c := _digits(s).comparison) is not None and c.state == "running"]
    assert running, "the tray heard the comparison start"
    assert running[0].detail.startswith("comparing digits v1 with v2: ") and running[0].detail.endswith("%")
    done = app.tray_state()
    assert done.detail == "ready: 2 models"
    assert _digits(done).comparison == ComparisonItem(1, 2, "done", 20, 20, summary=notes[0])


def test_a_refused_comparison_is_shown_until_another_starts(app):
    app.start()
    assert app.manager.wait_until_ready(60)
    changes = []
    app.subscribe(lambda: changes.append(True))
    app.compare_versions("digits", 7)  # no such version
    assert wait_for(lambda: _digits(app.tray_state()).comparison is not None)
    refused = _digits(app.tray_state()).comparison
    assert (refused.state, refused.version, refused.against) == ("refused", 7, 2)
    assert "7" in refused.error and changes

    app.compare_versions("digits", 1)  # nothing recorded: the versions' warm-up requests
    assert wait_for(lambda: _digits(app.tray_state()).comparison.state == "done")
    assert _digits(app.tray_state()).comparison.summary.startswith("v1 ")


def test_cancel_comparison_command_stops_the_running_comparison(app):
    import numpy as np

    app.server.start()
    app.start()
    assert app.manager.wait_until_ready(60)
    app.set_recording("digits", True)
    rng = np.random.default_rng(21)
    with requests.Session() as session:
        for _ in range(300):
            body = {"model": "digits", "input": rng.uniform(0, 16, (1, 64)).tolist()}
            session.post(app.url + "/predict", json=body, timeout=30).raise_for_status()
    assert app.request_log.flush()
    notes = []
    app.on_notification(notes.append)
    app.cancel_comparison("digits")  # none running: nothing happens
    app.compare_versions("digits", 1)
    assert wait_for(lambda: app.comparisons.latest("digits") is not None)
    app.cancel_comparison("digits")
    comparison = app.comparisons.latest("digits")
    comparison.wait(60)
    assert comparison.state == "cancelled" and comparison.progress[0] < 300
    item = _digits(app.tray_state()).comparison
    assert (item.state, item.done, item.total) == ("cancelled", comparison.progress[0], 300)
    assert notes == []  # the user cancelled it: no notification


def test_warmup_from_recent_requests_command_writes_remembers_and_delete_removes_the_snapshot(app, tmp_path):
    from appliance.preferences import PreferenceStore

    app.server.start()
    app.start()
    assert app.manager.wait_until_ready(60)
    changes = []
    app.subscribe(lambda: changes.append(app.tray_state()))
    digits = {m.name: m for m in app.tray_state().models}["digits"]
    assert not digits.has_recorded_requests and not digits.warmup_from_recent_requests

    app.set_recording("digits", True)
    body = {"model": "digits", "input": [[3.0] * 64]}
    for _ in range(3):
        requests.post(app.url + "/predict", json=body, timeout=30).raise_for_status()
    app.set_warmup_from_recent_requests("digits", True)  # in the background, then the tray is told
    assert wait_for(lambda: changes and {m.name: m for m in changes[-1].models}["digits"].warmup_from_recent_requests)
    snapshot = app.recent_warmup.snapshot_path("digits")
    assert snapshot.is_relative_to(tmp_path / "data" / "appliance" / "warmup")
    assert app.recent_warmup.records("digits") == 3
    assert PreferenceStore(app.preferences.path).warmup_from_recent_requests() == {"digits": 100}

    app.delete_recorded_requests("digits")  # the snapshot holds recorded requests too
    assert not snapshot.exists() and app.request_log.files("digits") == []
    digits = {m.name: m for m in changes[-1].models}["digits"]
    assert digits.warmup_from_recent_requests and not digits.has_recorded_requests  # on, so it can be turned off
    count = len(changes)
    app.set_warmup_from_recent_requests("digits", False)
    assert wait_for(lambda: len(changes) > count)
    assert not {m.name: m for m in changes[-1].models}["digits"].warmup_from_recent_requests


def test_shadow_traffic_from_the_settings_file_then_the_tray_which_is_remembered(tmp_path, monkeypatch):
    from appliance.preferences import PreferenceStore

    for variable, value in user_dirs_env(tmp_path).items():
        monkeypatch.setenv(variable, value)
    settings = Settings(
        port=0, rest_api_port=0, file_system_poll_wait_seconds=0, shadow={"digits": {"version": 1, "share": 1.0}}
    )
    app = Application(settings)
    try:
        app.server.start()
        app.start()
        assert app.manager.wait_until_ready(60)
        assert app.manager.shadow.figures("digits").version == 1
        requests.post(app.url + "/predict", json={"model": "digits", "input": [[3.0] * 64]}, timeout=30)
        assert wait_for(lambda: app.manager.shadow.figures("digits").compared == 1)  # v2 answered, v1 shadowed
        (digits,) = [m for m in app.tray_state().models if m.name == "digits"]
        assert digits.shadow_version == 1 and digits.shadow_summary.startswith("v1 agrees on")
        changes = []
        app.subscribe(lambda: changes.append(app.tray_state()))

        app.set_shadow("digits", None)
        assert app.manager.shadow.figures("digits") is None and changes[-1].models[0].shadow_version is None
        app.set_shadow("digits", 2)
        assert app.manager.shadow.figures("digits").config.share == 1.0  # settings.toml's share
        assert PreferenceStore(app.preferences.path).shadow() == {"digits": {"version": 2, "share": 1.0}}
    finally:
        app.stop()
        app.close()
    again = Application(settings)  # the tray's choice wins over the settings file's
    try:
        assert again.manager.shadow.figures("digits").version == 2
    finally:
        again.stop()
        again.close()
