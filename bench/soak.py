"""The soak test: the appliance under steady load for minutes while versions switch and models reload,
watched for leaks.

    python bench/soak.py [--minutes 10] [--json PATH]        (the same: python -m bench.soak ...)

Starts ``appliance serve --rest_api_port 0 --port 0`` on loopback with the bundled
models and per-user folders of its own, then for ``--minutes`` of load:

- 16 client threads, each on a keep-alive connection of its own, send a
  random mix of ``POST /predict`` (digits), ``POST /v1/models/digits:predict``,
  ``:classify`` and ``:regress`` on iris, and about one in ten deliberately bad
  requests (malformed JSON, a wrong input width, an unknown model or version),
  which must get their 4xx;
- digits' chosen version switches between 1 and 2 every 5 s
  (``PUT /v1/appliance/models/digits/chosen``) and a model is reloaded from disk
  every 30 s (``POST /v1/appliance/models/<name>/reload``, digits and iris in
  turn), the first of each half a period in, after a switch and a reload of
  each model at the start;
- the server's RSS, open file descriptors and threads are sampled every second.

A request fails when its status is not the expected one, its connection
breaks, or its answer is wrong: every ``/predict`` answer names its version,
which must be 1 or 2, and the acknowledged choice when no switch began while
the request ran. Switches and reloads fail on any status but 200.

Leaks are judged at two quiet points in the same state: the clients close
their connections, the server idles a second, then the least of each reading
over the next second is taken. The first is at the end of warm-up (the first
10% of the run, at least 5 s, which has exercised every request, a switch and
a reload of each model), the second at the end; a thread or file left behind
per reload shows even in one minute. The soak passes, exit status 0, when no
request, switch or reload failed, RSS grew under 5% between the two, and the
file descriptors and threads did not grow beyond a small slack; it prints a
summary and writes the whole record, samples included, to ``--json``. The
criteria do not depend on throughput or latency. Linux only (it reads ``/proc``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import bench from the repository, not from this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # whose profile.py would shadow the standard library's

from bench import procstat
from bench.bodies import INSTANCES, predict_body, predict_path
from bench.processes import ServerProcess
from bench.run import MODELS, say, start_appliance, wait_appliance_ready

SWITCHED_MODEL = "digits"
SERVED_VERSIONS = (1, 2)  # each bundled model's versions, all loaded: digits switches between them
RELOADED_MODELS = ("digits", "iris")  # reloaded in turn
RSS_GROWTH_LIMIT_PCT = 5.0
# What the end may have above the start without counting as a leak: one of each (a lazily made pool, a
# cached file), so that one per reload still shows in a 1-minute run (reloads at 15 and 45 s after warm-up).
FD_SLACK = 1
THREAD_SLACK = 1
MIN_WARMUP_S = 5.0
WARMUP_SHARE = 0.10
SAMPLE_EVERY_S = 1.0
QUIET_SETTLE_S = 1.0  # idle time before a quiet point's readings
QUIET_WINDOW_S = 1.0  # readings taken over this long, every QUIET_READ_EVERY_S; the least of each counts
QUIET_READ_EVERY_S = 0.1
PAUSE_TIMEOUT_S = 60.0  # how long a quiet point waits for the clients to finish their requests
REQUEST_TIMEOUT_S = 30.0
CONTROL_TIMEOUT_S = 120.0  # a reload loads every version from disk
START_TIMEOUT_S = 180.0
_JSON_HEADERS = {"Content-Type": "application/json"}
_FLOWER = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}


@dataclass(frozen=True)
class Call:
    """One kind of request, the status it must get and the key its JSON answer must have."""

    name: str
    method: str
    path: str
    body: bytes
    status: int
    answer_key: str
    names_version: bool = False  # a /predict answer: its "version" is checked against the chosen one


def _json(document: dict) -> bytes:
    return json.dumps(document).encode()


#: The clients' requests and how often each is picked (about one in ten is a bad request).
MIX = [
    (Call("predict", "POST", "/predict", _json({"input": [INSTANCES["digits"]]}), 200, "predictions", True), 16),
    (Call("tfs_predict", "POST", predict_path("digits"), predict_body("digits"), 200, "predictions"), 12),
    (
        Call(
            "classify",
            "POST",
            "/v1/models/iris:classify",
            _json({"signature_name": "classify", "examples": [_FLOWER]}),
            200,
            "results",
        ),
        4,
    ),
    (
        Call(
            "regress",
            "POST",
            "/v1/models/iris:regress",
            _json({"signature_name": "regress", "examples": [_FLOWER]}),
            200,
            "results",
        ),
        4,
    ),
    (Call("bad_json", "POST", "/predict", b'{"input": [[1, 2', 400, "error"), 1),
    (Call("bad_width", "POST", predict_path("digits"), _json({"instances": [[1.0, 2.0, 3.0]]}), 400, "error"), 1),
    (Call("unknown_model", "POST", predict_path("nope"), predict_body("iris"), 404, "error"), 1),
    (Call("unknown_version", "POST", "/v1/models/digits/versions/9:predict", predict_body("digits"), 404, "error"), 1),
]


@dataclass(frozen=True)
class Settings:
    minutes: float
    clients: int
    switch_every_s: float
    reload_every_s: float

    @property
    def seconds(self) -> float:
        return self.minutes * 60

    @property
    def warmup_s(self) -> float:
        return max(MIN_WARMUP_S, WARMUP_SHARE * self.seconds)


class LoadClock:
    """Seconds of load since the start, the quiet points' pauses left out: what the schedule runs on."""

    def __init__(self):
        self._started = time.monotonic()
        self._paused_s = 0.0

    def now(self) -> float:
        return time.monotonic() - self._started - self._paused_s

    def leave_out(self, seconds: float) -> None:
        self._paused_s += seconds


