"""Logging to stderr and a rotating file, configured any number of times without duplicate lines."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

import pytest

from appliance.logs import (
    FILE_HANDLER,
    LOG_BACKUPS,
    MAX_LOG_BYTES,
    STDERR_HANDLER,
    configure_logging,
    native_stderr_to_debug_log,
)

LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) appliance\.test: .+")


@pytest.fixture(autouse=True)
def restore_root_logger():
    """configure_logging changes the process-wide root logger; put it back for the other tests."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def test_records_reach_the_file_and_stderr(tmp_path, capsys):
    log_file = tmp_path / "log" / "appliance.log"
    configure_logging("info", log_file)
    logging.getLogger("appliance.test").info("serving on %s", "http://127.0.0.1:8501")
    logging.getLogger("appliance.test").debug("not at INFO")
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and LINE.fullmatch(lines[0]) and lines[0].endswith("serving on http://127.0.0.1:8501")
    assert "serving on http://127.0.0.1:8501" in capsys.readouterr().err


def test_configuring_twice_does_not_duplicate_lines(tmp_path, capsys):
    log_file = tmp_path / "appliance.log"
    configure_logging("INFO", log_file)
    configure_logging("WARNING", log_file)
    logging.getLogger("appliance.test").warning("once")
    assert log_file.read_text(encoding="utf-8").count("once") == 1
    assert capsys.readouterr().err.count("once") == 1
    ours = [h.get_name() for h in logging.getLogger().handlers if h.get_name() in (STDERR_HANDLER, FILE_HANDLER)]
    assert sorted(ours) == [FILE_HANDLER, STDERR_HANDLER]


def test_the_file_rotates_and_keeps_five_backups(tmp_path, monkeypatch):
    log_file = tmp_path / "appliance.log"
    monkeypatch.setattr(sys, "stderr", None)  # as in a windowed app: only the file is written
    configure_logging("INFO", log_file)
    monkeypatch.undo()
    assert [h.get_name() for h in logging.getLogger().handlers if h.get_name() == STDERR_HANDLER] == []
    record = "x" * 4000
    for _ in range((LOG_BACKUPS + 2) * MAX_LOG_BYTES // len(record)):
        logging.getLogger("appliance.test").info(record)
    backups = sorted(p.name for p in tmp_path.iterdir() if p != log_file)
    assert backups == [f"appliance.log.{n}" for n in range(1, LOG_BACKUPS + 1)]
    assert all(p.stat().st_size <= MAX_LOG_BYTES for p in tmp_path.iterdir())


def test_an_unknown_level_is_an_error_that_keeps_the_setup(tmp_path):
    configure_logging("INFO", tmp_path / "appliance.log")
    with pytest.raises(ValueError):
        configure_logging("LOUD")
    assert FILE_HANDLER in [h.get_name() for h in logging.getLogger().handlers]


def test_native_stderr_is_held_back_while_other_threads_records_still_reach_stderr(tmp_path, capfd):
    """What native code writes to fd 2 during the hold goes to the DEBUG log; log records from any thread do not."""
    log_file = tmp_path / "appliance.log"
    configure_logging("DEBUG", log_file)
    holding, logged = threading.Event(), threading.Event()

    def native_code():
        with native_stderr_to_debug_log(logging.getLogger("appliance.test.native"), "native: "):
            os.write(2, b"noise from C++\n")
            holding.set()
            assert logged.wait(10)

    thread = threading.Thread(target=native_code)
    thread.start()
    assert holding.wait(10)
    logging.getLogger("appliance.test").info("tray icon shown")
    logged.set()
    thread.join(10)
    err = capfd.readouterr().err
    assert "tray icon shown" in err
    assert "noise from C++" not in err.replace("native: noise from C++", "")
    assert "DEBUG appliance.test.native: native: noise from C++" in log_file.read_text()


def test_on_the_journal_each_line_carries_its_level_and_no_time(tmp_path, monkeypatch, capfd):
    """systemd sets $JOURNAL_STREAM to the device:inode of the stream it gives as stderr."""
    status = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
    log_file = tmp_path / "appliance.log"
    configure_logging("DEBUG", log_file)
    logger = logging.getLogger("appliance.test")
    logger.debug("details")
    logger.info("serving")
    logger.warning("changed: takes effect at the next restart")
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("reload failed")
    lines = capfd.readouterr().err.splitlines()
    assert lines[:4] == [
        "<7>appliance.test: details",
        "<6>appliance.test: serving",
        "<4>appliance.test: changed: takes effect at the next restart",
        "<3>appliance.test: reload failed",
    ]
    assert lines[4] == "<3>Traceback (most recent call last):" and lines[-1] == "<3>ValueError: bad"
    assert all(LINE.fullmatch(line) for line in log_file.read_text().splitlines()[1:3])  # the file keeps its times

    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another stream: stderr was redirected elsewhere
    configure_logging("INFO")
    logger.info("to a terminal")
    assert LINE.fullmatch(capfd.readouterr().err.strip())
