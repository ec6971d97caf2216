"""The Windows service's logic (:class:`appliance.windows_service.ServiceHost`) with a real appliance inside.

Windows cannot run here, so the service manager (SCM) is faked: the host is given a recording function in place
of pywin32's ``SetServiceStatus``, and the SCM's controls (stop, paramchange) are the host's methods called from
another thread, as the SCM's control thread calls them. The last test runs the pywin32 service class too, with
stand-ins for pywin32's modules (which only install on Windows) that keep pywin32's own framework logic.
Everything else is real: the settings read as ``appliance service run`` reads them, TensorFlow, the REST server on
a free port, HTTP requests. The real pywin32 and SCM run in the installers workflow's Windows job (sc.exe query
says RUNNING, then /predict).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import types
from typing import ClassVar

import numpy as np
import pytest
import requests

from appliance import paths
from appliance.cli import _parser, settings_from_args
from appliance.windows_service import (
    RUNNING,
    START_PENDING,
    STOP_PENDING,
    STOPPED,
    ServiceHost,
    run_windows_service,
)

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


def available(model_url: str) -> bool:
    """Whether the model's versions are all AVAILABLE (TF Serving's model status)."""
    answer = requests.get(model_url, timeout=10)
    return answer.status_code == 200 and all(v["state"] == "AVAILABLE" for v in answer.json()["model_version_status"])


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
    assert set(starting) == {START_PENDING}, scm.reports

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
    assert wait_for(lambda: available(f"{url}/v1/models/digits8"), timeout=60)
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


# win32service's constants (winsvc.h) that the service and the framework use
WIN32SERVICE = {
    "SERVICE_WIN32_OWN_PROCESS": 0x10,
    "SERVICE_STOPPED": STOPPED,
    "SERVICE_START_PENDING": START_PENDING,
    "SERVICE_STOP_PENDING": STOP_PENDING,
    "SERVICE_RUNNING": RUNNING,
    "SERVICE_ACCEPT_STOP": 0x1,
    "SERVICE_ACCEPT_PAUSE_CONTINUE": 0x2,
    "SERVICE_ACCEPT_SHUTDOWN": 0x4,
    "SERVICE_ACCEPT_PARAMCHANGE": 0x8,
    "SERVICE_CONTROL_STOP": 1,
    "SERVICE_CONTROL_PAUSE": 2,
    "SERVICE_CONTROL_CONTINUE": 3,
    "SERVICE_CONTROL_INTERROGATE": 4,
    "SERVICE_CONTROL_SHUTDOWN": 5,
    "SERVICE_CONTROL_PARAMCHANGE": 6,
}
ACCEPTED_WHEN_RUNNING = 0x1 | 0x4 | 0x8  # stop, shutdown, paramchange


class FakeServiceFramework:
    """win32serviceutil.ServiceFramework's own logic (accepted controls, checkpoints, control dispatch), with
    SetServiceStatus recording the SERVICE_STATUS tuples in ``statuses``."""

    statuses: ClassVar[list[tuple]] = []

    def __init__(self, args):
        self.ssh = args[0]
        self.checkPoint = 0

    def GetAcceptedControls(self):
        accepted = WIN32SERVICE["SERVICE_ACCEPT_STOP"] if hasattr(self, "SvcStop") else 0
        if hasattr(self, "SvcPause") and hasattr(self, "SvcContinue"):
            accepted |= WIN32SERVICE["SERVICE_ACCEPT_PAUSE_CONTINUE"]
        if hasattr(self, "SvcShutdown"):
            accepted |= WIN32SERVICE["SERVICE_ACCEPT_SHUTDOWN"]
        return accepted

    def ReportServiceStatus(self, serviceStatus, waitHint=5000, win32ExitCode=0, svcExitCode=0):
        accepted = 0 if serviceStatus == START_PENDING else self.GetAcceptedControls()
        if serviceStatus in (RUNNING, STOPPED):
            checkpoint = 0
        else:
            self.checkPoint += 1
            checkpoint = self.checkPoint
        self.statuses.append((0x10, serviceStatus, accepted, win32ExitCode, svcExitCode, checkpoint, waitHint))

    def SvcOther(self, control):
        pass

    def SvcOtherEx(self, control, event_type, data):
        return self.SvcOther(control)

    def ServiceCtrlHandlerEx(self, control, event_type, data):
        handlers = {1: "SvcStop", 2: "SvcPause", 3: "SvcContinue", 4: "SvcInterrogate", 5: "SvcShutdown"}
        if control in handlers:
            return getattr(self, handlers[control])()
        return self.SvcOtherEx(control, event_type, data)


def fake_pywin32(monkeypatch) -> dict:
    """pywin32's three modules as far as the service uses them, in place of the real ones (Windows only); the
    dispatcher runs the service's SvcRun in the calling thread, as the SCM's service thread."""
    scm: dict = {"statuses": []}
    monkeypatch.setattr(FakeServiceFramework, "statuses", scm["statuses"])
    win32service = types.ModuleType("win32service")
    for name, value in WIN32SERVICE.items():
        setattr(win32service, name, value)
    win32serviceutil = types.ModuleType("win32serviceutil")
    win32serviceutil.ServiceFramework = FakeServiceFramework  # type: ignore[attr-defined]
    servicemanager = types.ModuleType("servicemanager")
    servicemanager.Initialize = lambda *args: None  # type: ignore[attr-defined]
    servicemanager.PrepareToHostSingle = lambda cls: scm.update(service_class=cls)  # type: ignore[attr-defined]

    def dispatch():
        scm["service"] = scm["service_class"](["appliance"])
        scm["service"].SvcRun()

    servicemanager.StartServiceCtrlDispatcher = dispatch  # type: ignore[attr-defined]
    for module in (win32service, win32serviceutil, servicemanager):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return scm


def test_the_pywin32_service_class_reports_through_the_framework(service_env, monkeypatch):
    scm = fake_pywin32(monkeypatch)
    args = _parser().parse_args(["service", "run", "--rest_api_port", "0", "--port", "0"])
    exit_status: list[int] = []
    thread = threading.Thread(
        target=lambda: exit_status.append(run_windows_service(lambda: settings_from_args(args))), daemon=True
    )
    thread.start()

    def states() -> list[int]:
        return [status[1] for status in scm["statuses"]]

    assert wait_for(lambda: RUNNING in states(), timeout=120), scm["statuses"]
    running = scm["statuses"][states().index(RUNNING)]
    assert running[2] == ACCEPTED_WHEN_RUNNING
    assert all(status[2] == 0 for status in scm["statuses"][: states().index(RUNNING)])  # nothing while starting
    url = json.loads((service_env / "run" / "appliance.json").read_text())["url"]
    assert requests.get(url + "/health", timeout=10).json()["status"] == "ready"

    (service_env / "config").mkdir()
    (service_env / "config" / "models.config").write_text(
        f'model_config_list {{ config {{ name: "digits8" base_path: "{MODELS / "digits"}" '
        'model_platform: "tensorflow" } }\n'
    )
    service = scm["service"]
    service.ServiceCtrlHandlerEx(6, 0, None)  # sc control appliance paramchange
    assert wait_for(lambda: available(f"{url}/v1/models/digits8"), timeout=60)
    service.ServiceCtrlHandlerEx(4, 0, None)  # interrogate: says RUNNING again, not another state
    assert states()[-1] == RUNNING

    service.ServiceCtrlHandlerEx(1, 0, None)  # sc stop appliance
    thread.join(60)
    assert exit_status == [0]
    assert STOP_PENDING in states()[states().index(RUNNING) :]
    assert scm["statuses"][-1][1:5] == (STOPPED, ACCEPTED_WHEN_RUNNING, 0, 0)  # stopped, no error
