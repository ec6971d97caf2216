"""What the gRPC services' tests share: a loaded manager with its metrics, reading the metrics a call was counted
in, and holding a call past its deadline as a busy server would.

    with loaded_manager([ModelConfig("half", path)], [MODELS]) as (manager, metrics): ...
    server = grpc.server(pool, interceptors=[HoldUntilDeadline("/Predict")])
    requests_counted(metrics, api="grpc_predict", code="DEADLINE_EXCEEDED")
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from appliance.api.metrics import Metrics
from appliance.config import ModelConfig
from appliance.serving.batching import BatchingPolicy
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

# As the application batches: each model as its batching_params.pbtxt asks (digits batches).
AS_THE_APPLICATION = BatchingPolicy(enabled=None, wait_seconds=30)


@contextlib.contextmanager
def loaded_manager(
    configs: Sequence[ModelConfig], roots: Sequence[Path], batching: BatchingPolicy | None = AS_THE_APPLICATION
) -> Iterator[tuple[ModelManager, Metrics]]:
    """A started manager over ``configs`` and the model ``roots``, every version loaded, and the metrics it
    reports to; stopped on leaving."""
    metrics = Metrics()
    manager = ModelManager(
        Repository(list(configs), list(roots)),
        LocalTFRuntime(device="cpu", run_timeout_ms=30_000),
        poll_seconds=0,
        observer=metrics.observer,
        batching=batching,
    )
    manager.start()
    try:
        assert manager.wait_until_ready(120)
        yield manager, metrics
    finally:
        manager.stop()


def samples(metrics: Metrics) -> dict[tuple, float]:
    """Every sample of a scrape of ``metrics``, keyed by (sample name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
    }


def counted(metrics: Metrics, name: str, **labels) -> float:
    """The value of sample ``name`` with exactly these labels in a scrape of ``metrics`` (0 when absent)."""
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def requests_counted(metrics: Metrics, **labels) -> float:
    """The requests counted with these labels (those not given: empty, as for a call no model took)."""
    return counted(metrics, "appliance_requests_total", **({"model": "", "version": "", "backend": ""} | labels))


class HoldUntilDeadline(grpc.ServerInterceptor):
    """Holds each call of the method whose name ends with ``method`` before its servicer until its deadline has
    passed, as a busy server would."""

    def __init__(self, method: str):
        self._method = method

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if not handler_call_details.method.endswith(self._method):
            return handler

        def late(request, context):
            while context.time_remaining() > 0:
                time.sleep(0.01)
            return handler.unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            late, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
