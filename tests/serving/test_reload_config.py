"""Replacing the configured models at run time (TF Serving's ReloadConfig), and how versions load.

A real manager and the real TF runtime on real SavedModels: copies of the bundled digits model in
tmp_path (ours, so tests may break them) and TF Serving's test models used in place. Expected
outputs come from running the same SavedModel in-process with TensorFlow.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from appliance.config import ModelConfig, PolicyKind, VersionPolicy
from appliance.errors import Code, FailedPrecondition, InvalidArgument, NotFound
from appliance.serving.manager import LoadOptions, ModelManager, ModelsNotAvailable, State
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ..conftest import MODELS

PIXELS = np.full((1, 64), 8.0, np.float32)
X = np.array([[1.0], [5.0]], np.float32)
ALL = VersionPolicy(PolicyKind.ALL)
LABEL_REFUSED = "Request to assign label to version {} of model {}, which is not currently available for inference"


@pytest.fixture(scope="module")
def runtime():
    return LocalTFRuntime(device="cpu", warmup=False)


def digits_versions(base: Path, *sources: int) -> Path:
    """``base`` holding versions 1..n copied from the bundled digits versions ``sources``."""
    for number, source in enumerate(sources, 1):
        shutil.copytree(MODELS / "digits" / str(source), base / str(number))
    return base


def digits_probabilities(version_dir: Path) -> np.ndarray:
    """What the SavedModel in ``version_dir`` answers for PIXELS, run by TensorFlow directly."""
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return signature(pixels=tf.constant(PIXELS))["probabilities"].numpy()


def half_plus_two(version_dir: Path) -> np.ndarray:
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return signature(x=tf.constant(X))["y"].numpy()


def predict(manager: ModelManager, name: str, **spec) -> tuple[int, np.ndarray]:
    with manager.acquire(name, **spec) as handle:
        if name.startswith("digits"):
            return handle.version, handle.servable.predict("serving_default", {"pixels": PIXELS})["probabilities"]
        return handle.version, handle.servable.predict("serving_default", {"x": X})["y"]


def states(manager: ModelManager, name: str) -> dict[int, State]:
    return {s.version: s.state for s in manager.status(name)}


def make_manager(runtime, configs, roots=(), **options) -> ModelManager:
    manager = ModelManager(Repository(configs, roots), runtime, poll_seconds=0, **options)
    manager.poll()
    return manager


def test_a_new_model_is_loaded_and_a_removed_one_unloaded_after_its_last_request(runtime, tmp_path, tfs_testdata):
    digits = ModelConfig("digits", digits_versions(tmp_path / "digits", 1))
    manager = make_manager(runtime, [digits])
    two = tfs_testdata / "saved_model_half_plus_two_cpu"
    manager.reload_config([digits, ModelConfig("half_plus_two", two)])
    assert sorted(manager.model_names()) == ["digits", "half_plus_two"]
    version, y = predict(manager, "half_plus_two")
    assert version == 123 and np.allclose(y, half_plus_two(two / "00000123"))

    held = manager.acquire("digits")  # a request in flight on the model about to go
    removal = threading.Thread(target=manager.reload_config, args=([ModelConfig("half_plus_two", two)],))
    removal.start()
    outputs = held.servable.predict("serving_default", {"pixels": PIXELS})["probabilities"]
    assert np.allclose(outputs, digits_probabilities(tmp_path / "digits" / "1"))
    held.release()
    removal.join(timeout=120)
    assert not removal.is_alive()
    assert manager.model_names() == ["half_plus_two"]
    with pytest.raises(NotFound, match=r"Servable not found for request: Latest\(digits\)"):
        manager.acquire("digits")
    manager.stop()


def test_models_under_a_model_root_stay(runtime, tmp_path, tfs_testdata):
    root = tmp_path / "root"
    digits_versions(root / "digits_in_root", 1)
    two = ModelConfig("half_plus_two", tfs_testdata / "saved_model_half_plus_two_cpu")
    manager = make_manager(runtime, [two], roots=[root])
    manager.reload_config([])
    assert manager.model_names() == ["digits_in_root"]
    assert predict(manager, "digits_in_root")[0] == 1
    manager.stop()


def test_a_policy_change_loads_the_new_versions_and_keeps_the_served_one(runtime, tmp_path):
    base = digits_versions(tmp_path / "digits", 1, 2)
    manager = make_manager(runtime, [ModelConfig("digits", base)])  # latest 1
    assert states(manager, "digits") == {2: State.AVAILABLE}
    with manager.acquire("digits") as before:
        served = before.servable
    manager.reload_config([ModelConfig("digits", base, VersionPolicy(PolicyKind.SPECIFIC, versions=(1, 2)))])
    assert states(manager, "digits") == {2: State.AVAILABLE, 1: State.AVAILABLE}
    with manager.acquire("digits", version=2) as after:
        assert after.servable is served, "version 2 was kept, not loaded again"
    version, outputs = predict(manager, "digits", version=1)
    assert version == 1 and np.allclose(outputs, digits_probabilities(base / "1"))
    manager.reload_config([ModelConfig("digits", base)])
    assert states(manager, "digits") == {2: State.AVAILABLE, 1: State.END}
    manager.stop()


def test_a_new_base_path_is_swapped_in_and_a_broken_one_keeps_the_old_files_serving(runtime, tmp_path):
    old = digits_versions(tmp_path / "old", 1)
    new = digits_versions(tmp_path / "new", 2)  # version 1 there holds the other weights
    assert not np.allclose(digits_probabilities(old / "1"), digits_probabilities(new / "1"))
    manager = make_manager(runtime, [ModelConfig("digits", old)])
    held = manager.acquire("digits")
    mover = threading.Thread(target=manager.reload_config, args=([ModelConfig("digits", new)],))
    mover.start()
    outputs = held.servable.predict("serving_default", {"pixels": PIXELS})["probabilities"]
    assert np.allclose(outputs, digits_probabilities(old / "1"))
    held.release()
    mover.join(timeout=120)
    assert np.allclose(predict(manager, "digits")[1], digits_probabilities(new / "1"))
    assert manager.summary("digits").base_path == new

    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    manager.reload_config([ModelConfig("digits", broken.parent)])
    assert states(manager, "digits") == {1: State.AVAILABLE}
    assert np.allclose(predict(manager, "digits")[1], digits_probabilities(new / "1"))
    manager.stop()


def test_labels_change_with_the_config(runtime, tfs_testdata):
    base = tfs_testdata / "saved_model_half_plus_two_2_versions"
    manager = make_manager(runtime, [ModelConfig("two", base, ALL)])
    manager.reload_config([ModelConfig("two", base, ALL, labels={"stable": 123, "canary": 124})])
    assert predict(manager, "two", label="stable")[0] == 123
    assert predict(manager, "two", label="canary")[0] == 124
    manager.reload_config([ModelConfig("two", base, ALL, labels={"stable": 124})])
    assert predict(manager, "two", label="stable")[0] == 124
    with pytest.raises(InvalidArgument, match="Unrecognized servable version label: canary"):
        manager.acquire("two", label="canary")
    manager.stop()


def test_a_label_may_only_name_an_available_version(runtime, tfs_testdata):
    base = tfs_testdata / "saved_model_half_plus_two_2_versions"
    only_123 = VersionPolicy(PolicyKind.SPECIFIC, versions=(123,))
    manager = make_manager(runtime, [ModelConfig("two", base, only_123)])
    with pytest.raises(FailedPrecondition) as refused:
        manager.reload_config([ModelConfig("two", base, ALL, labels={"canary": 124})])
    assert refused.value.message == LABEL_REFUSED.format(124, "two")
    assert states(manager, "two") == {123: State.AVAILABLE}, "the old config stays in force"
    assert manager.summary("two").labels == {}
    with pytest.raises(FailedPrecondition, match="version 1 of model new"):
        manager.reload_config([ModelConfig("new", base, ALL, labels={"stable": 1})])
    manager.stop()


def test_allow_version_labels_for_unavailable_models_lets_a_new_label_name_any_version(runtime, tfs_testdata):
    base = tfs_testdata / "saved_model_half_plus_two_2_versions"
    only_123 = VersionPolicy(PolicyKind.SPECIFIC, versions=(123,))
    manager = make_manager(runtime, [ModelConfig("two", base, only_123)], allow_labels_for_unavailable=True)
    manager.reload_config([ModelConfig("two", base, ALL, labels={"canary": 124})])
    assert predict(manager, "two", label="canary")[0] == 124
    manager.reload_config([ModelConfig("two", base, only_123, labels={"canary": 124})])  # same label, same version
    assert states(manager, "two") == {124: State.END, 123: State.AVAILABLE}
    with pytest.raises(FailedPrecondition) as moved:  # an existing label may not move to an unavailable version
        manager.reload_config([ModelConfig("two", base, ALL, labels={"canary": 125})])
    assert moved.value.message == LABEL_REFUSED.format(125, "two")
    manager.stop()


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda base: [ModelConfig("a", base), ModelConfig("a", base)], "Illegal to list model a multiple times"),
        (lambda base: [ModelConfig("a", base / "nowhere")], "does not exist"),
        (lambda base: [ModelConfig("a", base, platform="pytorch")], "model_platform 'pytorch' is not supported"),
    ],
)
def test_an_invalid_config_is_refused_and_the_old_one_stays(runtime, tmp_path, bad, message):
    base = digits_versions(tmp_path / "digits", 1)
    manager = make_manager(runtime, [ModelConfig("digits", base)])
    with pytest.raises(InvalidArgument, match=message):
        manager.reload_config(bad(tmp_path))
    assert manager.model_names() == ["digits"] and predict(manager, "digits")[0] == 1
    manager.poll()
    assert manager.model_names() == ["digits"], "the repository kept the old config too"
    manager.stop()


def test_a_new_model_that_fails_to_load_is_an_error_in_tf_servings_words_and_its_config_stays(runtime, tmp_path):
    base = digits_versions(tmp_path / "digits", 1)
    broken = tmp_path / "broken" / "3"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    manager = make_manager(runtime, [ModelConfig("digits", base)])
    with pytest.raises(ModelsNotAvailable) as failed:
        manager.reload_config([ModelConfig("digits", base), ModelConfig("broken", broken.parent)])
    assert failed.value.code is Code.UNKNOWN
    [status] = manager.status("broken")
    assert status.state is State.END and status.error is not None
    assert failed.value.message == (
        "1 model(s) did not become available: {"
        f"{{{{name: broken version: 3}} due to error: {status.error.code.name}: {status.error.message}}}, }}"
    )
    assert sorted(manager.model_names()) == ["broken", "digits"]
    manager.stop()


class _OnLogMessage(logging.Handler):
    """Runs ``action`` when a log record's message contains ``text``."""

    def __init__(self, text: str, action):
        super().__init__()
        self.text, self.action = text, action

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.action()


