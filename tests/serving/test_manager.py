"""The model manager with the real TF runtime on real SavedModels, in process.

Version directories are assembled in tmp_path from the bundled models (which
are ours), so each test can add, break and remove versions freely.
"""

from __future__ import annotations

import gc
import shutil
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from appliance.config import ModelConfig, PolicyKind, VersionPolicy
from appliance.errors import Code, FailedPrecondition, InvalidArgument, NotFound, ServingError
from appliance.serving.manager import ModelManager, State
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

MODELS = Path(__file__).resolve().parents[2] / "models"
PIXELS = np.zeros((1, 64), np.float32)
ALL_VERSIONS = VersionPolicy(PolicyKind.ALL)  # frozen, so one instance serves every make_manager() call


@pytest.fixture(scope="module")
def runtime():
    return LocalTFRuntime(device="cpu")


def add_version(base: Path, version: int, source: int = 1) -> Path:
    """Copy a bundled digits version into ``base/version`` atomically (copy, then rename)."""
    staging = base / f".staging-{version}"
    shutil.copytree(MODELS / "digits" / str(source), staging)
    return staging.rename(base / str(version))


def make_manager(runtime, base: Path, policy=ALL_VERSIONS, labels=None) -> ModelManager:
    config = ModelConfig(name="digits", base_path=base, policy=policy, labels=labels or {})
    manager = ModelManager(Repository([config]), runtime, poll_seconds=0)
    manager.poll()
    return manager


def states(manager: ModelManager) -> dict[int, State]:
    return {s.version: s.state for s in manager.status("digits")}


def test_initial_load_and_chosen_version_is_newest(runtime, tmp_path):
    add_version(tmp_path, 1, source=1)
    add_version(tmp_path, 2, source=2)
    manager = make_manager(runtime, tmp_path)
    assert states(manager) == {2: State.AVAILABLE, 1: State.AVAILABLE}
    assert manager.chosen_version("digits") == 2
    with manager.acquire("digits") as handle:
        assert handle.version == 2
        outputs = handle.servable.predict("serving_default", {"pixels": PIXELS})
    assert outputs["probabilities"].shape == (1, 10)
    manager.stop()
    assert states(manager) == {2: State.END, 1: State.END}


def test_new_version_is_loaded_and_chosen_on_the_next_poll(runtime, tmp_path):
    add_version(tmp_path, 1)
    manager = make_manager(runtime, tmp_path, policy=VersionPolicy())  # latest 1, TF Serving's default
    add_version(tmp_path, 2, source=2)
    manager.poll()
    assert manager.chosen_version("digits") == 2
    assert states(manager) == {2: State.AVAILABLE, 1: State.END}
    manager.stop()


def test_removed_version_is_retired_only_after_its_requests_finish(runtime, tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 2)
    manager = make_manager(runtime, tmp_path)
    handle = manager.acquire("digits", version=2)
    shutil.rmtree(tmp_path / "2")
    poller = threading.Thread(target=manager.poll)
    poller.start()
    poller.join(timeout=2)
    assert poller.is_alive(), "the unload must wait for the in-flight request"
    assert states(manager)[2] is State.UNLOADING
    assert manager.chosen_version("digits") == 1
    # The held version still answers while it drains.
    assert handle.servable.predict("serving_default", {"pixels": PIXELS})["class"].shape == (1,)
    handle.release()
    poller.join(timeout=30)
    assert not poller.is_alive()
    assert states(manager) == {2: State.END, 1: State.AVAILABLE}
    with pytest.raises(NotFound, match=r"Specific\(digits, 2\)"):
        manager.acquire("digits", version=2)
    manager.stop()


