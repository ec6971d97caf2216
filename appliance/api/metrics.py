"""Prometheus metrics for one appliance, at TF Serving's path: requests, model loads, batches, state, the process.

    metrics = Metrics()                                          # a registry of its own, never the global one
    manager = ModelManager(repository, runtime, observer=metrics.observer)
    app = create_app(manager, max_request_bytes=64 << 20, metrics=metrics)
    return served(json_response(body), "digits", 2)             # a handler: what answered, for the labels
    # GET /monitoring/prometheus/metrics -> text exposition format 0.0.4

Requests are labelled with what their handler's response says (see :class:`Instrumented`); TF Serving's
own names are derived from the appliance's at scrape time (:class:`TFServingNames`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import bottle
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ..errors import ServingError
from ..serving.manager import ModelManager, ServableHandle, State
from ..serving.observer import ServingObserver
from ..serving.remote import Remote
from ..serving.request_log import RequestLog
from ..serving.routing import LOCAL
from ..serving.runtime import Servable
from ..serving.shadow import ShadowTraffic
from .responses import HTTP_STATUS, answer_error

T = TypeVar("T")

PATH = "/monitoring/prometheus/metrics"

# TF Serving's latency buckets, 10 µs * 1.8^k (up to ~25 minutes); in seconds here, in µs under its own name.
LATENCY_BOUNDS_US = tuple(10 * 1.8**k for k in range(33))
LATENCY_BOUNDS_SECONDS = tuple(bound / 1e6 for bound in LATENCY_BOUNDS_US)
BATCH_BOUNDS = tuple(float(2**k) for k in range(14))  # TF Serving's batch size buckets: 1 ... 8192

# The TF Serving REST API, and the "API" label TF Serving gives each (the URL's verb; "" for GETs).
TFS_APIS = {"predict": "predict", "classify": "classify", "regress": "regress", "status": "", "metadata": ""}
# The gRPC PredictionService's "api" labels TF Serving counts too, and its "API" label for each
# (prediction_service_impl.cc: MultiInference and GetModelMetadata are in neither of its request metrics).
GRPC_APIS = {"grpc_predict": "Predict", "grpc_classify": "Classify", "grpc_regress": "Regress"}
# The gRPC code name of an HTTP status, for TF Serving's "status" label (the first code TF Serving maps to it).
# The "api" labels of inference requests (not metadata, status or health), for the statistics.
INFERENCE_APIS = frozenset(
    {"predict", "classify", "regress", "simple_predict", "v2_infer"}
    | {"grpc_predict", "grpc_classify", "grpc_regress", "grpc_multi_inference", "grpc_v2_infer"}
)
CODE_NAMES = {str(status): code.name for code, status in reversed(HTTP_STATUS.items())}
UNSERVED = ("", None, "")
UNLABELLED = ("", None, "", "")  # (model, version, api, backend) of a request nothing labelled


def served(response: bottle.HTTPResponse, model: str, version: int | None, backend: str = LOCAL) -> bottle.HTTPResponse:
    """``response``, labelled with the model version that answered it (``None``: no particular version)."""
    response.served_by = (model, version, backend)
    return response


def for_api(response: bottle.HTTPResponse, api: str) -> bottle.HTTPResponse:
    """``response``, labelled with the API it answers (for routes that serve several, like ``/v1/...``)."""
    response.api = api
    return response


def answered_by(
    handle: ServableHandle, model: str, run: Callable[[Servable], T], encode: Callable[[T], bottle.HTTPResponse]
):
    """``encode(run(servable))``, ``run`` holding ``handle``'s version, labelled with that version.

    What either raises is answered (:func:`.responses.answer_error`) and raised as a response labelled
    with the version too: once a version took a request, its errors count under it.
    """
    try:
        with handle:
            result = run(handle.servable)
        response = encode(result)
    except Exception as e:
        raise served(answer_error(e), model, handle.version) from None
    return served(response, model, handle.version)


class LabelledBody(list):
    """A WSGI body (a list of byte strings) with the ``labels`` of its request: (model, version, api, backend)."""

    __slots__ = ("labels",)
    labels: tuple[str, int | None, str, str]


def labelled_body(chunk: bytes | None, response: bottle.HTTPResponse, api: str) -> LabelledBody:
    """The WSGI body of ``response`` (``chunk``, or none), labelled as the response says: ``api`` is the
    route's API, unless the response names its own (:func:`for_api`)."""
    body = LabelledBody()
    if chunk is not None:
        body.append(chunk)
    model, version, backend = getattr(response, "served_by", UNSERVED)
    body.labels = (model, version, getattr(response, "api", api), backend)
    return body


