"""CPU time, resident memory, open files and threads of a process, read from Linux's ``/proc`` (Linux only)."""

from __future__ import annotations

import os

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time of every thread of ``pid`` ("self" for this process) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 is fields[0]
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND  # utime, stime: fields 14 and 15


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, those alive now (a server's worker processes: MLServer runs inference in one)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        found.append(parent)
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    todo += [int(child) for child in f.read().split()]
        except FileNotFoundError:  # it ended meanwhile
            continue
    return found


def rss_mib(pid: int | str) -> float:
    """Resident set size (VmRSS) of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_fds(pid: int | str) -> int:
    """How many file descriptors ``pid`` has open (sockets and pipes included)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int | str) -> int:
    """How many threads ``pid`` has."""
    return len(os.listdir(f"/proc/{pid}/task"))