def test_corrupt_version_fails_alone_and_is_retried_once_repaired(runtime, tmp_path):
    add_version(tmp_path, 1)
    broken = tmp_path / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    manager = make_manager(runtime, tmp_path)
    status = {s.version: s for s in manager.status("digits")}
    assert status[2].state is State.END
    assert status[2].error is not None and status[2].error.code is not Code.OK
    assert "2" in status[2].error.message or "SavedModel" in status[2].error.message
    assert status[1].state is State.AVAILABLE
    assert manager.chosen_version("digits") == 1

    manager.poll()  # unchanged files: not retried
    assert states(manager)[2] is State.END

    shutil.rmtree(broken)
    add_version(tmp_path, 2, source=2)
    manager.poll()
    assert states(manager) == {2: State.AVAILABLE, 1: State.AVAILABLE}
    assert manager.chosen_version("digits") == 2
    manager.stop()


def test_half_written_version_without_saved_model_is_an_error_state(runtime, tmp_path):
    add_version(tmp_path, 1)
    (tmp_path / "3" / "variables").mkdir(parents=True)
    manager = make_manager(runtime, tmp_path)
    status = {s.version: s for s in manager.status("digits")}
    assert status[3].state is State.END and status[3].error.code is Code.NOT_FOUND
    assert manager.chosen_version("digits") == 1
    manager.stop()


def test_labels_and_lookup_errors(runtime, tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 2)
    manager = make_manager(runtime, tmp_path, labels={"stable": 1, "gone": 9})
    with manager.acquire("digits", label="stable") as handle:
        assert handle.version == 1
    with pytest.raises(InvalidArgument, match="Unrecognized servable version label: nope"):
        manager.acquire("digits", label="nope")
    with pytest.raises(NotFound, match=r"Specific\(digits, 9\)"):
        manager.acquire("digits", label="gone")
    with pytest.raises(NotFound, match=r"Latest\(other\)"):
        manager.acquire("other")
    with pytest.raises(NotFound, match="Could not find any versions of model other"):
        manager.status("other")
    with pytest.raises(NotFound, match="Could not find version 5 of model digits"):
        manager.status("digits", version=5)
    manager.stop()


def test_lookup_errors_keep_tf_servings_words_first_and_name_what_is_served(runtime, tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 2)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"corrupt")
    configs = [
        ModelConfig(name="digits", base_path=tmp_path, policy=ALL_VERSIONS, labels={"stable": 1, "canary": 2}),
        ModelConfig(name="plain", base_path=tmp_path, policy=VersionPolicy(PolicyKind.SPECIFIC, versions=(2,))),
    ]
    manager = ModelManager(Repository(configs), runtime, poll_seconds=0)
    manager.poll()
    versions = "Versions of model digits: 3 (END), 2, 1."
    for call, error, message in [
        (
            lambda: manager.acquire("digit"),
            NotFound,
            "Servable not found for request: Latest(digit). Models served: digits, plain.",
        ),
        (
            lambda: manager.acquire("digits", 9),
            NotFound,
            f"Servable not found for request: Specific(digits, 9). {versions}",
        ),
        (
            lambda: manager.acquire("digits", 3),
            NotFound,
            f"Servable not found for request: Specific(digits, 3). {versions}",
        ),
        (
            lambda: manager.acquire("digits", label="beta"),
            InvalidArgument,
            "Unrecognized servable version label: beta. "
            "Labels of model digits: canary (version 2), stable (version 1).",
        ),
        (
            lambda: manager.acquire("plain", label="beta"),
            InvalidArgument,
            "Unrecognized servable version label: beta. Model plain has no labels.",
        ),
        (
            lambda: manager.status("digits", version=5),
            NotFound,
            f"Could not find version 5 of model digits. {versions}",
        ),
        (
            lambda: manager.status("other"),
            NotFound,
            "Could not find any versions of model other. Models served: digits, plain.",
        ),
        (
            lambda: manager.choose("plain", 7),
            NotFound,
            "Could not find version 7 of model plain. Versions on disk: 3, 2, 1.",
        ),
        (
            lambda: manager.choose("other", 1),
            NotFound,
            "Could not find any versions of model other. Models served: digits, plain.",
        ),
    ]:
        with pytest.raises(error) as raised:
            call()
        assert raised.value.message == message
    manager.stop()
    empty = ModelManager(Repository([]), runtime, poll_seconds=0)
    empty.poll()
    with pytest.raises(NotFound) as nothing:
        empty.acquire("digits")
    assert nothing.value.message == "Servable not found for request: Latest(digits). No model is served."


