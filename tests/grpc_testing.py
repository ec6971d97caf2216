"""What the gRPC services' tests share: reading the metrics a call was counted in, and holding a call past its
deadline as a busy server would.

    server = grpc.server(pool, interceptors=[HoldUntilDeadline("/Predict")])
    requests_counted(metrics, api="grpc_predict", code="DEADLINE_EXCEEDED")
"""

from __future__ import annotations

import time

import grpc
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from appliance.api.metrics import Metrics


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