@pytest.mark.parametrize("retries, loads", [(2, True), (1, False)])
def test_a_failed_load_is_retried(runtime, tmp_path, retries, loads):
    base = tmp_path / "digits"
    shutil.copytree(MODELS / "digits" / "1", base / "1")
    graph = (base / "1" / "saved_model.pb").rename(tmp_path / "saved_model.pb")  # a copy not finished yet
    finish = _OnLogMessage("retry 2 of", lambda: graph.rename(base / "1" / "saved_model.pb"))
    logger = logging.getLogger("appliance.serving.manager")
    logger.addHandler(finish)
    try:
        options = LoadOptions(retries=retries, retry_interval_seconds=0)
        manager = make_manager(runtime, [ModelConfig("digits", base)], loading=options)
    finally:
        logger.removeHandler(finish)
    if loads:  # failed twice, then found the file completed before its third try
        assert states(manager, "digits") == {1: State.AVAILABLE}
        assert np.allclose(predict(manager, "digits")[1], digits_probabilities(MODELS / "digits" / "1"))
    else:
        [status] = manager.status("digits")
        assert status.state is State.END and status.error is not None and status.error.code is Code.NOT_FOUND
    manager.stop()


def test_num_load_threads_loads_versions_at_once_and_reports_progress(runtime, tmp_path):
    base = digits_versions(tmp_path / "digits", 1, 2, 1, 2)
    manager = ModelManager(
        Repository([ModelConfig("digits", base, ALL)]), runtime, poll_seconds=0, loading=LoadOptions(threads=3)
    )
    together = threading.Barrier(3, timeout=120)  # passed only by three loads under way at once
    passed: set[str] = set()
    progress = []

    def listener() -> None:
        progress.append(manager.loading_progress())
        thread = threading.current_thread().name
        if thread.startswith("appliance-load") and thread not in passed:
            together.wait()
            passed.add(thread)

    manager.subscribe(listener)
    manager.poll()
    assert len(passed) == 3 and not together.broken
    assert states(manager, "digits") == dict.fromkeys([4, 3, 2, 1], State.AVAILABLE)
    shown = [p for p in progress if p is not None]
    assert {(p.model, p.total) for p in shown} == {("digits", 4)} and {p.index for p in shown} <= {1, 2, 3, 4}
    assert manager.loading_progress() is None
    for version in (1, 2, 3, 4):
        source = 1 if version % 2 else 2
        outputs = predict(manager, "digits", version=version)[1]
        assert np.allclose(outputs, digits_probabilities(MODELS / "digits" / str(source)))
    manager.stop()