class ChosenVersion:
    """What the switches acknowledged so far say answers unversioned requests: (switch number, version).

    The version is None from the moment a switch is sent until it is
    acknowledged; only the switching thread writes, in one assignment.
    """

    def __init__(self, version: int):
        self.state: tuple[int, int | None] = (0, version)

    def switching(self) -> None:
        self.state = (self.state[0] + 1, None)

    def switched(self, version: int) -> None:
        self.state = (self.state[0], version)


class Tally:
    """Every request's outcome: answers as expected per call, failures by what went wrong."""

    def __init__(self):
        self._lock = threading.Lock()
        self.answered: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def record(self, call: Call, problem: str | None) -> None:
        with self._lock:
            if problem is None:
                self.answered[call.name] += 1
            else:
                self.failures[f"{call.name}: {problem}"[:300]] += 1

    def requests(self) -> int:
        with self._lock:
            return sum(self.answered.values()) + sum(self.failures.values())


def judge(call: Call, status: int, answer: bytes, chosen: int | None) -> str | None:
    """What is wrong with an answer, or None; ``chosen``: the version it must come from, when known."""
    if status != call.status:
        return f"HTTP {status}, expected {call.status}: {answer[:200]!r}"
    try:
        document = json.loads(answer)
    except ValueError:
        return f"answer is not JSON: {answer[:200]!r}"
    if call.answer_key not in document:
        return f"no {call.answer_key!r} in the answer: {answer[:200]!r}"
    if call.names_version:
        version = document.get("version")
        if version not in SERVED_VERSIONS:
            return f"answered by version {version!r}, not one of {SERVED_VERSIONS}"
        if chosen is not None and version != chosen:
            return f"answered by version {version} while version {chosen} was chosen"
    return None


