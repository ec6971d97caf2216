"""The readiness messages to systemd: real datagrams on a real Unix socket bound here, as systemd binds it."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest

from appliance.sd_notify import Notifier


@pytest.fixture
def notify_socket(tmp_path):
    """A bound datagram socket at a path, as $NOTIFY_SOCKET names one; yields (address, socket)."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield str(path), sock


def test_each_message_is_one_datagram_of_key_value_lines(notify_socket):
    address, sock = notify_socket
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": address})
    notifier.status("loading digits v2 (1/3)")
    notifier.ready("serving 2 models")
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.stopping()
    messages = [sock.recv(4096).decode() for _ in range(4)]
    assert messages[0] == "STATUS=loading digits v2 (1/3)"
    assert messages[1] == "READY=1\nSTATUS=serving 2 models"
    reloading = dict(line.split("=", 1) for line in messages[2].split("\n"))
    assert reloading["RELOADING"] == "1" and reloading["STATUS"]
    # Type=notify-reload checks MONOTONIC_USEC against CLOCK_MONOTONIC: it is now, in microseconds.
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    assert messages[3].split("\n")[0] == "STOPPING=1"


def test_an_abstract_socket_address_starts_with_an_at_sign():
    name = f"appliance-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        Notifier(f"@{name}").ready()
        assert sock.recv(4096) == b"READY=1"


def test_a_status_stays_one_line(notify_socket):
    address, sock = notify_socket
    Notifier(address).status("model a failed:\nbad file")
    assert sock.recv(4096) == b"STATUS=model a failed: bad file"


def test_without_systemd_nothing_is_sent_and_a_gone_socket_is_logged_once(tmp_path, caplog):
    Notifier.from_environment({}).ready()  # no $NOTIFY_SOCKET: nothing to do, nothing raised
    notifier = Notifier(str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="appliance.sd_notify"):
        notifier.status("one")
        notifier.ready()
    assert len(caplog.records) == 1 and "cannot notify" in caplog.text
