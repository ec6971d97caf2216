"""The single-instance lock and the discovery file, with real processes holding the lock and dying by kill -9."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import stat
import subprocess
import sys

import pytest

from appliance.instance import (
    Discovery,
    InstanceLock,
    find_running_instance,
    read_discovery,
    remove_discovery,
    write_discovery,
)

from .conftest import REPO

HOLD_THE_LOCK = """
import sys
from pathlib import Path
from appliance.instance import Discovery, InstanceLock, write_discovery

lock_path, discovery_path = map(Path, sys.argv[1:3])
if not InstanceLock(lock_path).acquire():
    sys.exit("the lock was taken")
write_discovery(
    discovery_path, Discovery.for_this_process("http://127.0.0.1:8501", 8501, "0.1.0", "127.0.0.1:8500", 8500)
)
print("holding", flush=True)
sys.stdin.read()  # hold the lock until killed
"""


@pytest.fixture
def lock_path(tmp_path):
    return tmp_path / "run" / "appliance.lock"


@pytest.fixture
def discovery_path(tmp_path):
    return tmp_path / "run" / "appliance.json"


@pytest.fixture
def holder(tmp_path, lock_path, discovery_path):
    """Another process that holds the lock and has published its discovery file."""
    script = tmp_path / "hold_the_lock.py"
    script.write_text(HOLD_THE_LOCK)
    process = subprocess.Popen(
        [sys.executable, str(script), str(lock_path), str(discovery_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    ready, _, _ = select.select([process.stdout], [], [], 30)
    assert ready and process.stdout.readline() == "holding\n", "the holder did not take the lock"
    yield process
    process.kill()
    process.wait(timeout=10)
    process.stdin.close()
    process.stdout.close()


def test_another_live_process_holds_the_lock_and_is_found(holder, lock_path, discovery_path):
    assert not InstanceLock(lock_path).acquire()
    running = find_running_instance(lock_path, discovery_path)
    assert running is not None
    assert (running.pid, running.url, running.port, running.version, running.grpc_address, running.grpc_port) == (
        holder.pid,
        "http://127.0.0.1:8501",
        8501,
        "0.1.0",
        "127.0.0.1:8500",
        8500,
    )


def test_after_kill_9_the_lock_is_free_and_the_discovery_file_is_stale(holder, lock_path, discovery_path, caplog):
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert read_discovery(discovery_path) is not None  # a crash leaves the file behind
    with caplog.at_level(logging.INFO, logger="appliance.instance"):
        assert find_running_instance(lock_path, discovery_path) is None
    assert "stale" in caplog.text and str(discovery_path) in caplog.text
    lock = InstanceLock(lock_path)
    assert lock.acquire()
    lock.release()


def test_lock_is_exclusive_until_released(lock_path):
    first, second = InstanceLock(lock_path), InstanceLock(lock_path)
    assert first.acquire() and first.acquire()
    assert not second.acquire()
    first.release()
    first.release()
    assert second.acquire()
    second.release()
    assert stat.S_IMODE(lock_path.stat().st_mode) == 0o600


def test_nothing_running(lock_path, discovery_path, caplog):
    with caplog.at_level(logging.INFO, logger="appliance.instance"):
        assert find_running_instance(lock_path, discovery_path) is None
    assert not caplog.records


def test_a_held_lock_beside_a_dead_process_discovery_is_stale(lock_path, discovery_path, caplog):
    finished = subprocess.Popen([sys.executable, "-c", ""])
    finished.wait(timeout=30)
    gone = Discovery("http://127.0.0.1:1", 1, finished.pid, "0.1.0", "2024-01-01T00:00:00+00:00")
    write_discovery(discovery_path, gone)
    lock = InstanceLock(lock_path)
    assert lock.acquire()
    try:
        with caplog.at_level(logging.INFO, logger="appliance.instance"):
            assert find_running_instance(lock_path, discovery_path) is None
        assert str(finished.pid) in caplog.text
    finally:
        lock.release()


def test_discovery_round_trip(discovery_path):
    discovery = Discovery.for_this_process("http://127.0.0.1:8501", 8501, "0.1.0", "127.0.0.1:8500", 8500)
    write_discovery(discovery_path, discovery)
    assert read_discovery(discovery_path) == discovery
    assert discovery.pid == os.getpid() and discovery.started_at.endswith("+00:00")
    assert stat.S_IMODE(discovery_path.stat().st_mode) == 0o600
    remove_discovery(discovery_path)
    remove_discovery(discovery_path)
    assert read_discovery(discovery_path) is None


def test_discovery_with_either_api_off(discovery_path):
    for discovery in (
        Discovery.for_this_process(None, None, "0.1.0", "127.0.0.1:8500", 8500),
        Discovery.for_this_process("http://127.0.0.1:8501", 8501, "0.1.0", None, None),
    ):
        write_discovery(discovery_path, discovery)
        assert read_discovery(discovery_path) == discovery
    document = json.loads(discovery_path.read_text())
    assert document["grpc_port"] is None and document["grpc_address"] is None


def test_discovery_file_of_an_appliance_without_grpc_reads_as_grpc_off(discovery_path):
    discovery_path.parent.mkdir(parents=True)
    older = {"url": "http://127.0.0.1:8501", "port": 8501, "pid": 1, "version": "0.1.0", "started_at": "2024"}
    discovery_path.write_text(json.dumps(older))
    found = read_discovery(discovery_path)
    assert found is not None and (found.url, found.grpc_address, found.grpc_port) == (older["url"], None, None)


@pytest.mark.parametrize(
    "content",
    [
        b"\xff garbage",
        b'{"url": "http://127.0.0.1:8501", "port": 8501',
        b"[]",
        b'{"url": "http://127.0.0.1:8501", "port": "8501", "pid": 1, "version": "0.1.0", "started_at": "x"}',
        b'{"url": "http://127.0.0.1:8501", "port": 8501, "pid": 1, "version": "0.1.0"}',
    ],
    ids=["garbage", "truncated", "list", "port-text", "field-missing"],
)
def test_a_corrupt_discovery_file_reads_as_none(discovery_path, content):
    discovery_path.parent.mkdir()
    discovery_path.write_bytes(content)
    assert read_discovery(discovery_path) is None
