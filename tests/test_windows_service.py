"""The Windows service's logic (:class:`appliance.windows_service.ServiceHost`) with a real appliance inside.

Windows cannot run here, so the service manager (SCM) is faked: the host is given a recording function in place
of pywin32's ``SetServiceStatus``, and the SCM's controls (stop, paramchange) are the host's methods called from
another thread, as the SCM's control thread calls them. Everything else is real: the settings read as
``appliance service run`` reads them, TensorFlow, the REST server on a free port, HTTP requests. The pywin32 glue
itself runs in the installers workflow's Windows job (sc.exe query says RUNNING, then /predict).
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
import requests

from appliance import paths
from appliance.cli import _parser, settings_from_args
from appliance.windows_service import RUNNING, START_PENDING, STOP_PENDING, STOPPED, ServiceHost

from .conftest import MODELS, wait_for

SAMPLE = json.loads((MODELS / "digits" / "samples" / "serving_default.json").read_text())["instances"]


@pytest.fixture
def service_env(tmp_path, monkeypatch):
    """APPLIANCE_SYSTEM=1 with the system folders under tmp_path, as `appliance service run` sets it."""
    monkeypatch.setenv(paths.SYSTEM_ENV, "1")
    for variable, name in (
        ("CONFIGURATION_DIRECTORY", "config"),
        ("STATE_DIRECTORY", "state"),
        ("CACHE_DIRECTORY", "cache"),
        ("LOGS_DIRECTORY", "logs"),
        ("RUNTIME_DIRECTORY", "run"),
    ):
        monkeypatch.setenv(variable, str(tmp_path / name))
    for variable in ("KERAS_HOME", "MPLCONFIGDIR"):  # the host points them at the cache: undone after the test
        monkeypatch.setenv(variable, str(tmp_path / "cache" / variable.lower()))
    return tmp_path


class FakeScm:
    """What the host reports, in order: (state, wait hint, exit status)."""

    def __init__(self):
        self.reports: list[tuple[int, int, int]] = []

    def __call__(self, state: int, wait_hint_ms: int, exit_status: int) -> None:
        self.reports.append((state, wait_hint_ms, exit_status))

    def states(self) -> list[int]:
        return [state for state, _, _ in self.reports]


def host_for(flags: list[str]) -> tuple[ServiceHost, FakeScm]:
    args = _parser().parse_args(["service", "run", *flags])
    scm = FakeScm()
    return ServiceHost(scm, lambda: settings_from_args(args)), scm


def start(host: ServiceHost) -> tuple[threading.Thread, list[int]]:
    """host.run() in a thread of its own, as the SCM's service thread; the exit status lands in the list."""
    exit_status: list[int] = []
    thread = threading.Thread(target=lambda: exit_status.append(host.run()), daemon=True)
    thread.start()
    return thread, exit_status


def test_running_once_models_are_ready_reload_on_paramchange_and_graceful_stop(service_env):
    host, scm = host_for(["--rest_api_port", "0", "--port", "0"])
    thread, exit_status = start(host)
    assert wait_for(lambda: RUNNING in scm.states(), timeout=120), scm.reports
    starting = scm.states()[: scm.states().index(RUNNING)]
    assert set(starting) == {START_PENDING} and len(starting) >= 2  # the checkpoint moved on while loading

    discovery = json.loads((service_env / "run" / "appliance.json").read_text())
    url = discovery["url"]
    health = requests.get(url + "/health", timeout=10).json()
    assert health["status"] == "ready" and all(
        v["state"] == "AVAILABLE" for m in health["models"] for v in m["versions"]
    ), health  # RUNNING was said once every model had loaded, not before
    answer = requests.post(f"{url}/v1/models/digits/versions/2:predict", json={"instances": SAMPLE}, timeout=30)
    assert answer.status_code == 200, answer.text
    import tensorflow as tf

    signature = tf.saved_model.load(str(MODELS / "digits" / "2")).signatures["serving_default"]
    expected = signature(pixels=tf.constant(np.array(SAMPLE, dtype=np.float32)))["class"].numpy().tolist()
    assert [p["class"] for p in answer.json()["predictions"]] == expected

    # sc control appliance paramchange: models.config in %ProgramData%\appliance is read again, while serving.
    (service_env / "config").mkdir()
    (service_env / "config" / "models.config").write_text(
        f'model_config_list {{ config {{ name: "digits8" base_path: "{MODELS / "digits"}" '
        'model_platform: "tensorflow" } }\n'
    )
    host.reload()
    status = f"{url}/v1/models/digits8"
    assert wait_for(lambda: requests.get(status, timeout=10).status_code == 200, timeout=60)
    assert scm.states()[-1] == RUNNING  # a reload is no state change for the SCM

    host.stop()
    thread.join(60)
    assert not thread.is_alive() and exit_status == [0]
    after = scm.states()[scm.states().index(RUNNING) + 1 :]
    assert after[0] == STOP_PENDING and after[-1] == STOPPED and scm.reports[-1][2] == 0
    assert not (service_env / "run" / "appliance.json").exists()
    assert "appliance.log" in {p.name for p in (service_env / "logs").iterdir()}  # the service's log file


def test_a_stop_while_starting_ends_the_service_without_running(service_env):
    host, scm = host_for(["--rest_api_port", "0", "--port", "0"])
    thread, exit_status = start(host)
    assert wait_for(lambda: scm.states(), timeout=30)
    host.stop()
    thread.join(120)
    assert not thread.is_alive() and exit_status == [0]
    assert RUNNING not in scm.states() and scm.states()[-1] == STOPPED, scm.reports


def test_a_busy_port_is_a_failure_with_its_reason_in_the_log(service_env, caplog):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        host, scm = host_for(["--rest_api_port", str(busy.getsockname()[1]), "--port", "0"])
        with caplog.at_level(logging.ERROR, logger="appliance.windows_service"):
            assert host.run() == 2
    assert scm.reports[-1] == (STOPPED, 0, 2)  # the SCM's failure actions restart it (failureflag 1)
    assert any("is already in use" in r.getMessage() for r in caplog.records), caplog.text
