"""A small asyncio load generator: N clients, one connection each, one request in flight per client.

    result = measure(Target("127.0.0.1", 8501, "/v1/models/digits:predict", body), 32, bounds, probe)
    result = measure(GrpcTarget("127.0.0.1:8500", PREDICT_METHOD, message), 32, bounds, probe)

Over HTTP (:class:`Target`), every client sends the same ``POST`` over HTTP/1.1
keep-alive, reconnecting only when the server closes the connection (an
HTTP/1.0 server does after each answer). Over gRPC (:class:`GrpcTarget`),
every client calls the same unary method through a ``grpc.aio`` channel of its
own, on a connection of its own (as each HTTP client has one), sending the
serialized request as bytes and taking the answer as bytes, so that the
client does no protobuf work of its own on the machine it shares with the
server. A level first runs ``warmup_s`` unmeasured, then measures until
``measure_s`` have passed or ``max_requests`` answers have come, whichever is
first; a server too slow to answer each client once on average in
``measure_s`` (as many answers as clients) is measured until it has, for at
most 30 s more, so that its rate is a rate and not zero. It reports answers
per second, latency percentiles (send to last byte, reconnects included),
errors (any status but 200, a gRPC status but OK, a failed connection, an
answer that never comes; warm-up included), and the CPU seconds spent per
answer by the server (``probe``) and by this client.

A :class:`Tally` adds up several rounds of a level, each with its own warm-up
(``run_round``), so that servers measured in turn, round after round, share
the machine's changing load alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import grpc

_GRACE_SECONDS = 10.0  # how long a level waits for the answers in flight when it ends
_SLOW_SERVER_SECONDS = 30.0  # how much longer a level waits for a slow server's round of answers
_RETRY_SECONDS = 0.01  # pause after a failed connection, so a dead server does not spin the client
# grpcio's channels to one address share one connection by default: a channel of its own per client gets its own.
_OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@dataclass(frozen=True)
class Target:
    """Where the requests go and what they carry."""

    host: str
    port: int
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)

    def request(self) -> bytes:
        lines = "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"{lines}Content-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode("ascii") + self.body

    def client(self, window: _Window) -> Coroutine[None, None, None]:
        return _http_client(self, self.request(), window)


@dataclass(frozen=True)
class GrpcTarget:
    """A unary gRPC method, where it is served (``host:port``) and the serialized request message it gets."""

    address: str
    method: str  # "/package.Service/Method"
    message: bytes

    def client(self, window: _Window) -> Coroutine[None, None, None]:
        return _grpc_client(self, window)


@dataclass(frozen=True)
class Bounds:
    """How long one concurrency level runs: unmeasured warm-up, then a window bounded by time and by count."""

    warmup_s: float
    measure_s: float
    max_requests: int


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 1]."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(samples: list[float]) -> dict:
    """Median, p99 and mean of latencies in seconds, as milliseconds (None when there are none)."""
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    return {
        "p50_ms": percentile(samples, 0.50) * 1e3,
        "p99_ms": percentile(samples, 0.99) * 1e3,
        "mean_ms": sum(samples) / len(samples) * 1e3,
    }


class _Window:
    """What a level's clients record: latencies inside the measurement window, errors at any time."""

    def __init__(self, max_requests: int):
        self.enough = max_requests  # answers that end the window
        self.measuring = False
        self.ended = False
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.full = asyncio.Event()

    def answer(self, seconds: float) -> None:
        if self.measuring:
            self.latencies.append(seconds)
            if len(self.latencies) >= self.enough:
                self.full.set()

    def error(self, what: str) -> None:
        if not self.ended:
            self.errors[what] += 1


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, status = head[0].split(" ", 2)[:2]
    headers = dict(line.lower().split(":", 1) for line in head[1:] if line)
    if "content-length" not in headers:
        raise ValueError("answer without Content-Length")
    await reader.readexactly(int(headers["content-length"]))
    connection = headers.get("connection", "").strip()
    keep_alive = connection == "keep-alive" or (version == "HTTP/1.1" and connection != "close")
    return int(status), keep_alive


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()


