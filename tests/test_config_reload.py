"""Changing the served models at run time, as clients see it: over real HTTP on loopback.

Clients keep predicting on a model kept in every config while the config flips between two model
lists: every request must answer 200. A real ``appliance serve`` process re-reads its
``--model_config_file`` (``--model_config_file_poll_wait_seconds``): a rewritten file is applied,
a broken one is logged once and the models served stay.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import requests
import tensorflow as tf

from appliance.api.app import create_app
from appliance.config import ModelConfig
from appliance.server import Server
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from .conftest import MODELS, ApplianceProcess, PredictLoad, wait_for

X = [[1.0], [5.0]]


def test_config_flips_under_load_drop_no_request_to_a_model_kept_in_both(tmp_path, tfs_testdata):
    shutil.copytree(MODELS / "digits", tmp_path / "digits")
    digits = ModelConfig("digits", tmp_path / "digits")
    lists = [
        [digits, ModelConfig("iris", MODELS / "iris")],
        [digits, ModelConfig("half_plus_two", tfs_testdata / "saved_model_half_plus_two_cpu")],
    ]
    manager = ModelManager(Repository(lists[0]), LocalTFRuntime("cpu"), poll_seconds=0)
    manager.start()
    assert manager.wait_until_ready(120)
    server = Server(create_app(manager, max_request_bytes=1 << 20), "127.0.0.1", 0)
    server.start()
    try:
        with PredictLoad(server.url, clients=4, body={"model": "digits", "input": [[3.0] * 64]}) as load:
            for flip in range(6):
                answered = len(load.versions)
                manager.reload_config(lists[(flip + 1) % 2])
                assert {lists[(flip + 1) % 2][1].name, "digits"} == set(manager.model_names())
                deadline = time.monotonic() + 60
                while len(load.versions) < answered + 2 * load.clients and time.monotonic() < deadline:
                    time.sleep(0.05)
        assert load.failures == []
        assert len(load.versions) >= 12 * load.clients and set(load.versions) == {2}
    finally:
        server.stop()
        manager.stop()


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` as editors and deploy tools do: a temporary file renamed over it."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def config_text(models: dict[str, Path]) -> str:
    entries = "".join(
        f'  config {{ name: "{n}" base_path: "{p}" model_platform: "tensorflow" }}\n' for n, p in models.items()
    )
    return f"model_config_list {{\n{entries}}}\n"


def predict(server: ApplianceProcess, name: str) -> requests.Response:
    return requests.post(f"{server.url}/v1/models/{name}:predict", json={"instances": X}, timeout=30)


def test_a_rewritten_model_config_file_is_applied_and_a_broken_one_is_logged_once(tmp_path, tfs_testdata):
    cpu, tf2 = tfs_testdata / "saved_model_half_plus_two_cpu", tfs_testdata / "saved_model_half_plus_two_tf2_cpu"
    config = tmp_path / "models.config"
    config.write_text(config_text({"default": cpu}))
    server = ApplianceProcess("--model_config_file", str(config), "--model_config_file_poll_wait_seconds", "0.2")
    try:
        assert predict(server, "default").status_code == 200
        assert predict(server, "tf2").status_code == 404

        write_atomically(config, config_text({"default": cpu, "tf2": tf2}))
        assert wait_for(lambda: predict(server, "tf2").status_code == 200)
        signature = tf.saved_model.load(str(tf2 / "00000123")).signatures["serving_default"]
        expected = signature(x=tf.constant(X))["y"].numpy()
        assert np.allclose(predict(server, "tf2").json()["predictions"], expected)

        write_atomically(config, "model_config_list { config { name: ")
        assert wait_for(lambda: "not applied" in server.stderr)
        time.sleep(1)  # five more looks at the same broken file
        assert server.stderr.count("not applied") == 1
        assert predict(server, "default").status_code == 200 and predict(server, "tf2").status_code == 200

        write_atomically(config, config_text({"tf2": tf2}))
        assert wait_for(lambda: predict(server, "default").status_code == 404)
        assert predict(server, "tf2").status_code == 200
    finally:
        assert server.stop() == 0