class RequestMetrics:
    """Count and time of every request by model, version, API, status code and backend.

    The code is the HTTP status of a REST request ("200"), the gRPC code's name of a gRPC one ("OK").
    """

    LABELS = ("model", "version", "api", "code", "backend")

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter("appliance_requests", "Requests answered.", self.LABELS, registry=registry)
        self.durations = Histogram(
            "appliance_request_duration_seconds",
            "Time from receiving a request to its response being ready.",
            self.LABELS,
            registry=registry,
            buckets=LATENCY_BOUNDS_SECONDS,
        )
        # label values -> [counter, histogram, time.time() of the last request]: no lock on the hot path
        self._children: dict[tuple, list] = {}

    def record(self, model: str, version: int | None, api: str, code: str, backend: str, seconds: float) -> None:
        key = (model, version, api, code, backend)
        children = self._children.get(key)
        if children is None:
            values = (model, "" if version is None else str(version), api, code, backend)
            children = self._children[key] = [self.requests.labels(*values), self.durations.labels(*values), 0.0]
        children[0].inc()
        children[1].observe(seconds)
        children[2] = time.time()

    def totals(self) -> dict[tuple[str, int | None, str, str, str], tuple[int, float, float]]:
        """(model, version, api, code, backend) -> (requests, their seconds, :func:`time.time` of the last)."""
        # Each series' own values: prometheus_client has no public reader for one series, and collect() formats
        # every bucket of every series (~60 ms for 150 series).
        return {
            key: (int(counter._value.get()), histogram._sum.get(), last)
            for key, (counter, histogram, last) in self._children.copy().items()
        }


class Instrumented:
    """WSGI middleware: times each request through ``app`` and records it with the labels its body carries.

    The labels are the API called (per route, or per URL under ``/v1``) and, once a model version has
    taken the request, its model, version and backend, ``local`` or ``remote`` (:func:`served`). A request
    no model version took (an unknown model or version, an unreadable body, ``/health``, a path that does
    not exist, one refused before any route: a plain list) counts with ``model=""``, ``version=""`` and
    ``backend=""``: label values stay bounded by what is actually served, whatever names clients send.
    """

    def __init__(self, app, metrics: RequestMetrics):
        self._app = app
        self._metrics = metrics

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        status = None

        def respond(status_line, headers, exc_info=None):
            nonlocal status
            status = status_line
            return start_response(status_line, headers, exc_info)

        body = self._app(environ, respond)
        seconds = time.perf_counter() - started
        if status is not None:
            model, version, api, backend = getattr(body, "labels", UNLABELLED)
            self._metrics.record(model, version, api, status[:3], backend, seconds)
        return body


