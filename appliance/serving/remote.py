"""A remote TensorFlow Serving reached over its REST API: requests forwarded as they came, health watched.

    remote = RemoteTFServing(RemoteSettings(url="http://gpu-box:8501"), models=["digits"])
    remote.start()                                   # background probe of the remote's model status
    answer = remote.forward("POST", "digits", "/versions/2:predict", body)   # RemoteAnswer(status, body, ...)

Bodies pass through unchanged over pooled keep-alive connections with timeouts. A circuit breaker opens
after ``failures_to_open`` consecutive failures (no answer, a timeout, a 5xx, an answer that is not TF
Serving's JSON) and closes after a successful probe; probes back off while the remote is down. The breaker,
the probes and the status are :class:`Remote`'s, which the gRPC remote (:mod:`.remote_grpc`) shares.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterable
from urllib.parse import quote

import urllib3

from ..config import RemoteSettings
from ..errors import Unavailable

log = logging.getLogger(__name__)

MAX_PROBE_BACKOFF = 8  # probes slow down to at most this many probe intervals while the remote is down


@dataclasses.dataclass(frozen=True)
class RemoteAnswer:
    """What the remote answered: its status, body and content type, passed back to the client as they are."""

    status: int
    body: bytes
    content_type: str


@dataclasses.dataclass(frozen=True)
class RemoteStatus:
    """What /health and the tray show about the remote."""

    url: str
    state: str  # "up" | "down" (circuit open) | "unknown" (not probed yet)
    latency_ms: float | None
    versions: dict[str, list[int]]  # local model name -> versions AVAILABLE on the remote
    routing: dict[str, str]  # model -> its routing mode
    error: str | None


class CircuitBreaker:
    """Opens after ``failures_to_open`` consecutive failures; a success closes it."""

    def __init__(self, failures_to_open: int):
        self._failures_to_open = failures_to_open
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        return self._failures >= self._failures_to_open

    def success(self) -> None:
        with self._lock:
            self._failures = 0

    def failure(self) -> bool:
        """Count a failure; True when it opened the circuit."""
        with self._lock:
            self._failures += 1
            return self._failures == self._failures_to_open


def _is_json_document(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


class Remote(abc.ABC):
    """A remote TF Serving, whichever protocol reaches it: the circuit breaker, the probe loop, what /health shows.

    A subclass says how to ask the remote which versions of a model it serves (:meth:`_available_versions`) and
    counts each call's outcome with :meth:`_succeeded` and :meth:`_failed`.
    """

    def __init__(self, settings: RemoteSettings, models: Iterable[str] = ()):
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self._models = list(models)
        self.breaker = CircuitBreaker(settings.failures_to_open)
        self._versions: dict[str, frozenset[int]] = {}
        self._latency_ms: float | None = None
        self._error: str | None = None
        self._probed = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _succeeded(self, started: float) -> None:
        """A call that began at ``started`` (time.perf_counter()) got a proper answer."""
        self.breaker.success()
        self._latency_ms = (time.perf_counter() - started) * 1000

    def _failed(self, message: str) -> Unavailable:
        if self.breaker.failure():
            log.warning("remote TF Serving %s: circuit open after repeated failures: %s", self.url, message)
        self._error = message
        return Unavailable(f"remote TF Serving unavailable: {message}")

    # -- what the remote serves ----------------------------------------------

    def usable(self) -> bool:
        return not self.breaker.open

    def versions(self, model: str) -> frozenset[int]:
        """The versions of ``model`` AVAILABLE on the remote, as last probed."""
        return self._versions.get(model, frozenset())

    def serves(self, model: str, version: int | None) -> bool:
        """Whether the remote (as last probed) serves ``model``, and ``version`` of it when one is given."""
        versions = self._versions.get(model)
        if not versions:
            return False
        return version is None or version in versions

    def status(self) -> RemoteStatus:
        state = "unknown" if not self._probed else ("down" if self.breaker.open else "up")
        return RemoteStatus(
            url=self.url,
            state=state,
            latency_ms=round(self._latency_ms, 2) if self._latency_ms is not None else None,
            versions={m: sorted(v) for m, v in self._versions.items()},
            routing={m: self.settings.routing_of(m).value for m in self._models},
            error=self._error if self.breaker.open else None,
        )

    @abc.abstractmethod
    def _available_versions(self, model: str) -> frozenset[int] | None:
        """The versions of ``model`` AVAILABLE on the remote; None when it does not serve the model.

        Raises Unavailable when the remote does not answer properly.
        """

    def probe(self) -> bool:
        """Ask the remote for each model's status; True when it answered for at least one."""
        versions: dict[str, frozenset[int]] = {}
        answered = False
        for model in self._models:
            try:
                available = self._available_versions(model)
            except Unavailable:
                continue
            answered = True
            if available is not None:
                versions[model] = available
        if answered:
            self.breaker.success()
            self._error = None
        self._versions = versions
        self._probed = True
        return answered

    def start(self) -> None:
        """Probe now and then in the background, backing off while the remote is down."""
        self._thread = threading.Thread(target=self._probe_forever, name="appliance-remote-probe", daemon=True)
        self._thread.start()

    def _probe_forever(self) -> None:
        failures = 0
        while True:
            was_open = self.breaker.open
            if self.probe():
                if was_open:
                    log.info("remote TF Serving %s: reachable again; circuit closed", self.url)
                failures = 0
            else:
                failures += 1
            backoff = min(2 ** max(failures - 1, 0), MAX_PROBE_BACKOFF) if failures else 1
            if self._stopping.wait(self.settings.probe_seconds * backoff):
                return

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout_seconds + 5)
        self._close()

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the connections; called once the probes have stopped."""


class RemoteTFServing(Remote):
    """A TF Serving REST endpoint that requests can be forwarded to."""

    def __init__(self, settings: RemoteSettings, models: Iterable[str] = (), pool_size: int = 8):
        super().__init__(settings, models)
        headers = {"Content-Type": "application/json", **settings.headers}
        if settings.token:
            headers["Authorization"] = f"Bearer {settings.token}"
        self._pool = urllib3.PoolManager(
            maxsize=pool_size,
            retries=False,
            headers=headers,
            timeout=urllib3.Timeout(connect=settings.connect_timeout_seconds, read=settings.timeout_seconds),
        )

    def forward(self, method: str, model: str, suffix: str, body: bytes | None = None) -> RemoteAnswer:
        """Send ``/v1/models/<remote name><suffix>`` to the remote; Unavailable when it cannot answer properly.

        A 4xx answer is the remote's verdict on the request and comes back as it is;
        no answer, a 5xx or a body that is not a JSON object counts as a failure.
        """
        url = f"{self.url}/v1/models/{quote(self.settings.remote_name(model), safe='')}{suffix}"
        started = time.perf_counter()
        try:
            response = self._pool.request(method, url, body=body)
        except urllib3.exceptions.HTTPError as e:
            raise self._failed(f"no answer from {self.url}: {type(e).__name__}: {e}") from None
        content_type = response.headers.get("Content-Type", "application/json")
        if response.status >= 500 or not _is_json_document(response.data):
            raise self._failed(f"{self.url} answered {response.status} with {response.data[:120]!r}")
        self._succeeded(started)
        return RemoteAnswer(response.status, response.data, content_type)

    def _available_versions(self, model: str) -> frozenset[int] | None:
        answer = self.forward("GET", model, "")
        if answer.status != 200:
            return None
        statuses = json.loads(answer.body).get("model_version_status", [])
        return frozenset(int(s["version"]) for s in statuses if s.get("state") == "AVAILABLE")

    def _close(self) -> None:
        self._pool.clear()
