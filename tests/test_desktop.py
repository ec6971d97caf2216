"""The desktop app without a display: one instance per user, discovery, the user's models folder, logs.

Each test gives its processes their own per-user folders (XDG_* under tmp_path)
and no DISPLAY, so the app serves headless exactly as on a machine without a desktop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import requests

from .conftest import MODELS, REPO, ApplianceProcess, user_dirs_env, wait_for

HEADLESS_ENV = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}


def desktop(home: Path, *args: str) -> ApplianceProcess:
    return ApplianceProcess(
        "--file_system_poll_wait_seconds", "0.2", *args, command="desktop", home=home, env=HEADLESS_ENV
    )


def discovery(home: Path) -> dict:
    return json.loads((home / "runtime" / "appliance" / "appliance.json").read_text())


def newest_state(app: ApplianceProcess, model: str) -> str | None:
    statuses = requests.get(f"{app.url}/v1/models/{model}", timeout=30).json().get("model_version_status")
    return statuses[0]["state"] if statuses else None


def test_without_a_display_it_serves_headless_and_says_why(tmp_path):
    app = desktop(tmp_path)
    try:
        assert requests.get(app.url + "/health", timeout=30).json()["status"] == "ready"
    finally:
        assert app.stop() == 0
    assert "serving without a tray icon" in app.stderr and "DISPLAY" in app.stderr


def test_second_launch_prints_the_running_url_and_exits_zero(tmp_path):
    first = desktop(tmp_path)
    try:
        found = discovery(tmp_path)
        assert found["url"] == first.url and found["pid"] == first.proc.pid
        assert found["grpc_address"] == first.grpc_address
        assert found["grpc_port"] == int(first.grpc_address.rsplit(":", 1)[1]) > 0
        second = subprocess.run(
            [sys.executable, "-m", "appliance", "--rest_api_port", "0", "--port", "0"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **user_dirs_env(tmp_path), **HEADLESS_ENV},
        )
        assert second.returncode == 0
        assert f"already running at {first.url} (gRPC on {first.grpc_address})" in second.stdout
        assert requests.post(first.url + "/predict", json={"input": [[0.0] * 64]}, timeout=30).status_code == 200
    finally:
        assert first.stop() == 0
    assert not (tmp_path / "runtime" / "appliance" / "appliance.json").exists(), "removed on a clean exit"


def test_a_crashed_instance_does_not_block_the_next_one(tmp_path):
    crashed = desktop(tmp_path)
    crashed.stop(signal.SIGKILL)
    assert discovery(tmp_path)["pid"] == crashed.proc.pid  # left behind by the crash
    fresh = desktop(tmp_path)
    try:
        assert discovery(tmp_path)["pid"] == fresh.proc.pid
        assert requests.get(fresh.url + "/health", timeout=30).status_code == 200
    finally:
        assert fresh.stop() == 0


def test_user_models_folder_is_served_live(tmp_path):
    models = tmp_path / "data" / "appliance" / "models"
    app = desktop(tmp_path)
    try:
        assert models.is_dir(), "created on first run"
        staging = tmp_path / "staging"
        shutil.copytree(MODELS / "iris" / "2", staging / "1")
        staging.rename(models / "flowers")
        assert wait_for(lambda: newest_state(app, "flowers") == "AVAILABLE")
        answer = requests.post(
            app.url + "/v1/models/flowers:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30
        ).json()
        assert answer["predictions"][0]["class"] == 0

        broken = models / "broken" / "1"
        broken.mkdir(parents=True)
        (broken / "saved_model.pb").write_bytes(b"not a model")
        wait_for(
            lambda: "broken" in {m["name"] for m in requests.get(app.url + "/health", timeout=30).json()["models"]}
        )
        health = requests.get(app.url + "/health", timeout=30).json()
        by_name = {m["name"]: m for m in health["models"]}
        assert by_name["broken"]["versions"][0]["error"]
        assert by_name["flowers"]["chosen_version"] == 1 and by_name["digits"]["chosen_version"] == 2

        shutil.rmtree(models / "flowers")
        assert wait_for(
            lambda: (
                requests.post(
                    app.url + "/v1/models/flowers:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30
                ).status_code
                == 404
            )
        )
    finally:
        assert app.stop() == 0
    assert "Traceback" not in app.stderr


def test_user_models_config_is_honoured(tmp_path):
    base = tmp_path / "elsewhere" / "digits"
    shutil.copytree(MODELS / "digits" / "1", base / "7")
    config = tmp_path / "config" / "appliance"
    config.mkdir(parents=True)
    (config / "models.config").write_text(
        f'model_config_list {{ config {{ name: "my_digits" base_path: "{base}" '
        f'version_labels {{ key: "stable" value: 7 }} }} }}'
    )
    app = desktop(tmp_path)
    try:
        response = requests.post(
            app.url + "/v1/models/my_digits/labels/stable:predict", json={"instances": [[0.0] * 64]}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert requests.post(app.url + "/predict", json={"input": [[0.0] * 64]}, timeout=30).json()["model"] in (
            "my_digits",
            "digits",
        )
    finally:
        assert app.stop() == 0


def test_log_file_is_written(tmp_path):
    app = desktop(tmp_path)
    app.stop()
    log = (tmp_path / "state" / "appliance" / "log" / "appliance.log").read_text()
    assert f"serving on {app.url}" in log and "stopped" in log