class ServingMetrics(ServingObserver):
    """What the serving layer reports: load times and failures, batch sizes."""

    def __init__(self, registry: CollectorRegistry):
        self.load_seconds = Gauge(
            "appliance_model_load_seconds",
            "How long the last load of a version took (warmup included).",
            ("model", "version"),
            registry=registry,
        )
        self.load_failures = Counter(
            "appliance_model_load_failures", "Loads of a version that failed.", ("model", "version"), registry=registry
        )
        labels = ("model", "version", "signature")
        self.batch_rows = Histogram(
            "appliance_batch_size_rows",
            "Rows in one batched signature call (padding included).",
            labels,
            registry=registry,
            buckets=BATCH_BOUNDS,
        )
        self.batch_requests = Histogram(
            "appliance_batch_size_requests",
            "Requests merged into one batched signature call.",
            labels,
            registry=registry,
            buckets=BATCH_BOUNDS,
        )
        self._batch_children: dict[tuple, tuple] = {}
        # Batches run by (model, version, rows), counted by each thread in a dict of its own and added up when
        # read: exact without a lock (one thread writes each dict; copying a dict is atomic).
        self._own_batches = threading.local()
        self._batch_tallies: list[dict[tuple[str, int, int], int]] = []

    def model_loaded(self, name: str, version: int, seconds: float, error: ServingError | None) -> None:
        if error is None:
            self.load_seconds.labels(name, str(version)).set(seconds)
        else:
            self.load_failures.labels(name, str(version)).inc()

    def batch_run(self, name: str, version: int, signature: str, requests: int, rows: int) -> None:
        key = (name, version, signature)
        children = self._batch_children.get(key)  # once per request when idle: skip the label lookups
        if children is None:
            values = (name, str(version), signature)
            children = self._batch_children[key] = (
                self.batch_rows.labels(*values),
                self.batch_requests.labels(*values),
            )
        children[0].observe(rows)
        children[1].observe(requests)
        tally = getattr(self._own_batches, "tally", None)
        if tally is None:
            tally = self._own_batches.tally = {}
            self._batch_tallies.append(tally)
        size = (name, version, rows)
        tally[size] = tally.get(size, 0) + 1

    def batches(self) -> dict[tuple[str, int], dict[int, int]]:
        """(model, version) -> {rows in a batch (padding included): batches of that size run}."""
        batches: dict[tuple[str, int], dict[int, int]] = {}
        for tally in list(self._batch_tallies):
            for (name, version, rows), count in tally.copy().items():
                sizes = batches.setdefault((name, version), {})
                sizes[rows] = sizes.get(rows, 0) + count
        return batches


def _add_up(family: Metric, bounds: tuple[float, ...], group) -> dict[tuple, list[float]]:
    """The histogram series of ``family`` summed by ``group(labels)`` (None skips a series).

    Returns group -> [cumulative count of each bucket, +Inf's included, then the sum].
    """
    positions = {floatToGoString(bound): i for i, bound in enumerate((*bounds, math.inf))}
    totals: dict[tuple, list[float]] = {}
    for sample in family.samples:
        key = group(sample.labels)
        if key is None:
            continue
        row = totals.setdefault(key, [0.0] * (len(positions) + 1))
        if sample.name.endswith("_bucket"):
            row[positions[sample.labels["le"]]] += sample.value
        elif sample.name.endswith("_sum"):
            row[-1] += sample.value
    return totals


def _histogram(name: str, documentation: str, labels: list[str], bounds, totals, scale: float = 1.0):
    """A histogram family of ``_add_up``'s totals, its sums multiplied by ``scale``."""
    family = HistogramMetricFamily(name, documentation, labels=labels)
    les = [f"{bound:.6g}" for bound in bounds] + ["+Inf"]  # TF Serving prints bounds with 6 digits
    for key, row in totals.items():
        family.add_metric(list(key), list(zip(les, row[:-1])), row[-1] * scale)
    return family


def _tfs_status(labels: dict[str, str]) -> str | None:
    """The "status" TF Serving's request count gives a request (its code's name); None if it counts none."""
    api = labels["api"]
    if api in TFS_APIS:
        return CODE_NAMES.get(labels["code"], "UNKNOWN")
    return labels["code"] if api in GRPC_APIS else None  # gRPC requests are labelled with the code's name


