"""Where the appliance's time goes under load: py-spy samples of the GIL-holding thread, as tables and a flame graph.

    python bench/profile.py [--concurrency 32] [--seconds 10] [--out DIR]       (or python -m bench.profile ...)

Starts the appliance as ``bench/run.py`` does (``appliance serve --rest_api_port 0 --port 0``,
per-user folders of its own, batching on), waits for its first prediction,
then loads ``POST /v1/models/digits:predict`` (batch 1, keep-alive clients,
``bench.loadgen``) at ``--concurrency`` while two ``py-spy record --gil
--function --nonblocking --rate 200`` sample the server for ``--seconds``: one
writes the collapsed stacks (``--format raw``), the other the flame graph
(``--format flamegraph``). Prints the 30 functions with the largest inclusive
and self shares of the GIL-holding samples (name, file and first line), and
writes ``stacks.txt``, ``flamegraph.svg``, py-spy's output and the
appliance's log to ``--out`` (default: a new folder under the system's
temporary folder). Linux only, like the suite.

``--nonblocking`` reads the server's memory without pausing it (less overhead,
now and then a torn stack). Reading another process's memory needs ptrace
permission: when py-spy has none, its error is printed and the exit status is 1.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import bench from the repository, not from this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # whose profile.py would shadow the standard library's

from bench.loadgen import Bounds, Target, measure
from bench.run import START_TIMEOUT, request_for, say, start_appliance, wait_appliance_ready

MODEL = "digits"
SAMPLE_RATE = 200  # per second
TOP = 30
_LOAD_HEAD_START_S = 1.0  # the load runs this much longer than the samplers, which take a moment to attach
_SAMPLER_EXIT_S = 60.0  # how long py-spy may take to write its output after sampling
_PTRACE_SCOPE = Path("/proc/sys/kernel/yama/ptrace_scope")
_CAP_SYS_PTRACE = 19
_NO_PYTHON_FRAME = "(no Python frame: native code)"  # how a sample with an empty stack is shown


def ptrace_restriction() -> str | None:
    """Why py-spy may not read the memory of a process it did not start (a sibling), or None when it may."""
    if not _PTRACE_SCOPE.exists():
        return None  # no Yama: the same user's processes may read each other's
    scope = int(_PTRACE_SCOPE.read_text())
    if scope == 0 or (scope < 3 and _has_cap_sys_ptrace()):
        return None
    return (
        f"kernel.yama.ptrace_scope is {scope} (0 lets a user's processes read each other's; 1 and 2 need "
        f"CAP_SYS_PTRACE, e.g. root or docker run --cap-add SYS_PTRACE; 3 forbids it)"
    )


def _has_cap_sys_ptrace() -> bool:
    with open("/proc/self/status") as status:
        effective = next(line.split()[1] for line in status if line.startswith("CapEff:"))
    return bool(int(effective, 16) >> _CAP_SYS_PTRACE & 1)


def find_py_spy() -> str:
    """The py-spy next to this interpreter (a virtual environment's), else the one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return found


class Sampler:
    """``py-spy record`` of one process for some seconds into ``output``; its own output goes to ``log_path``."""

    def __init__(self, py_spy: str, pid: int, seconds: int, output_format: str, output: Path, log_path: Path):
        self.output = output
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--gil",
                    "--function",
                    "--nonblocking",
                    "--rate",
                    str(SAMPLE_RATE),
                    "--duration",
                    str(seconds),
                    "--format",
                    output_format,
                    "--output",
                    str(output),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def finish(self) -> str | None:
        """Wait for py-spy to write its output; None when it did, else what went wrong."""
        try:
            status = self.process.wait(_SAMPLER_EXIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return f"py-spy wrote no {self.output.name} within {_SAMPLER_EXIT_S:.0f} s after sampling"
        if status != 0 or not self.output.exists():
            return f"py-spy exited with status {status}: {self.log_path.read_text(errors='replace').strip()}"
        return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def read_stacks(path: Path) -> Counter[str]:
    """py-spy's raw format, the collapsed stacks: ``outer;...;inner count`` per line (the stack may be empty)."""
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        stacks[stack or _NO_PYTHON_FRAME] += int(count)
    return stacks


def frame_shares(stacks: Counter[str]) -> tuple[Counter[str], Counter[str]]:
    """Samples per frame: inclusive (the frame anywhere on the stack, once per sample) and self (innermost)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    return inclusive, own


def top_table(title: str, first: Counter[str], second: Counter[str], headings: tuple[str, str], total: int) -> str:
    """The ``TOP`` frames by ``first``, with both shares of ``total`` in percent."""
    lines = [title, f"{headings[0]:>8}{headings[1]:>8}  function (file:first line)"]
    for frame, samples in first.most_common(TOP):
        lines.append(f"{samples / total:8.1%}{second[frame] / total:8.1%}  {frame}")
    return "\n".join(lines)


def profile(concurrency: int, seconds: int, out: Path) -> dict:
    """The appliance under load while py-spy samples it; returns the load's result (py-spy's files are in ``out``)."""
    py_spy = find_py_spy()
    say("appliance: starting")
    with (
        tempfile.TemporaryDirectory(prefix="appliance-profile-home-") as home,
        start_appliance(Path(home), out / "appliance.log") as server,
    ):
        host, port = server.wait_for_url(START_TIMEOUT)
        wait_appliance_ready(server, host, port, (MODEL,))
        say(f"loading {request_for(MODEL)[0]} at c={concurrency} while py-spy samples the server for {seconds} s")
        pid = server.process.pid
        samplers = [
            Sampler(py_spy, pid, seconds, "raw", out / "stacks.txt", out / "py-spy-raw.log"),
            Sampler(py_spy, pid, seconds, "flamegraph", out / "flamegraph.svg", out / "py-spy-svg.log"),
        ]
        try:
            load = measure(
                Target(host, port, *request_for(MODEL)),
                concurrency,
                Bounds(warmup_s=_LOAD_HEAD_START_S, measure_s=seconds, max_requests=sys.maxsize),
                server.cpu_seconds,
            )
            server.check_running()
            failures = [failure for failure in (sampler.finish() for sampler in samplers) if failure]
        finally:
            for sampler in samplers:
                sampler.kill()
    if failures:
        restriction = ptrace_restriction()
        raise SystemExit(
            f"py-spy could not sample the appliance (pid {pid}), which needs ptrace permission over it"
            + (f": {restriction}" if restriction else "")
            + "\n"
            + "\n".join(failures)
        )
    return load


def summary(load: dict, stacks: Counter[str], concurrency: int, seconds: int) -> str:
    """The load's numbers, how often the GIL was held, and the top frames by inclusive and by self share."""
    total = sum(stacks.values())
    head = (
        f"{MODEL} at c={concurrency}: {load['req_per_s']:.0f} req/s, p50 {load['p50_ms'] or float('nan'):.2f} ms, "
        f"{load['errors']} errors (while sampled); {total} samples holding the GIL in {seconds} s at "
        f"{SAMPLE_RATE} Hz (py-spy's count of samples and of stacks it could not read: py-spy-raw.log)"
    )
    if not total:
        return f"{head}\nno samples held the GIL: nothing to rank"
    inclusive, own = frame_shares(stacks)
    return "\n\n".join(
        [
            head,
            top_table(f"Top {TOP} by inclusive share", inclusive, own, ("incl", "self"), total),
            top_table(f"Top {TOP} by self share", own, inclusive, ("self", "incl"), total),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive clients (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=10, help="how long py-spy samples (default: %(default)s)")
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for the flame graph, the stacks and the logs (default: a new one under the temporary folder)",
    )
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="appliance-profile-"))
    out.mkdir(parents=True, exist_ok=True)

    load = profile(args.concurrency, args.seconds, out)
    print(summary(load, read_stacks(out / "stacks.txt"), args.concurrency, args.seconds))
    print(f"\nflame graph: {out / 'flamegraph.svg'}\ncollapsed stacks: {out / 'stacks.txt'}\nlogs: {out}")


if __name__ == "__main__":
    main()
