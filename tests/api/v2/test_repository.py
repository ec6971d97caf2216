"""The model repository extension (index, load, unload) over a real manager on copies of the bundled models."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from appliance.api.v2.repository import ModelRepository
from appliance.config import ModelConfig, PolicyKind, VersionPolicy
from appliance.errors import InvalidArgument, NotFound, ServingError
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime import Runtime, Servable
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ...conftest import wait_for
from ...serving.test_manager import add_version

ALL_VERSIONS = VersionPolicy(PolicyKind.ALL)
PIXELS = np.zeros((1, 64), np.float32)


class GatedRuntime(Runtime):
    """The real runtime, except that loading a path in ``gated`` waits until ``opened`` is set."""

    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self.gated: set[Path] = set()
        self.opened = threading.Event()

    @property
    def device(self):
        return self._runtime.device

    def load(self, path: Path) -> Servable:
        if Path(path) in self.gated:
            self.opened.wait(60)
        return self._runtime.load(path)


@pytest.fixture(scope="module")
def runtime():
    return GatedRuntime(LocalTFRuntime(device="cpu"))


@pytest.fixture
def manager(runtime, tmp_path):
    (tmp_path / "digits").mkdir()
    add_version(tmp_path / "digits", 1, source=1)
    add_version(tmp_path / "digits", 2, source=2)
    (tmp_path / "empty").mkdir()
    configs = [
        ModelConfig("digits", tmp_path / "digits", policy=ALL_VERSIONS),
        ModelConfig("empty", tmp_path / "empty"),
    ]
    manager = ModelManager(Repository(configs), runtime, poll_seconds=0)
    manager.poll()
    yield manager
    runtime.opened.set()
    manager.stop()
    runtime.gated.clear()
    runtime.opened.clear()


def entry(name, version, state, reason=""):
    return {"name": name, "version": version, "state": state, "reason": reason}


def test_index_lists_every_version_in_tritons_shape(manager):
    index = ModelRepository(manager).index()
    assert index == [
        entry("digits", "1", "READY"),
        entry("digits", "2", "READY"),
        {"name": "empty", "state": "UNAVAILABLE", "reason": f"no version under {manager.summary('empty').base_path}"},
    ]
    assert ModelRepository(manager).index(ready_only=True) == index[:2]


def test_unload_and_load_through_the_repository(manager):
    repository = ModelRepository(manager)
    repository.unload("digits", {"unload_dependents": False})  # what tritonclient's unload_model() sends
    assert repository.index()[:2] == [
        entry("digits", "1", "UNAVAILABLE", "unloaded by request"),
        entry("digits", "2", "UNAVAILABLE", "unloaded by request"),
    ]
    assert repository.index(ready_only=True) == []
    with pytest.raises(NotFound, match="POST /v2/repository/models/digits/load"):
        manager.acquire("digits")
    repository.load("digits", {})
    assert repository.index(ready_only=True) == [entry("digits", "1", "READY"), entry("digits", "2", "READY")]
    with manager.acquire("digits") as handle:
        assert handle.version == 2
        assert handle.servable.predict("serving_default", {"pixels": PIXELS})["class"].shape == (1,)


def test_a_failed_version_is_unavailable_with_its_load_error(manager, tmp_path):
    broken = tmp_path / "digits" / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    manager.poll()
    (error,) = [s.error for s in manager.status("digits", 3)]
    assert error is not None and error.message
    assert ModelRepository(manager).index()[2] == entry("digits", "3", "UNAVAILABLE", error.message)
    with pytest.raises(ServingError, match="version 3 of model digits failed to load"):
        ModelRepository(manager).load("digits")


def test_loading_and_unloading_versions_show_their_states(manager, runtime, tmp_path):
    repository = ModelRepository(manager)
    add_version(tmp_path / "digits", 3)
    runtime.gated.add(tmp_path / "digits" / "3")
    poller = threading.Thread(target=manager.poll)
    poller.start()
    wait_for(lambda: entry("digits", "3", "LOADING") in repository.index())
    assert entry("digits", "3", "LOADING") not in repository.index(ready_only=True)
    runtime.opened.set()
    poller.join(60)
    assert entry("digits", "3", "READY") in repository.index()

    held = manager.acquire("digits", 3)
    unloader = threading.Thread(target=repository.unload, args=("digits",))
    unloader.start()
    wait_for(lambda: entry("digits", "3", "UNLOADING") in repository.index())
    held.release()
    unloader.join(60)
    assert entry("digits", "3", "UNAVAILABLE", "unloaded by request") in repository.index()


@pytest.mark.parametrize(
    ("parameters", "refusal"),
    [
        ({"config": '{"backend": "tensorflow"}'}, 'load parameter "config" is not supported'),
        ({"file:1/model.savedmodel/saved_model.pb": "AAAA"}, 'load parameter "file:1/model.savedmodel/saved_model.pb"'),
        ({"priority": 1}, 'unknown load parameter "priority"'),
    ],
)
def test_load_refuses_uploads_and_unknown_parameters(manager, parameters, refusal):
    with pytest.raises(InvalidArgument) as refused:
        ModelRepository(manager).load("digits", parameters)
    assert refusal in refused.value.message
    if "file:" in refusal or "config" in refusal:
        assert "docs/models.md" in refused.value.message
    assert manager.chosen_version("digits") == 2  # nothing changed


@pytest.mark.parametrize(
    ("parameters", "refusal"),
    [
        ({"unload_dependents": "yes"}, 'unload parameter "unload_dependents" must be true or false'),
        ({"force": True}, 'unknown unload parameter "force"'),
    ],
)
def test_unload_refuses_unknown_parameters(manager, parameters, refusal):
    with pytest.raises(InvalidArgument, match=refusal):
        ModelRepository(manager).unload("digits", parameters)
    assert manager.chosen_version("digits") == 2  # still served


def test_a_model_without_versions_can_be_unloaded_and_loaded(manager):
    repository = ModelRepository(manager)
    repository.unload("empty")
    assert {"name": "empty", "state": "UNAVAILABLE", "reason": "unloaded by request"} in repository.index()
    with pytest.raises(NotFound, match="model empty has no version to load under"):
        repository.load("empty")
    assert {
        "name": "empty",
        "state": "UNAVAILABLE",
        "reason": f"no version under {manager.summary('empty').base_path}",
    } in (repository.index())


def test_unknown_models_are_not_found(manager):
    repository = ModelRepository(manager)
    with pytest.raises(NotFound, match=r"Models served: digits, empty\."):
        repository.load("nope")
    with pytest.raises(NotFound, match=r"Models served: digits, empty\."):
        repository.unload("nope")
