"""Unloading and loading models by request (ModelManager.unload_model / load_model), with the real TF runtime.

Version directories are copies of the bundled digits model in tmp_path, so tests can change and break them.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from appliance.config import ModelConfig
from appliance.errors import Code, FailedPrecondition, NotFound, ServingError
from appliance.serving.manager import ModelManager, State
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from .test_manager import ALL_VERSIONS, add_version, make_manager, states

PIXELS = np.random.default_rng(19).random((3, 64), dtype=np.float32)
LOAD_HINT = "POST /v2/repository/models/digits/load"


@pytest.fixture(scope="module")
def runtime():
    return LocalTFRuntime(device="cpu")


def predict(manager: ModelManager, version: int | None = None) -> np.ndarray:
    with manager.acquire("digits", version) as handle:
        return handle.servable.predict("serving_default", {"pixels": PIXELS})["probabilities"]


def tf_probabilities(version_dir: Path) -> np.ndarray:
    """What TensorFlow itself makes of PIXELS with the SavedModel in ``version_dir``."""
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return signature(pixels=tf.constant(PIXELS))["probabilities"].numpy()


@pytest.fixture
def two_versions(runtime, tmp_path):
    add_version(tmp_path, 1, source=1)
    add_version(tmp_path, 2, source=2)
    manager = make_manager(runtime, tmp_path)
    yield manager
    manager.stop()


def test_unload_lets_running_requests_finish_and_refuses_new_ones_with_the_way_back(two_versions):
    manager = two_versions
    held = manager.acquire("digits", 2)
    unloaded: list[list[int]] = []
    unloader = threading.Thread(target=lambda: unloaded.append(manager.unload_model("digits")))
    unloader.start()
    unloader.join(timeout=2)
    assert unloader.is_alive(), "the unload must wait for the request holding version 2"
    assert states(manager)[2] is State.UNLOADING
    for version in (None, 1, 2):
        with pytest.raises(NotFound, match="unloaded by request") as refused:
            manager.acquire("digits", version)
        assert LOAD_HINT in refused.value.message
    # The request that holds version 2 still runs on it.
    assert held.servable.predict("serving_default", {"pixels": PIXELS})["class"].shape == (3,)
    held.release()
    unloader.join(timeout=30)
    assert not unloader.is_alive()
    assert unloaded == [[2, 1]]
    assert states(manager) == {2: State.END, 1: State.END}
    assert manager.summary("digits").unloaded


def test_an_unloaded_model_stays_unloaded_across_polls_until_loaded(two_versions, tmp_path):
    manager = two_versions
    manager.unload_model("digits")
    add_version(tmp_path, 3, source=1)  # a new version on disk does not bring it back either
    manager.poll()
    manager.poll()
    assert set(states(manager).values()) == {State.END}
    assert manager.chosen_version("digits") is None

    assert manager.load_model("digits") == [3, 2, 1]
    assert states(manager) == {3: State.AVAILABLE, 2: State.AVAILABLE, 1: State.AVAILABLE}
    assert not manager.summary("digits").unloaded
    np.testing.assert_allclose(predict(manager, 2), tf_probabilities(tmp_path / "2"), rtol=1e-5, atol=1e-6)
    manager.poll()
    assert manager.chosen_version("digits") == 3


def test_load_of_a_loaded_model_reads_its_files_again_without_dropping_a_request(two_versions, tmp_path):
    manager = two_versions
    before = predict(manager, 1)
    np.testing.assert_allclose(before, tf_probabilities(tmp_path / "1"), rtol=1e-5, atol=1e-6)
    held = manager.acquire("digits", 1)
    # Version 1's folder now holds the other model (same signature, other weights).
    shutil.rmtree(tmp_path / "1")
    add_version(tmp_path, 1, source=2)
    expected = tf_probabilities(tmp_path / "1")
    assert not np.allclose(before, expected), "the two bundled digits versions must answer differently"

    loader = threading.Thread(target=manager.load_model, args=("digits",))
    loader.start()
    loader.join(timeout=2)
    assert loader.is_alive(), "the old version 1 closes only after the request holding it"
    np.testing.assert_allclose(predict(manager, 1), expected, rtol=1e-5, atol=1e-6)  # new requests: the new one
    np.testing.assert_allclose(
        held.servable.predict("serving_default", {"pixels": PIXELS})["probabilities"], before, rtol=1e-5, atol=1e-6
    )
    held.release()
    loader.join(timeout=30)
    assert not loader.is_alive()
    assert states(manager) == {2: State.AVAILABLE, 1: State.AVAILABLE}


def test_a_load_changes_that_model_alone(runtime, tmp_path):
    (tmp_path / "digits").mkdir()
    add_version(tmp_path / "digits", 1)
    (tmp_path / "other").mkdir()
    add_version(tmp_path / "other", 1)
    configs = [ModelConfig(name, tmp_path / name, policy=ALL_VERSIONS) for name in ("digits", "other")]
    manager = ModelManager(Repository(configs), runtime, poll_seconds=0)
    manager.poll()
    add_version(tmp_path / "digits", 2, source=2)
    add_version(tmp_path / "other", 2, source=2)  # left for the next poll
    assert manager.load_model("digits") == [2, 1]
    assert [s.version for s in manager.status("other")] == [1]
    manager.poll()
    assert [s.state for s in manager.status("other")] == [State.AVAILABLE, State.AVAILABLE]
    manager.stop()


def test_unknown_models_are_not_found_naming_those_served(two_versions):
    for call in (two_versions.unload_model, two_versions.load_model):
        with pytest.raises(NotFound, match=r"nope.*Models served: digits\."):
            call("nope")


def test_a_broken_version_fails_the_load_with_its_reason_and_the_others_serve(two_versions, tmp_path):
    manager = two_versions
    manager.unload_model("digits")
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    with pytest.raises(ServingError) as failed:
        manager.load_model("digits")
    assert failed.value.code is not Code.OK
    assert "version 2 of model digits failed to load" in failed.value.message
    assert "Versions served: 1." in failed.value.message
    status = {s.version: s for s in manager.status("digits")}
    assert status[2].state is State.END and status[2].error is not None
    assert status[2].error.message in failed.value.message
    assert status[1].state is State.AVAILABLE
    assert manager.chosen_version("digits") == 1

    # Asked for again, the failed version is tried again (the files are the same, a poll would not).
    with pytest.raises(ServingError, match="version 2 of model digits failed to load"):
        manager.load_model("digits")
    shutil.rmtree(tmp_path / "2")
    add_version(tmp_path, 2, source=2)
    assert manager.load_model("digits") == [2, 1]


def test_a_model_without_versions_cannot_be_loaded(runtime, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    manager = ModelManager(Repository([ModelConfig("digits", empty)]), runtime, poll_seconds=0)
    manager.poll()
    with pytest.raises(NotFound, match="no version to load under"):
        manager.load_model("digits")
    manager.stop()


def test_choosing_a_version_of_an_unloaded_model_says_to_load_it(two_versions):
    two_versions.unload_model("digits")
    with pytest.raises(FailedPrecondition, match=LOAD_HINT):
        two_versions.choose("digits", 1)
    with pytest.raises(FailedPrecondition, match=LOAD_HINT):
        two_versions.reload("digits")


def test_a_config_that_drops_the_model_forgets_its_unload(runtime, tmp_path):
    add_version(tmp_path, 1)
    config = ModelConfig("digits", tmp_path, policy=ALL_VERSIONS)
    manager = ModelManager(Repository([config]), runtime, poll_seconds=0)
    manager.poll()
    manager.unload_model("digits")
    manager.reload_config([config])  # still configured: still unloaded
    assert states(manager) == {1: State.END}
    manager.reload_config([])
    assert manager.model_names() == []
    manager.reload_config([config])
    assert states(manager) == {1: State.AVAILABLE}
    manager.stop()


def test_listeners_hear_of_unloads_and_loads(two_versions):
    heard = []
    two_versions.subscribe(lambda: heard.append(two_versions.summary("digits").unloaded))
    two_versions.unload_model("digits")
    assert heard and heard[-1] is True
    heard.clear()
    two_versions.load_model("digits")
    assert heard and heard[-1] is False


def test_concurrent_unloads_and_loads_end_consistent(two_versions):
    manager = two_versions
    errors: list[BaseException] = []

    def churn(first_unload: bool) -> None:
        try:
            for i in range(3):
                if (i % 2 == 0) == first_unload:
                    manager.unload_model("digits")
                else:
                    manager.load_model("digits")
                manager.poll()
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=churn, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    summary = manager.summary("digits")
    expected = State.END if summary.unloaded else State.AVAILABLE
    assert {v.state for v in summary.versions} == {expected}
    manager.load_model("digits")
    assert states(manager) == {2: State.AVAILABLE, 1: State.AVAILABLE}
    np.testing.assert_allclose(predict(manager), predict(manager, 2))