def _tfs_latency_labels(labels: dict[str, str]) -> tuple[str, str, str] | None:
    """(model_name, API, entrypoint) of a successful request TF Serving times; None for the others."""
    api, code = labels["api"], labels["code"]
    if api in TFS_APIS and code == "200":
        return labels["model"], TFS_APIS[api], "REST"
    if api in GRPC_APIS and code == "OK":
        return labels["model"], GRPC_APIS[api], "GRPC"
    return None


class TFServingNames:
    """Collector: TF Serving's metric names, computed from the appliance's own at scrape time.

    A request is recorded once: ``:tensorflow:serving:request_count`` (exported untyped, since
    prometheus_client appends ``_total`` to every counter) and ``:tensorflow:serving:request_latency``
    (microseconds, successful ``/v1`` and gRPC requests only, as TF Serving does) are sums of the appliance's
    series.
    """

    def __init__(self, requests: RequestMetrics, serving: ServingMetrics):
        self._requests = requests
        self._serving = serving

    def collect(self):
        count = Metric(":tensorflow:serving:request_count", "The total number of requests.", "unknown")
        totals: dict[tuple, float] = {}
        for sample in self._requests.requests.collect()[0].samples:
            status = _tfs_status(sample.labels) if sample.name.endswith("_total") else None
            if status is not None:
                key = (sample.labels["model"], status)
                totals[key] = totals.get(key, 0.0) + sample.value
        for (model, status), value in totals.items():
            count.add_sample(count.name, {"model_name": model, "status": status}, value)
        yield count
        latencies = _add_up(self._requests.durations.collect()[0], LATENCY_BOUNDS_SECONDS, _tfs_latency_labels)
        yield _histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            LATENCY_BOUNDS_US,
            latencies,
            scale=1e6,
        )
        batches = _add_up(self._serving.batch_rows.collect()[0], BATCH_BOUNDS, lambda labels: ())
        yield _histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Tracks the batch size distribution on processing.",
            [],
            BATCH_BOUNDS,
            batches,
        )


class ServingState:
    """Collector: each version's state, each model's chosen version and the remote's health, read at scrape time."""

    def __init__(self, manager: ModelManager, remote: Remote | None):
        self._manager = manager
        self._remote = remote

    def collect(self):
        states = GaugeMetricFamily(
            "appliance_model_version_state",
            "1 for the state a version is in, 0 for the others.",
            labels=["model", "version", "state"],
        )
        chosen = GaugeMetricFamily(
            "appliance_model_chosen_version", "The version that answers requests naming none.", labels=["model"]
        )
        for summary in self._manager.summaries():
            if summary.chosen_version is not None:
                chosen.add_metric([summary.name], summary.chosen_version)
            for version in summary.versions:
                for state in State:
                    states.add_metric([summary.name, str(version.version), state.value], float(version.state is state))
        yield states
        yield chosen
        if self._remote is not None:
            remote = self._remote.status()
            up = GaugeMetricFamily(
                "appliance_remote_up",
                "1 while the remote TF Serving answers, 0 while it is down or not probed yet.",
                labels=["url"],
            )
            up.add_metric([remote.url], float(remote.state == "up"))
            yield up
        if self._manager.request_log is not None:
            yield from _request_log_metrics(self._manager.request_log)
        yield from _shadow_metrics(self._manager.shadow)
        if os.path.isdir("/proc/self/task"):  # Linux, like the process_* metrics
            threads = GaugeMetricFamily("appliance_process_threads", "Threads of this process (TensorFlow's included).")
            threads.add_metric([], len(os.listdir("/proc/self/task")))
            yield threads


def _request_log_metrics(request_log: RequestLog):
    written = CounterMetricFamily(
        "appliance_request_log_records", "Requests written to the local request log.", labels=["model"]
    )
    dropped = CounterMetricFamily(
        "appliance_request_log_dropped",
        "Sampled requests not written to the request log: its queue was full (the requests were answered).",
        labels=["model"],
    )
    on_disk = GaugeMetricFamily("appliance_request_log_bytes", "The request log's files, in bytes.", labels=["model"])
    for model in sorted({*request_log.written, *request_log.dropped, *request_log.sampling()}):
        written.add_metric([model], request_log.written.get(model, 0))
        dropped.add_metric([model], request_log.dropped.get(model, 0))
        on_disk.add_metric([model], request_log.bytes_on_disk(model))
    yield from (written, dropped, on_disk)


