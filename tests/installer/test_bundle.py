"""The frozen appliance (PyInstaller onedir bundle) serves the bundled models exactly as the source does.

Real processes: the bundle's ``appliance`` and ``python -m appliance``, each with its own per-user folders, one
after the other (so that their start-up times, reported in the terminal summary, are comparable). The user's own
models (a ``.keras`` file, exported by the bundled Keras, and a ``.tflite`` file, run by the bundled LiteRT) are
served by the frozen app too.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import requests
import tritonclient.grpc
from PIL import Image

from appliance import __version__
from appliance.api.openapi import DIGIT_EIGHT  # the README's digit

from ..conftest import MODELS, REPO, user_dirs_env
from ..own_models import build_own_models, sample_rows
from ..test_service import IRIS_ROW, ServiceRun, models_config
from .conftest import MEASURED, Server, installer_tests, isolated_env

pytestmark = installer_tests

DIGITS = [DIGIT_EIGHT, *np.random.default_rng(7).integers(0, 17, (3, 64)).astype(float).tolist()]
DIGITS_BODY = {"input": DIGITS}


def _png_b64(pixels: list[float]) -> str:
    image = Image.fromarray((255 - np.array(pixels, dtype=np.uint8).reshape(8, 8) * 15).astype(np.uint8))
    buffer = io.BytesIO()
    image.resize((32, 32)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


REQUESTS = [
    ("/predict", DIGITS_BODY),
    ("/predict", {"model": "digits", "version": 1, "input": DIGITS[:2]}),
    ("/predict", {"model": "digits", "signature_name": "image", "input": [{"b64": _png_b64(DIGIT_EIGHT)}]}),
    ("/v1/models/digits:predict", {"inputs": {"pixels": DIGITS}}),
    ("/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 4.2, 1.5]]}),
    ("/v1/models/iris/versions/1:predict", {"inputs": {"features": [[5.1, 3.5, 1.4, 0.2]]}}),
    (
        "/v1/models/iris:classify",
        {
            "signature_name": "classify",
            "examples": [{"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}],
        },
    ),
    (
        "/v1/models/iris:regress",
        {"signature_name": "regress", "examples": [{"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0}]},
    ),
    ("/v2/models/digits/infer", {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [4, 64], "data": DIGITS}]}),
    ("/v1/models/iris:predict", {"instances": [[1.0, 2.0]]}),  # an error: same status, same message
]
GRPC_LINE = re.compile(r"gRPC on (\S+)")


def _grpc_answers(server: Server) -> tuple[bool, list[int]]:
    """The server's gRPC port through Triton's client: v2 liveness and the digits' classes."""
    address = GRPC_LINE.search(server.output).group(1)
    with tritonclient.grpc.InferenceServerClient(address) as client:
        pixels = tritonclient.grpc.InferInput("pixels", [len(DIGITS), 64], "FP32")
        pixels.set_data_from_numpy(np.array(DIGITS, np.float32))
        return client.is_server_live(), client.infer("digits", [pixels]).as_numpy("class").tolist()


def _answers(server: Server) -> list[tuple[int, dict]]:
    return [(response.status_code, response.json()) for response in (server.post(p, b) for p, b in REQUESTS)]


def _served(health: dict) -> dict:
    return {m["name"]: sorted((v["version"], v["state"]) for v in m["versions"]) for m in health["models"]}


def test_frozen_serve_answers_exactly_as_the_source_does(bundle, tmp_path):
    frozen = Server.start(
        [str(bundle.executable), "serve", "--rest_api_port", "0", "--port", "0"], home=tmp_path / "frozen"
    )
    try:
        MEASURED["first_predict_frozen_seconds"] = round(frozen.first_predict(DIGITS_BODY), 2)
        frozen_health = frozen.wait_ready()
        frozen_answers = _answers(frozen)
        frozen_grpc = _grpc_answers(frozen)  # tritonclient's generated code and gRPC, bundled
        frozen_code = frozen.stop()
    finally:
        frozen.kill()

    source = Server.start(
        [sys.executable, "-m", "appliance", "serve", "--rest_api_port", "0", "--port", "0"],
        home=tmp_path / "source",
        cwd=REPO,
    )
    try:
        MEASURED["first_predict_source_seconds"] = round(source.first_predict(DIGITS_BODY), 2)
        source_health = source.wait_ready()
        source_answers = _answers(source)
        source_grpc = _grpc_answers(source)
        source.stop()
    finally:
        source.kill()

    assert frozen_code == 0, frozen.output
    assert "Traceback" not in frozen.output
    # TensorFlow's C++ start-up chatter is held back from stderr (logged at DEBUG), frozen too.
    assert "oneDNN" not in frozen.output and "absl::InitializeLog" not in frozen.output, frozen.output
    # The bundled models, found in the bundle (sys._MEIPASS/models), all loaded.
    assert all(m["base_path"].startswith(str(bundle.folder)) for m in frozen_health["models"]), frozen_health
    assert (
        _served(frozen_health)
        == _served(source_health)
        == {"digits": [(1, "AVAILABLE"), (2, "AVAILABLE")], "iris": [(1, "AVAILABLE"), (2, "AVAILABLE")]}
    )
    assert [status for status, _ in frozen_answers] == [200] * (len(REQUESTS) - 1) + [400]
    for (path, _), frozen_answer, source_answer in zip(REQUESTS, frozen_answers, source_answers):
        assert frozen_answer == source_answer, path
    assert frozen_grpc == source_grpc and frozen_grpc[0] is True and frozen_grpc[1][0] == 8
    assert frozen_answers[0][1]["predictions"]["class"][0] == 8  # README's digit
    assert frozen_answers[2][1]["predictions"]["class"] == [8]  # the same digit as a PNG: image ops are bundled