def test_model_root_picks_up_new_models(runtime, tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    add_version(root / "a", 1)
    manager = ModelManager(Repository([], roots=[root]), runtime, poll_seconds=0)
    manager.poll()
    assert manager.model_names() == ["a"]
    (root / "b").mkdir()
    add_version(root / "b", 7)
    manager.poll()
    assert manager.model_names() == ["a", "b"]
    assert manager.chosen_version("b") == 7
    shutil.rmtree(root / "a")
    manager.poll()
    assert manager.model_names() == ["b"]
    manager.stop()


def test_background_polling_thread(runtime, tmp_path):
    add_version(tmp_path, 1)
    config = ModelConfig(name="digits", base_path=tmp_path, policy=VersionPolicy(PolicyKind.ALL))
    manager = ModelManager(Repository([config]), runtime, poll_seconds=0.05)
    manager.start()
    assert manager.wait_until_ready(timeout=60)
    add_version(tmp_path, 2)
    deadline = threading.Event()
    for _ in range(600):
        if manager.chosen_version("digits") == 2:
            break
        deadline.wait(0.05)
    assert manager.chosen_version("digits") == 2
    manager.stop()


def test_choose_pins_a_version_and_remembers_it(runtime, tmp_path):
    from appliance.preferences import PreferenceStore

    base = tmp_path / "digits"
    base.mkdir()
    add_version(base, 1)
    add_version(base, 2, source=2)
    store = PreferenceStore(tmp_path / "preferences.json")
    manager = ModelManager(Repository([ModelConfig("digits", base, VersionPolicy(PolicyKind.ALL))]), runtime, 0, store)
    manager.poll()
    changes = []
    manager.subscribe(lambda: changes.append(manager.chosen_version("digits")))
    assert manager.choose("digits", 1) == 1
    assert manager.chosen_version("digits") == 1 and changes[-1] == 1
    with manager.acquire("digits") as handle:
        assert handle.version == 1
    add_version(base, 3)
    manager.poll()
    assert manager.chosen_version("digits") == 1, "a new version does not override the user's choice"
    manager.stop()

    again = ModelManager(
        Repository([ModelConfig("digits", base, VersionPolicy(PolicyKind.ALL))]),
        runtime,
        0,
        PreferenceStore(tmp_path / "preferences.json"),
    )
    again.poll()
    assert again.chosen_version("digits") == 1
    shutil.rmtree(base / "1")
    again.poll()
    assert again.chosen_version("digits") == 3, "a chosen version that left the disk falls back to the newest"
    again.stop()


def test_choose_loads_first_and_a_failed_load_keeps_the_previous_choice(runtime, tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 2)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"corrupt")
    manager = make_manager(runtime, tmp_path, policy=VersionPolicy(PolicyKind.SPECIFIC, versions=(2,)))
    assert states(manager) == {2: State.AVAILABLE}
    assert manager.choose("digits", 1) == 1
    assert states(manager)[1] is State.AVAILABLE and manager.chosen_version("digits") == 1
    with pytest.raises(FailedPrecondition, match="version 3 of model digits cannot be served"):
        manager.choose("digits", 3)
    assert manager.chosen_version("digits") == 1
    with pytest.raises(NotFound, match="Could not find version 7 of model digits"):
        manager.choose("digits", 7)
    with pytest.raises(NotFound, match="Could not find any versions of model other"):
        manager.choose("other", 1)
    manager.choose("digits", 2)
    manager.poll()
    assert states(manager)[1] is State.END, "the previous choice is retired once nothing pins it"
    manager.stop()