def _shadow_metrics(shadow: ShadowTraffic):
    requests = CounterMetricFamily(
        "appliance_shadow_requests",
        "Live requests sampled for shadow traffic to a candidate version, by outcome: compared, failed (on the "
        "candidate only), dropped (the queue was full), unavailable (the candidate was not AVAILABLE).",
        labels=["model", "candidate", "outcome"],
    )
    agreement = GaugeMetricFamily(
        "appliance_shadow_agreement_ratio",
        "Share of the rows compared whose predicted class the candidate version agrees on, per output.",
        labels=["model", "candidate", "output"],
    )
    for model, figures in sorted(shadow.active().items()):
        candidate = str(figures.version)
        document = figures.to_json()
        for outcome, key in (
            ("compared", "compared"),
            ("failed", "fails_on_candidate"),
            ("dropped", "dropped"),
            ("unavailable", "unavailable"),
        ):
            requests.add_metric([model, candidate, outcome], document[key])
        for output, ratio in document["agreement"].items():
            agreement.add_metric([model, candidate, output], ratio)
    yield from (requests, agreement)


@dataclasses.dataclass
class VersionActivity:
    """The inference requests one model version answered, across every API (see :meth:`Metrics.activity`)."""

    succeeded: int = 0  # requests answered with a 2xx status or OK
    succeeded_seconds: float = 0.0  # their time, from receiving each to its response being ready
    failed: int = 0
    failed_seconds: float = 0.0
    last_request: float = 0.0  # time.time() when its last request was answered; 0: none yet
    batches: dict[int, int] = dataclasses.field(default_factory=dict)  # rows -> batches run (batched versions)


def _succeeded(code: str) -> bool:
    return code == "OK" or code.startswith("2")


class Metrics:
    """Every metric of one appliance, in a registry of its own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = RequestMetrics(self.registry)
        self.observer = ServingMetrics(self.registry)
        self.registry.register(TFServingNames(self.requests, self.observer))
        ProcessCollector(registry=self.registry)

    def watch(self, manager: ModelManager, remote: Remote | None) -> None:
        """Report ``manager``'s versions (and ``remote``'s health) at each scrape; call once."""
        self.registry.register(ServingState(manager, remote))

    def activity(self) -> dict[tuple[str, int], VersionActivity]:
        """(model, version) -> the inference requests (:data:`INFERENCE_APIS`) that version answered here (the
        ``local`` backend), for each version that took one. Reads the metrics without holding a lock for long
        (~0.6 ms for 150 series)."""
        activity: dict[tuple[str, int], VersionActivity] = {}

        def of(model: str, version: int) -> VersionActivity:
            key = (model, version)
            found = activity.get(key)
            if found is None:
                found = activity[key] = VersionActivity()
            return found

        for (model, version, api, code, backend), (count, seconds, last) in self.requests.totals().items():
            if backend != LOCAL or version is None or api not in INFERENCE_APIS:
                continue
            counts = of(model, version)
            if _succeeded(code):
                counts.succeeded += count
                counts.succeeded_seconds += seconds
            else:
                counts.failed += count
                counts.failed_seconds += seconds
            counts.last_request = max(counts.last_request, last)
        for (model, version), sizes in self.observer.batches().items():
            of(model, version).batches = sizes
        return activity

    def instrument(self, app) -> Instrumented:
        return Instrumented(app, self.requests)

    def page(self) -> bottle.HTTPResponse:
        """``GET /monitoring/prometheus/metrics``."""
        return bottle.HTTPResponse(generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
