"""One desktop appliance per user, and how other processes find the one that runs.

    lock = InstanceLock(instance_lock_file())
    if lock.acquire():
        write_discovery(discovery_file(), Discovery.for_this_process(url, port, __version__, grpc_address, grpc_port))
        ...  # serve; on the way out: remove_discovery(discovery_file()), lock.release()
    else:
        running = find_running_instance(instance_lock_file(), discovery_file())  # -> Discovery(url=...) | None

The lock is an OS file lock, dropped however its process ends: a free lock beside a discovery file means a crash.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import sys
import typing
from pathlib import Path

from .paths import ensure_dir, write_file_atomically

log = logging.getLogger(__name__)


class InstanceLock:
    """An exclusive lock on ``path``, held from :meth:`acquire` until :meth:`release` or the end of the process.

    The lock is an OS file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows), which the OS drops when its
    process ends in any way, ``kill -9`` included: a free lock beside a discovery file means that appliance crashed.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting: True when this process holds it now, False when another process does."""
        if self._fd is not None:
            return True
        ensure_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by child processes
        if _try_lock(fd):
            self._fd = fd
            return True
        os.close(fd)
        return False

    def release(self) -> None:
        """Let the lock go (the file stays: deleting it would race with the next process taking it)."""
        if self._fd is None:
            return
        _unlock(self._fd)
        os.close(self._fd)
        self._fd = None


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks and unlocks bytes from the current position
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


@dataclasses.dataclass(frozen=True)
class Discovery:
    """What a running appliance tells other processes about itself."""

    url: str | None
    """The REST API's URL; None when it is off (and so is ``port``)."""
    port: int | None
    pid: int
    version: str
    started_at: str
    """When it started, ISO 8601 in UTC."""
    grpc_address: str | None = None
    """Where gRPC clients connect, e.g. "127.0.0.1:8500"; None when the gRPC API is off (and so is ``grpc_port``)."""
    grpc_port: int | None = None

    @classmethod
    def for_this_process(
        cls, url: str | None, port: int | None, version: str, grpc_address: str | None, grpc_port: int | None
    ) -> Discovery:
        started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return cls(url, port, os.getpid(), version, started_at, grpc_address, grpc_port)


def write_discovery(path: Path, discovery: Discovery, mode: int = 0o600) -> None:
    """Publish ``discovery`` at ``path`` atomically, readable by the owner only unless ``mode`` says otherwise."""
    write_file_atomically(path, json.dumps(dataclasses.asdict(discovery)).encode("utf-8"), mode=mode)


def read_discovery(path: Path) -> Discovery | None:
    """The discovery file at ``path``, or None when it is missing, unreadable or malformed."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    fields = typing.get_type_hints(Discovery)
    values: dict[str, typing.Any] = {name: document.get(name) for name in fields}
    if not all(isinstance(value, fields[name]) and not isinstance(value, bool) for name, value in values.items()):
        return None
    return Discovery(**values)


def remove_discovery(path: Path) -> None:
    """Withdraw the discovery file (nothing happens when it is gone already)."""
    path.unlink(missing_ok=True)


def find_running_instance(lock_path: Path, discovery_path: Path) -> Discovery | None:
    """The appliance running for this user, or None.

    It runs when another process holds the lock and its discovery file names a live process. None also while
    an appliance holds the lock but has not published its discovery file yet.
    """
    probe = InstanceLock(lock_path)
    if probe.acquire():
        probe.release()
        if discovery_path.exists():
            log.info(
                "ignoring the stale discovery file %s: no appliance holds %s, the last one crashed",
                discovery_path,
                lock_path,
            )
        return None
    discovery = read_discovery(discovery_path)
    if discovery is None:
        return None
    if not _process_is_alive(discovery.pid):
        log.info("ignoring the stale discovery file %s: its process %d is gone", discovery_path, discovery.pid)
        return None
    return discovery


def read_live_discovery(path: Path) -> Discovery | None:
    """The discovery file at ``path`` while the process it names lives, else None; for the system service, whose
    lock (if any) this user cannot probe."""
    discovery = read_discovery(path)
    if discovery is None or not _process_is_alive(discovery.pid):
        return None
    return discovery


def _process_is_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negative numbers name process groups, never one appliance
        return False
    if sys.platform == "win32":
        return _windows_process_is_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        pass
    return True


if sys.platform == "win32":  # Windows-only names: type checkers skip this elsewhere

    def _windows_process_is_alive(pid: int) -> bool:
        # os.kill(pid, 0) would terminate the process on Windows, so ask the kernel instead.
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
        kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
        kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
        process_query_limited_information, error_access_denied, still_active = 0x1000, 5, 259

        handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
        if not handle:
            return ctypes.get_last_error() == error_access_denied
        try:
            exit_code = wintypes.DWORD()
            return (
                bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(exit_code))) and exit_code.value == still_active
            )
        finally:
            kernel32.CloseHandle(handle)