def test_loading_progress_is_reported_while_a_poll_loads(runtime, tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 2)
    manager = ModelManager(Repository([ModelConfig("digits", tmp_path, VersionPolicy(PolicyKind.ALL))]), runtime, 0)
    seen = []
    manager.subscribe(lambda: seen.append(manager.loading_progress()))
    manager.poll()
    described = {p.describe() for p in seen if p is not None}
    assert described == {"loading digits v2 (1/2)", "loading digits v1 (2/2)"}
    assert manager.loading_progress() is None
    manager.stop()


def probabilities(servable) -> np.ndarray:
    return servable.predict("serving_default", {"pixels": np.full((1, 64), 8.0, np.float32)})["probabilities"]


def replace_files(version_dir: Path, source: int) -> None:
    """Put a bundled digits version's files in place of ``version_dir``'s (as a redeploy would)."""
    shutil.rmtree(version_dir)
    shutil.copytree(MODELS / "digits" / str(source), version_dir)


def test_reload_swaps_in_the_files_on_disk_and_closes_the_old_servable_after_its_last_request(runtime, tmp_path):
    add_version(tmp_path, 1, source=1)
    manager = make_manager(runtime, tmp_path)
    changes = []
    manager.subscribe(lambda: changes.append("changed"))
    held = manager.acquire("digits")
    old_answer = probabilities(held.servable)
    replace_files(tmp_path / "1", source=2)
    reloader = threading.Thread(target=manager.reload, args=("digits",))
    reloader.start()
    reloader.join(timeout=2)
    assert reloader.is_alive(), "the old servable must stay open while a request holds it"
    with manager.acquire("digits") as handle:
        assert handle.version == 1 and handle.servable is not held.servable, "new requests get the new servable"
        new_answer = probabilities(handle.servable)
    assert not np.allclose(new_answer, old_answer), "the reload read the files on disk"
    assert np.allclose(probabilities(held.servable), old_answer), "the held request still runs on the old one"
    held.release()
    reloader.join(timeout=30)
    assert not reloader.is_alive()
    with pytest.raises(ServingError, match="closed"):
        probabilities(held.servable)
    assert states(manager) == {1: State.AVAILABLE} and changes
    manager.stop()


def test_an_unloaded_versions_graph_is_freed_at_once_not_at_some_later_garbage_collection(runtime, tmp_path):
    """A TF graph is a web of reference cycles: left to the collector, each reload's old graph lingered in RSS."""
    add_version(tmp_path, 1)
    manager = make_manager(runtime, tmp_path)
    with manager.acquire("digits") as handle:
        old_graph = weakref.ref(handle.servable._session.graph)
    del handle  # as a finished request drops its handle
    gc.disable()  # only the manager's own collection may free it
    try:
        manager.reload("digits")
        assert old_graph() is None
    finally:
        gc.enable()
        manager.stop()


def test_failed_reload_keeps_the_old_servable_serving_and_reports_the_error(runtime, tmp_path):
    add_version(tmp_path, 1)
    add_version(tmp_path, 2, source=2)
    manager = make_manager(runtime, tmp_path)
    with manager.acquire("digits", version=2) as handle, manager.acquire("digits", version=1) as other:
        before, other_before = handle.servable, other.servable
    (tmp_path / "2" / "saved_model.pb").write_bytes(b"no longer a SavedModel")
    with pytest.raises(ServingError, match="version 2 of model digits could not be reloaded") as failed:
        manager.reload("digits")
    assert failed.value.code is not Code.OK
    with manager.acquire("digits", version=2) as handle:
        assert handle.servable is before
        assert probabilities(handle.servable).shape == (1, 10)
    with manager.acquire("digits", version=1) as handle:
        assert handle.servable is not other_before, "the other version was reloaded all the same"
    assert states(manager) == {2: State.AVAILABLE, 1: State.AVAILABLE}
    manager.stop()


def test_reload_of_an_unknown_model_or_one_without_available_versions_is_an_error(runtime, tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"corrupt")
    manager = make_manager(runtime, tmp_path)
    with pytest.raises(NotFound, match="Could not find any versions of model other"):
        manager.reload("other")
    with pytest.raises(FailedPrecondition, match="no AVAILABLE version"):
        manager.reload("digits")
    manager.stop()