def test_frozen_version(bundle, tmp_path):
    result = subprocess.run(
        [str(bundle.executable), "--version"],
        check=False,
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"appliance {__version__}"


def test_no_command_without_a_display_serves_headless_with_user_models(bundle, tmp_path):
    # Models in the per-user models folder (platformdirs: $XDG_DATA_HOME/appliance/models) are served too, in each
    # format: a SavedModel, a .keras file (exported to a SavedModel by Keras, in the bundle) and a .tflite file.
    own = build_own_models(tmp_path / "own")
    rows = sample_rows()
    expected = keras.saving.load_model(own / "tiny.keras")(rows).numpy()
    env = isolated_env(tmp_path / "home")
    folder = tmp_path / "home" / "data" / "appliance" / "models"
    shutil.copytree(MODELS / "iris" / "1", folder / "my_iris" / "1")
    shutil.copy(own / "tiny.keras", folder / "my_keras.keras")
    shutil.copy(own / "tiny.tflite", folder / "my_lite.tflite")
    app = Server.start([str(bundle.executable), "--rest_api_port", "0", "--port", "0"], home=tmp_path / "home", env=env)
    try:
        app.first_predict(DIGITS_BODY)
        health = app.wait_ready()
        mine = app.post("/v1/models/my_iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert mine.status_code == 200, mine.text
        assert mine.json()["predictions"][0]["class"] == 0
        assert {"my_iris", "my_keras", "my_lite"} <= set(_served(health)), health
        for name in ("my_keras", "my_lite"):
            answer = app.post(f"/v1/models/{name}:predict", {"instances": rows.tolist()})
            assert answer.status_code == 200, (name, answer.text, app.output[-4000:])
            assert np.allclose(answer.json()["predictions"], expected, atol=1e-6), name
        discovery = json.loads((tmp_path / "home" / "runtime" / "appliance" / "appliance.json").read_text())
        assert discovery["url"] == app.url
        code = app.stop()
    finally:
        app.kill()
    assert code == 0, app.output
    assert "serving without a tray icon: no display" in app.output
    assert "Traceback" not in app.output
    assert "converted to SavedModel" in app.output  # the .keras file, by the bundled Keras
    assert (tmp_path / "home" / "state" / "appliance" / "log" / "appliance.log").is_file()
    assert not (tmp_path / "home" / "runtime" / "appliance" / "appliance.json").exists()


def test_frozen_tray_icon_shows_and_its_menu_opens(bundle, tmp_path, x_desktop):
    """The bundled GTK/AppIndicator stack draws the tray (and TensorFlow survives GTK: GDK_GL=disable)."""
    env = {**x_desktop.env, **user_dirs_env(tmp_path), "HOME": str(tmp_path)}
    app = Server.start([str(bundle.executable), "--rest_api_port", "0", "--port", "0"], home=tmp_path, env=env)
    try:
        app.first_predict(DIGITS_BODY)
        icon = x_desktop.icon_window(app.proc.pid, timeout=60)
        x_desktop.open_menu(app.proc.pid, icon)
        x_desktop.screenshot("frozen-tray-menu")
        x_desktop.keys("Escape")
        assert requests.get(app.url + "/health", timeout=10).json()["status"] == "ready"
        code = app.stop()
    finally:
        app.kill()
    assert code == 0, app.output
    assert "without a tray icon" not in app.output
    assert "Traceback" not in app.output


def test_the_frozen_app_runs_as_the_system_service(bundle, tmp_path):
    """The unit's command line and environment with the frozen executable for /usr/bin/appliance (its target in
    the .deb): readiness, a reload of a changed models.config, and a clean stop, as tests/test_service.py checks
    with the source."""
    service = ServiceRun(tmp_path, "--rest_api_port 0 --port 0", executable=[str(bundle.executable)])
    (service.config / "models.config").write_text(models_config({"flower": (MODELS / "iris", 1)}))
    try:
        started = time.monotonic()
        service.start()
        service.wait_message("READY=1")
        MEASURED["service_ready_frozen_seconds"] = round(time.monotonic() - started, 2)
        url = service.url()
        row = {"instances": IRIS_ROW}
        expected_v2 = requests.post(f"{url}/v1/models/iris/versions/2:predict", json=row, timeout=30).json()
        assert requests.post(f"{url}/v1/models/flower:predict", json=row, timeout=30).json() != expected_v2

        (service.config / "models.config").write_text(models_config({"flower": (MODELS / "iris", 2)}))
        before = len(service.messages)
        service.proc.send_signal(signal.SIGHUP)
        service.wait_message("READY=1", service.wait_message("RELOADING=1", before))
        assert requests.post(f"{url}/v1/models/flower:predict", json=row, timeout=30).json() == expected_v2

        before = len(service.messages)
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(60) == 0, service.stderr
        service.wait_message("STOPPING=1", before, exited=True)
        assert "Traceback" not in service.stderr
    finally:
        service.close()
