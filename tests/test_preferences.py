"""The preferences file: round trips, bad files read as defaults, and writes that survive kill -9."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from appliance.preferences import Preferences, PreferenceStore, load_preferences, save_preferences

from .conftest import REPO

# Two contents large enough (a few KiB) that a kill can land in the middle of writing one.
FIRST = {f"model_{n}": 1 for n in range(300)}
SECOND = {f"model_{n}": 2 for n in range(300)}
TEMP_FILE = re.compile(r"\.preferences\.json\..+\.tmp")

SAVE_FOREVER = f"""
import sys
from pathlib import Path
from appliance.preferences import Preferences, save_preferences

path = Path(sys.argv[1])
contents = [Preferences({FIRST!r}), Preferences({SECOND!r})]
save_preferences(path, contents[0])
print("saving", flush=True)
saves = 0
while True:
    saves += 1
    save_preferences(path, contents[saves % 2])
"""


def test_round_trip(tmp_path):
    path = tmp_path / "config" / "preferences.json"
    save_preferences(path, Preferences(chosen_versions={"digits": 1, "iris": 2}))
    assert load_preferences(path) == Preferences(chosen_versions={"digits": 1, "iris": 2})
    assert json.loads(path.read_text())["format"] == 1


def test_the_file_is_owner_only(tmp_path):
    path = tmp_path / "preferences.json"
    save_preferences(path, Preferences())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_missing_file_means_defaults_without_a_warning(tmp_path, caplog):
    assert load_preferences(tmp_path / "preferences.json") == Preferences()
    assert not caplog.records


def test_keys_from_a_later_version_are_ignored(tmp_path):
    path = tmp_path / "preferences.json"
    path.write_text('{"format": 1, "chosen_versions": {"digits": 1}, "theme": "dark"}')
    assert load_preferences(path) == Preferences(chosen_versions={"digits": 1})


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe\x00 not text at all",
        b'{"format": 1, "chosen_versions": {"digits": 1, "iris"',  # truncated
        b"",
        b"[1, 2]",
        b'{"format": 1, "chosen_versions": [1]}',
        b'{"format": 1, "chosen_versions": {"digits": "two"}}',
        b'{"format": 1, "chosen_versions": {"digits": true}}',
        b'{"format": 1, "chosen_versions": {"digits": -1}}',
        b'{"format": 99, "chosen_versions": {}}',
        b'{"chosen_versions": {"digits": 1}}',
    ],
    ids=[
        "garbage",
        "truncated",
        "empty",
        "list",
        "versions-list",
        "version-text",
        "version-bool",
        "version-negative",
        "future-format",
        "no-format",
    ],
)
def test_a_bad_file_means_defaults_and_a_warning_naming_it(tmp_path, caplog, content):
    path = tmp_path / "preferences.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="appliance.preferences"):
        assert load_preferences(path) == Preferences()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert str(path) in caplog.records[0].getMessage()


def test_an_unreadable_path_means_defaults_and_a_warning(tmp_path, caplog):
    (tmp_path / "preferences.json").mkdir()
    assert load_preferences(tmp_path / "preferences.json") == Preferences()
    assert "preferences.json" in caplog.text


def test_store_remembers_forgets_and_persists(tmp_path):
    path = tmp_path / "preferences.json"
    store = PreferenceStore(path)
    assert store.chosen_version("digits") is None
    store.set_chosen_version("digits", 1)
    store.set_chosen_version("iris", 2)
    store.set_chosen_version("iris", None)
    store.set_chosen_version("never-chosen", None)
    assert store.chosen_version("digits") == 1 and store.chosen_version("iris") is None
    assert PreferenceStore(path).snapshot() == Preferences(chosen_versions={"digits": 1})


def test_a_snapshot_is_a_copy(tmp_path):
    store = PreferenceStore(tmp_path / "preferences.json")
    store.snapshot().chosen_versions["digits"] = 7
    assert store.chosen_version("digits") is None


def test_store_rejects_what_is_not_a_version(tmp_path):
    with pytest.raises(ValueError):
        PreferenceStore(tmp_path / "preferences.json").set_chosen_version("digits", "2")


def test_a_failed_save_changes_nothing(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    store = PreferenceStore(tmp_path / "not-a-folder" / "preferences.json")
    with pytest.raises(OSError):
        store.set_chosen_version("digits", 1)
    assert store.chosen_version("digits") is None


def test_store_is_safe_from_many_threads(tmp_path):
    path = tmp_path / "preferences.json"
    store = PreferenceStore(path)
    threads = [threading.Thread(target=store.set_chosen_version, args=(f"model_{n}", n)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    expected = {f"model_{n}": n for n in range(16)}
    assert store.snapshot().chosen_versions == expected
    assert load_preferences(path).chosen_versions == expected


def test_kill_9_during_writes_never_leaves_a_corrupt_file(tmp_path, caplog):
    script = tmp_path / "save_forever.py"
    script.write_text(SAVE_FOREVER)
    folder = tmp_path / "config"
    path = folder / "preferences.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills = 10
    for attempt in range(kills):
        saver = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            ready, _, _ = select.select([saver.stdout], [], [], 30)
            assert ready and saver.stdout.readline() == "saving\n", "the saving process did not start"
            time.sleep(0.002 * attempt)  # kill at a different moment of the loop each time
        finally:
            saver.send_signal(signal.SIGKILL)
            saver.wait(timeout=10)
            saver.stdout.close()
        assert json.loads(path.read_bytes())["chosen_versions"] in (FIRST, SECOND)
        assert load_preferences(path).chosen_versions in (FIRST, SECOND)
        leftovers = [p.name for p in folder.iterdir() if p != path]
        assert all(TEMP_FILE.fullmatch(name) for name in leftovers), leftovers
        assert len(leftovers) <= attempt + 1  # at most one per kill: the temp file it was writing
    assert not caplog.records


def test_request_log_sampling_persists_and_older_files_have_none(tmp_path):
    path = tmp_path / "preferences.json"
    path.write_text('{"format": 1, "chosen_versions": {"digits": 1}}')  # written before the request log
    store = PreferenceStore(path)
    assert store.request_log_sampling() == {}
    store.set_request_log_sampling("digits", 1.0)
    store.set_request_log_sampling("iris", 0)
    assert PreferenceStore(path).request_log_sampling() == {"digits": 1.0, "iris": 0.0}
    assert PreferenceStore(path).chosen_version("digits") == 1
    with pytest.raises(ValueError):
        store.set_request_log_sampling("digits", 2)


@pytest.mark.parametrize("sampling", [b'{"digits": 1.5}', b'{"digits": true}', b"[1]"])
def test_a_bad_request_log_sampling_means_defaults(tmp_path, caplog, sampling):
    path = tmp_path / "preferences.json"
    path.write_bytes(b'{"format": 1, "chosen_versions": {}, "request_log_sampling": ' + sampling + b"}")
    assert load_preferences(path) == Preferences()
    assert "request_log_sampling" in caplog.text


def test_warmup_from_recent_requests_is_remembered_and_a_bad_value_means_defaults(tmp_path, caplog):
    path = tmp_path / "preferences.json"
    PreferenceStore(path).set_warmup_from_recent_requests("digits", 50)
    PreferenceStore(path).set_warmup_from_recent_requests("iris", 0)
    assert PreferenceStore(path).warmup_from_recent_requests() == {"digits": 50, "iris": 0}
    with pytest.raises(ValueError, match="non-negative integer"):
        PreferenceStore(path).set_warmup_from_recent_requests("digits", -1)
    path.write_text('{"format": 1, "warmup_from_recent_requests": {"digits": "all"}}')
    with caplog.at_level(logging.WARNING, logger="appliance.preferences"):
        assert load_preferences(path) == Preferences()
    assert "warmup_from_recent_requests" in caplog.text


def test_shadow_traffic_persists_off_included_and_older_files_have_none(tmp_path):
    path = tmp_path / "preferences.json"
    path.write_text('{"format": 1, "chosen_versions": {"digits": 1}, "request_log_sampling": {}}')
    store = PreferenceStore(path)
    assert store.shadow() == {}
    store.set_shadow("digits", 2, 0.25)
    store.set_shadow("iris", None)  # off, winning over settings.toml
    assert PreferenceStore(path).shadow() == {"digits": {"version": 2, "share": 0.25}, "iris": None}
    assert PreferenceStore(path).chosen_version("digits") == 1
    for version, share in ((2, 0), (2, 1.5), (-1, 0.1)):
        with pytest.raises(ValueError):
            store.set_shadow("digits", version, share)


@pytest.mark.parametrize(
    "shadow", [b'{"digits": {"version": 2}}', b'{"digits": {"version": 2, "share": 0}}', b'{"digits": 2}', b"[1]"]
)
def test_a_bad_shadow_entry_means_defaults(tmp_path, caplog, shadow):
    path = tmp_path / "preferences.json"
    path.write_bytes(b'{"format": 1, "chosen_versions": {}, "shadow": ' + shadow + b"}")
    assert load_preferences(path) == Preferences()
    assert "shadow" in caplog.text