async def _http_client(target: Target, request: bytes, window: _Window) -> None:
    reader = writer = None
    try:
        while not window.ended:
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(target.host, target.port)
                writer.write(request)
                status, keep_alive = await _read_response(reader)
            except (OSError, EOFError, asyncio.LimitOverrunError, ValueError) as e:
                window.error(f"{type(e).__name__}: {e}")
                _close(writer)
                writer = None
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            if status == 200:
                window.answer(time.perf_counter() - started)
            else:
                window.error(f"HTTP {status}")
            if not keep_alive:
                _close(writer)
                writer = None
    finally:
        _close(writer)


async def _grpc_client(target: GrpcTarget, window: _Window) -> None:
    async with grpc.aio.insecure_channel(target.address, options=_OWN_CONNECTION) as channel:
        call = channel.unary_unary(target.method)  # no (de)serializers: bytes in, bytes out
        while not window.ended:
            started = time.perf_counter()
            try:
                await call(target.message)
            except grpc.aio.AioRpcError as e:
                window.error(f"gRPC {e.code().name}: {e.details()}")
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            window.answer(time.perf_counter() - started)


async def _wait_at_most(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


@dataclass
class Tally:
    """What the rounds of one concurrency level measured so far."""

    concurrency: int
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def summary(self) -> dict:
        answers = len(self.latencies)
        return {
            "concurrency": self.concurrency,
            "requests": answers,
            "seconds": self.seconds,
            "req_per_s": answers / self.seconds,
            **summarize(self.latencies),
            "errors": sum(self.errors.values()),
            "error_samples": dict(self.errors.most_common(5)),
            "server_cpu_ms_per_req": self.server_cpu_s / answers * 1e3 if answers else None,
            "client_cpu_ms_per_req": self.client_cpu_s / answers * 1e3 if answers else None,
        }


async def _run_round(target: Target | GrpcTarget, bounds: Bounds, probe: Callable[[], float], tally: Tally) -> None:
    concurrency = tally.concurrency
    window = _Window(bounds.max_requests)
    clients = [asyncio.create_task(target.client(window)) for _ in range(concurrency)]
    await asyncio.sleep(bounds.warmup_s)
    server_cpu, client_cpu, started = probe(), time.process_time(), time.perf_counter()
    window.measuring = True
    await _wait_at_most(window.full, bounds.measure_s)
    if not window.full.is_set() and len(window.latencies) < concurrency:  # slow: wait for a round of answers
        window.enough = concurrency
        await _wait_at_most(window.full, _SLOW_SERVER_SECONDS)
    window.measuring = False
    tally.seconds += time.perf_counter() - started
    tally.server_cpu_s += probe() - server_cpu
    tally.client_cpu_s += time.process_time() - client_cpu
    window.ended = True
    finished, unanswered = await asyncio.wait(clients, timeout=_GRACE_SECONDS)
    for task in unanswered:
        task.cancel()
    for task in finished:
        task.result()  # a bug in the client must not pass for a measurement
    if unanswered:
        window.errors[f"no answer {_GRACE_SECONDS:.0f} s after the end"] += len(unanswered)
    tally.latencies += window.latencies
    tally.errors += window.errors


def run_round(target: Target | GrpcTarget, bounds: Bounds, probe: Callable[[], float], tally: Tally) -> None:
    """One round of ``tally``'s level: its clients, a warm-up, then a measured window added to ``tally``."""
    asyncio.run(_run_round(target, bounds, probe, tally))


def measure(target: Target | GrpcTarget, concurrency: int, bounds: Bounds, probe: Callable[[], float]) -> dict:
    """Load ``target`` with ``concurrency`` clients; ``probe()`` returns the server's CPU seconds so far."""
    tally = Tally(concurrency)
    run_round(target, bounds, probe, tally)
    return tally.summary()