class Clients:
    """``count`` threads sending the MIX nonstop, each on a keep-alive connection of its own, until stopped.

    ``pause()`` returns once every client has finished its request, closed its
    connection and parked; ``resume()`` lets them go on with new connections.
    """

    def __init__(self, host: str, port: int, count: int, chosen: ChosenVersion, tally: Tally):
        self._host, self._port = host, port
        self._chosen = chosen
        self._tally = tally
        self._condition = threading.Condition()
        self._paused = self._stopped = False
        self._parked = 0
        self._threads = [
            threading.Thread(target=self._client, args=(index,), name=f"soak-client-{index}") for index in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def pause(self) -> None:
        with self._condition:
            self._paused = True
            self._condition.wait_for(lambda: self._parked == len(self._threads), PAUSE_TIMEOUT_S)

    def resume(self) -> None:
        with self._condition:
            self._paused = False
            self._condition.notify_all()

    def stop(self) -> None:
        with self._condition:
            self._stopped, self._paused = True, False
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S + PAUSE_TIMEOUT_S)

    def _client(self, index: int) -> None:
        calls, weights = zip(*MIX)
        pick = random.Random(index)
        connection = None
        try:
            while True:
                with self._condition:
                    if self._paused:
                        if connection is not None:
                            connection.close()
                            connection = None
                        self._parked += 1
                        self._condition.notify_all()
                        self._condition.wait_for(lambda: not self._paused)
                        self._parked -= 1
                    if self._stopped:
                        return
                connection = self._send(connection, pick.choices(calls, weights)[0])
        finally:
            if connection is not None:
                connection.close()

    def _send(self, connection: http.client.HTTPConnection | None, call: Call) -> http.client.HTTPConnection | None:
        """One request on ``connection`` (a new one if None); returns the connection to go on with."""
        connection = connection or http.client.HTTPConnection(self._host, self._port, timeout=REQUEST_TIMEOUT_S)
        before = self._chosen.state
        try:
            connection.request(call.method, call.path, call.body, _JSON_HEADERS)
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as e:
            self._tally.record(call, f"{type(e).__name__}: {e}")
            connection.close()
            return None
        chosen = before[1] if self._chosen.state == before else None  # a switch began meanwhile: either may answer
        self._tally.record(call, judge(call, response.status, answer, chosen))
        if response.will_close:
            connection.close()
            return None
        return connection


def usage(pid: int) -> dict:
    return {"rss_mib": procstat.rss_mib(pid), "fds": procstat.open_fds(pid), "threads": procstat.thread_count(pid)}


class Sampler:
    """The server's usage every SAMPLE_EVERY_S, on a thread of its own, until stopped or the server is gone."""

    def __init__(self, server: ServerProcess, clock: LoadClock):
        self._server = server
        self._clock = clock
        self._stop = threading.Event()
        self.samples: list[dict] = []
        self._thread = threading.Thread(target=self._sample, name="soak-sampler")

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            try:
                self.samples.append({"t": round(self._clock.now(), 1), **usage(self._server.process.pid)})
            except (OSError, RuntimeError):
                if self._server.process.poll() is not None:
                    return  # the soak reports the server's exit at its next quiet point
                raise

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def quiet_usage(server: ServerProcess, clients: Clients) -> dict:
    """The server's usage with no client connected: the least of each reading after it has idled a moment."""
    clients.pause()
    time.sleep(QUIET_SETTLE_S)
    readings = []
    deadline = time.monotonic() + QUIET_WINDOW_S
    while time.monotonic() < deadline:
        server.check_running()
        readings.append(usage(server.process.pid))
        time.sleep(QUIET_READ_EVERY_S)
    return {key: min(reading[key] for reading in readings) for key in readings[0]}


def control(host: str, port: int, method: str, path: str, body: bytes) -> tuple[int | None, bytes]:
    """One control request on a connection of its own: its status (None when the connection failed) and answer."""
    connection = http.client.HTTPConnection(host, port, timeout=CONTROL_TIMEOUT_S)
    try:
        connection.request(method, path, body, _JSON_HEADERS)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as e:
        return None, f"{type(e).__name__}: {e}".encode()
    finally:
        connection.close()


