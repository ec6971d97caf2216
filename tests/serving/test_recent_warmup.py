"""Warm-up from recent requests: the snapshot of a model's newest recorded requests and its lenient replay.

Requests are recorded by a real request log from real answers of a real SavedModel (the counter model of
tests/counter_models.py, whose variable adds up the inputs it ran), versions load through the real model manager
and TensorFlow runtime, and what a version ran is read back from its own variable.
"""

from __future__ import annotations

import shutil
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from appliance.config import ModelConfig, PolicyKind, VersionPolicy
from appliance.errors import FailedPrecondition, InvalidArgument
from appliance.preferences import PreferenceStore
from appliance.serving.manager import ModelManager, State
from appliance.serving.recent_warmup import DEFAULT_LIMIT, LastReplay, RecentRequestWarmup
from appliance.serving.repository import Repository
from appliance.serving.request_log import Limits, RequestLog
from appliance.serving.runtime.local_tf import LocalTFRuntime
from appliance.serving.runtime.warmup import read_prediction_logs
from tests.compare_models import write_request_log
from tests.counter_models import build_counter_model


@pytest.fixture(scope="module")
def runtime():
    return LocalTFRuntime("cpu")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Versions 1 and 2 of the counter model, built once; tests copy them."""
    base = tmp_path_factory.mktemp("built") / "counter"
    for version in (1, 2):
        build_counter_model(base, version)
    return base


@pytest.fixture
def request_log(tmp_path):
    # Small files, so that the newest requests span several of them.
    recorder = RequestLog(tmp_path / "request-log", Limits(file_bytes=2048), flush_interval=0.05)
    recorder.start()
    recorder.set_sampling("counter", 1.0)
    yield recorder
    recorder.stop()


@pytest.fixture
def warmup(tmp_path, request_log):
    return RecentRequestWarmup(request_log, PreferenceStore(tmp_path / "preferences.json"), root=tmp_path / "warmup")


def record(request_log: RequestLog, servable, values: list[float], version: int = 1) -> None:
    """Send each of ``values`` as one request x=[value] to ``servable`` and record it, as the APIs do."""
    for value in values:
        inputs = {"x": np.array([value], np.float32)}
        request_log.record_predict(
            "counter", version, "serving_default", inputs, servable.predict("serving_default", inputs)
        )
    assert request_log.flush()


def count(servable) -> float:
    return float(servable.predict("read", {"x": np.zeros([1], np.float32)})["count"][0])


def snapshot_inputs(path: Path) -> list[float]:
    return [float(tf.make_ndarray(r.predict_log.request.inputs["x"])[0]) for r in read_prediction_logs(path)]


def test_the_snapshot_holds_the_newest_requests_in_order_without_answers(runtime, built, request_log, warmup, tmp_path):
    servable = runtime.load(built / "1")
    sent = [float(i) for i in range(1, 41)]
    record(request_log, servable, sent)
    assert len(request_log.files("counter")) > 3  # the newest ten span files

    assert warmup.set("counter", 10) == 10
    path = warmup.snapshot_path("counter")
    assert path.is_relative_to(tmp_path / "warmup") and path.name == "tf_serving_warmup_requests"
    assert snapshot_inputs(path) == sent[-10:]
    records = list(read_prediction_logs(path))
    assert all(not r.predict_log.HasField("response") for r in records)
    assert warmup.records("counter") == 10 and warmup.limit("counter") == 10


def test_the_snapshot_is_owner_only_and_replaced_whole(runtime, built, request_log, warmup):
    servable = runtime.load(built / "1")
    record(request_log, servable, [1.0] * 30)
    warmup.set("counter", 25)
    path = warmup.snapshot_path("counter")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == stat.S_IMODE(warmup.root.stat().st_mode) == 0o700

    seen, stop = [], threading.Event()

    def read_while_refreshing():
        while not stop.is_set():
            seen.append(len(list(read_prediction_logs(path))))  # a half-written file would be short, or raise

    reader = threading.Thread(target=read_while_refreshing)
    reader.start()
    try:
        for _ in range(20):
            warmup.refresh("counter")
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) == {25}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_turning_it_on_with_nothing_recorded_is_refused_and_off_removes_the_snapshot(
    runtime, built, request_log, warmup
):
    with pytest.raises(FailedPrecondition, match="no recorded requests of model counter"):
        warmup.set("counter", 100)
    assert not warmup.enabled("counter") and not warmup.snapshot_path("counter").exists()

    record(request_log, runtime.load(built / "1"), [1.0, 2.0])
    assert warmup.set("counter", 100) == 2 and warmup.enabled("counter")
    assert warmup.set("counter", 0) == 0
    assert not warmup.enabled("counter") and not warmup.snapshot_path("counter").exists()
    with pytest.raises(InvalidArgument, match="from 1 to 1000"):
        warmup.set("counter", 1001)


def test_the_setting_is_remembered_and_settings_toml_turns_it_on_unless_the_user_turned_it_off(
    runtime, built, request_log, tmp_path
):
    record(request_log, runtime.load(built / "1"), [1.0])
    preferences = tmp_path / "preferences.json"
    RecentRequestWarmup(request_log, PreferenceStore(preferences), root=tmp_path / "w").set("counter", 7)
    again = RecentRequestWarmup(request_log, PreferenceStore(preferences), root=tmp_path / "w")
    assert again.limit("counter") == 7

    configured = RecentRequestWarmup(request_log, PreferenceStore(tmp_path / "other.json"), ["counter"], tmp_path / "w")
    assert configured.limit("counter") == DEFAULT_LIMIT
    configured.set("counter", 0)
    assert not configured.enabled("counter")


def test_a_new_version_refreshes_the_snapshot_then_replays_it_after_its_own_warmup(
    runtime, built, request_log, warmup, tmp_path
):
    base = tmp_path / "models" / "counter"
    shutil.copytree(built / "1", base / "1")
    config = ModelConfig(name="counter", base_path=base, policy=VersionPolicy(PolicyKind.ALL))
    manager = ModelManager(Repository([config]), runtime, poll_seconds=0, recent_warmup=warmup)
    manager.poll()
    try:
        with manager.acquire("counter", 1) as handle:
            record(request_log, handle.servable, [1.0] * 5)
        warmup.set("counter", DEFAULT_LIMIT)
        with manager.acquire("counter", 1) as handle:
            record(request_log, handle.servable, [2.0] * 3)  # after the snapshot was written: the refresh adds them

        shutil.copytree(built / "2", base / "2")
        manager.poll()
        assert {s.version: s.state for s in manager.status("counter")}[2] is State.AVAILABLE
        assert snapshot_inputs(warmup.snapshot_path("counter")) == [1.0] * 5 + [2.0] * 3
        with manager.acquire("counter", 2) as handle:
            assert count(handle.servable) == 5 * 1.0 + 3 * 2.0  # it ran each recorded request once before serving
        assert (warmup.last_replay["counter"].version, warmup.last_replay["counter"].replayed) == (2, 8)

        request_log.delete("counter")  # nothing recorded now: the next version keeps the last snapshot
        shutil.copytree(built / "2", base / "3")
        manager.poll()
        with manager.acquire("counter", 3) as handle:
            assert count(handle.servable) == 11.0
    finally:
        manager.stop()


def test_records_a_version_refuses_are_skipped_and_counted_never_failing_the_load(runtime, built, warmup, tmp_path):
    requests = [
        {"x": np.array([1.0], np.float32)},
        {"pixels": np.zeros([1, 64], np.float32)},  # an input the version does not have
        {"x": np.array([[1.0, 2.0]], np.float32)},  # a shape it refuses
        {"x": np.array([3.0, 4.0], np.float32)},
    ]
    path = warmup.snapshot_path("counter")
    path.parent.mkdir(parents=True)
    write_request_log(path, "counter", requests)
    warmup.set("counter", 100)  # nothing recorded: on with the snapshot that is there

    base = tmp_path / "models" / "counter"
    shutil.copytree(built / "1", base / "1")
    manager = ModelManager(Repository([ModelConfig(name="counter", base_path=base)]), runtime, recent_warmup=warmup)
    manager.poll()
    try:
        assert [s.state for s in manager.status("counter")] == [State.AVAILABLE]
        with manager.acquire("counter", 1) as handle:
            assert count(handle.servable) == 1.0 + 3.0 + 4.0  # the accepted records ran, once each
        assert warmup.last_replay["counter"] == LastReplay(version=1, replayed=2, skipped=2)
    finally:
        manager.stop()

    warmup.set("counter", 1)  # the limit caps the replay too
    assert warmup.replay("counter", 1, runtime.load(built / "1")) == (1, 0)


def test_a_model_it_is_off_for_replays_nothing(runtime, built, warmup):
    servable = runtime.load(built / "1")
    before = count(servable)
    warmup.before_load("counter")
    assert warmup.replay("counter", 1, servable) == (0, 0) and count(servable) == before
    assert not warmup.snapshot_path("counter").exists()