class Conductor:
    """Switches and reloads on schedule, one at a time, each recorded in ``actions``.

    ``warm_up()`` switches once and reloads every model once; after it, each
    periodic action first comes half its period from the start, so that none
    falls right before a quiet point (an old servable's memory goes back once
    Python's garbage collector, which runs on allocation, has freed it).
    """

    def __init__(self, host: str, port: int, settings: Settings, clock: LoadClock, chosen: ChosenVersion):
        self._host, self._port = host, port
        self._settings = settings
        self._clock = clock
        self._chosen = chosen
        self._next_switch = settings.switch_every_s / 2
        self._next_reload = settings.reload_every_s / 2
        self.actions: list[dict] = []

    def _act(
        self, action: str, target: str, method: str, path: str, body: bytes, confirms: Callable[[dict], bool]
    ) -> bool:
        """One control request; it succeeds on a 200 whose JSON answer ``confirms`` what was asked."""
        started, at = time.perf_counter(), self._clock.now()
        status, answer = control(self._host, self._port, method, path, body)
        try:
            ok = status == 200 and confirms(json.loads(answer))
        except ValueError:
            ok = False
        record = {
            "t": round(at, 1),
            "action": action,
            "target": target,
            "ok": ok,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if not ok:
            record["answer"] = f"HTTP {status}: {answer[:300]!r}"
            say(f"  {action} {target} failed: {record['answer']}")
        self.actions.append(record)
        return ok

    def switch(self) -> None:
        _, current = self._chosen.state
        version = SERVED_VERSIONS[0] if current != SERVED_VERSIONS[0] else SERVED_VERSIONS[1]
        self._chosen.switching()
        if self._act(
            "switch",
            f"{SWITCHED_MODEL} -> {version}",
            "PUT",
            f"/v1/appliance/models/{SWITCHED_MODEL}/chosen",
            _json({"version": version}),
            lambda summary: summary["chosen_version"] == version,
        ):
            self._chosen.switched(version)

    def reload(self) -> None:
        """Reload the next model in turn; every version must still be AVAILABLE after it."""
        model = RELOADED_MODELS[sum(a["action"] == "reload" for a in self.actions) % len(RELOADED_MODELS)]
        self._act(
            "reload",
            model,
            "POST",
            f"/v1/appliance/models/{model}/reload",
            b"",
            lambda summary: (
                sorted(v["version"] for v in summary["versions"] if v["state"] == "AVAILABLE") == list(SERVED_VERSIONS)
            ),
        )

    def warm_up(self) -> None:
        self.switch()
        for _ in RELOADED_MODELS:
            self.reload()

    def run_until(self, end_s: float) -> None:
        """Switch and reload whenever due until ``end_s`` seconds of load."""
        while (due := min(self._next_switch, self._next_reload)) < end_s:
            time.sleep(max(0.0, due - self._clock.now()))
            if self._next_switch <= self._next_reload:
                self.switch()
                self._next_switch += self._settings.switch_every_s
            else:
                self.reload()
                self._next_reload += self._settings.reload_every_s
        time.sleep(max(0.0, end_s - self._clock.now()))


def chosen_version(host: str, port: int) -> int:
    status, answer = control(host, port, "GET", f"/v1/appliance/models/{SWITCHED_MODEL}/chosen", b"")
    if status != 200:
        raise RuntimeError(f"GET chosen version: HTTP {status}: {answer[:300]!r}")
    return json.loads(answer)["chosen_version"]


def criteria(results: dict) -> list[dict]:
    """The pass conditions, each with its value, limit and whether it is met."""
    rss, fds, threads = results["rss_mib"], results["fds"], results["threads"]

    def criterion(name: str, value: float, limit: str, met: bool) -> dict:
        return {"criterion": name, "value": value, "limit": limit, "met": met}

    return [
        criterion("failed requests", results["failed_requests"], "0", results["failed_requests"] == 0),
        criterion("failed switches", results["failed_switches"], "0", results["failed_switches"] == 0),
        criterion("failed reloads", results["failed_reloads"], "0", results["failed_reloads"] == 0),
        criterion(
            "RSS growth after warm-up (%)",
            round(rss["growth_pct"], 2),
            f"< {RSS_GROWTH_LIMIT_PCT:g}",
            rss["growth_pct"] < RSS_GROWTH_LIMIT_PCT,
        ),
        criterion(
            "open fds, end - start", fds["end"] - fds["start"], f"<= {FD_SLACK}", fds["end"] <= fds["start"] + FD_SLACK
        ),
        criterion(
            "threads, end - start",
            threads["end"] - threads["start"],
            f"<= {THREAD_SLACK}",
            threads["end"] <= threads["start"] + THREAD_SLACK,
        ),
    ]


def soak(settings: Settings) -> dict:
    """One soak run against a fresh appliance; returns its record (what ``--json`` writes)."""
    with tempfile.TemporaryDirectory(prefix="appliance-soak-") as home:
        say("appliance: starting")
        with start_appliance(Path(home) / "user", Path(home) / "appliance.log") as server:
            host, port = server.wait_for_url(START_TIMEOUT_S)
            wait_appliance_ready(server, host, port, tuple(MODELS))
            chosen = ChosenVersion(chosen_version(host, port))
            tally, clock = Tally(), LoadClock()
            conductor = Conductor(host, port, settings, clock, chosen)
            clients = Clients(host, port, settings.clients, chosen, tally)
            say(f"soak: {settings.clients} clients for {settings.seconds:.0f} s, warm-up {settings.warmup_s:.0f} s")
            with Sampler(server, clock) as sampler:
                clients.start()
                try:
                    conductor.warm_up()
                    conductor.run_until(settings.warmup_s)
                    paused = time.monotonic()
                    start = quiet_usage(server, clients)
                    clients.resume()
                    clock.leave_out(time.monotonic() - paused)
                    say(f"  warm-up done: {tally.requests()} requests; quiet: {start}")
                    conductor.run_until(settings.seconds)
                    seconds = clock.now()
                    end = quiet_usage(server, clients)
                finally:
                    clients.stop()
            say(f"  done: {tally.requests()} requests; quiet: {end}")
            log_tail = server.log_tail()

    results = {
        "settings": {
            **asdict(settings),
            "warmup_s": settings.warmup_s,
            "switched_model": SWITCHED_MODEL,
            "reloaded_models": list(RELOADED_MODELS),
        },
        "seconds": seconds,
        "requests": tally.requests(),
        "answered_as_expected": dict(tally.answered),
        "failed_requests": sum(tally.failures.values()),
        "failure_samples": dict(tally.failures.most_common(10)),
        "req_per_s": tally.requests() / seconds,
        "switches": sum(a["ok"] for a in conductor.actions if a["action"] == "switch"),
        "failed_switches": sum(not a["ok"] for a in conductor.actions if a["action"] == "switch"),
        "reloads": sum(a["ok"] for a in conductor.actions if a["action"] == "reload"),
        "failed_reloads": sum(not a["ok"] for a in conductor.actions if a["action"] == "reload"),
        "rss_mib": {
            "start": start["rss_mib"],
            "end": end["rss_mib"],
            "growth_pct": (end["rss_mib"] - start["rss_mib"]) / start["rss_mib"] * 100,
            "max": max(s["rss_mib"] for s in sampler.samples),
        },
        "fds": {"start": start["fds"], "end": end["fds"], "max": max(s["fds"] for s in sampler.samples)},
        "threads": {
            "start": start["threads"],
            "end": end["threads"],
            "max": max(s["threads"] for s in sampler.samples),
        },
        "actions": conductor.actions,
        "samples": sampler.samples,
        "server_log_tail": log_tail,
    }
    results["criteria"] = criteria(results)
    results["passed"] = all(c["met"] for c in results["criteria"])
    return results


def summary(results: dict) -> str:
    rss, fds, threads = results["rss_mib"], results["fds"], results["threads"]
    lines = [
        f"duration        {results['seconds']:.0f} s of load ({results['settings']['clients']} clients, "
        f"warm-up {results['settings']['warmup_s']:.0f} s)",
        f"requests        {results['requests']} ({results['req_per_s']:.0f} req/s), "
        f"failed {results['failed_requests']}",
        f"switches        {results['switches']} ok, {results['failed_switches']} failed",
        f"reloads         {results['reloads']} ok, {results['failed_reloads']} failed",
        f"RSS             {rss['start']:.1f} MiB after warm-up, {rss['end']:.1f} MiB at the end "
        f"({rss['growth_pct']:+.2f}%), max {rss['max']:.1f} MiB",
        f"open fds        {fds['start']} after warm-up, {fds['end']} at the end (max {fds['max']})",
        f"threads         {threads['start']} after warm-up, {threads['end']} at the end (max {threads['max']})",
    ]
    lines += [f"  failure x{count}: {failure}" for failure, count in results["failure_samples"].items()]
    lines += [f"  {a['action']} {a['target']} at {a['t']} s: {a['answer']}" for a in results["actions"] if not a["ok"]]
    lines.append("")
    lines += [
        f"{'PASS' if c['met'] else 'FAIL'}  {c['criterion']}: {c['value']} (must be {c['limit']})"
        for c in results["criteria"]
    ]
    if not results["passed"]:
        lines += ["", "server log (end):", results["server_log_tail"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10; CI runs 1)")
    parser.add_argument("--clients", type=int, default=16, help="client threads (default 16)")
    parser.add_argument(
        "--switch-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help=f"seconds between switches of {SWITCHED_MODEL}'s version (default 5)",
    )
    parser.add_argument(
        "--reload-every", type=float, default=30.0, metavar="SECONDS", help="seconds between model reloads (default 30)"
    )
    parser.add_argument("--json", type=Path, help="write the whole record, samples included, here")
    args = parser.parse_args(argv)

    results = soak(Settings(args.minutes, args.clients, args.switch_every, args.reload_every))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(summary(results))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
