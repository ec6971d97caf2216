"""The statistics extension: per model version, the inferences and their times (Triton's /v2/models/stats).

    statistics = ModelStatistics(manager, metrics)
    statistics.models("digits", None)   # {"model_stats": [{"name": "digits", "version": "2", "inference_count": ...}]}

Written from the counters the metrics keep (:meth:`Metrics.activity`), for the requests of every API (TF Serving
REST and gRPC, v2, ``/predict``) that a version of this appliance answered:

- ``success`` / ``fail``: requests answered with 2xx or OK / with an error, and their time from receiving each
  to its response being ready;
- ``execution_count`` and ``inference_count``: for a batched version, the batches run and their rows (padding
  included), with ``batch_stats`` counting the batches of each size; for the others, the successful requests
  (rows are not counted there);
- ``queue``, ``compute_input``, ``compute_infer`` and ``compute_output`` are not measured: 0.
"""

from __future__ import annotations

from ...errors import NotFound
from ...serving.manager import ModelManager, State
from ..metrics import Metrics, VersionActivity
from .dataplane import version_number

UNMEASURED = {"count": 0, "ns": 0}


class ModelStatistics:
    """Triton's statistics documents for the versions one model manager serves."""

    def __init__(self, manager: ModelManager, metrics: Metrics):
        self._manager = manager
        self._metrics = metrics

    def models(self, name: str | None, version: str | None) -> dict:
        """Triton's statistics document ({"model_stats": [...]}) for every model (``name`` None), one model's
        versions, or one version; NotFound for a model or version that is not served."""
        served = self._served(name, version_number(version))
        activity = self._metrics.activity()
        return {
            "model_stats": [
                _version_stats(model, number, activity.get((model, number)) or VersionActivity())
                for model, number in served
            ]
        }

    def _served(self, name: str | None, version: int | None) -> list[tuple[str, int]]:
        """The (model, version) pairs asked for that are AVAILABLE, by name then version."""
        if name is None:
            return sorted(
                (summary.name, status.version)
                for summary in self._manager.summaries()
                for status in summary.versions
                if status.state is State.AVAILABLE
            )
        statuses = self._manager.status(name, version)  # NotFound for a model or version it does not know
        available = sorted(s.version for s in statuses if s.state is State.AVAILABLE)
        if not available:
            states = ", ".join(f"{s.version} ({s.state.value})" for s in statuses)
            what = f"version {version} of model {name}" if version is not None else f"model {name}"
            raise NotFound(f"{what} is not served: no version is AVAILABLE. Versions: {states}.")
        return [(name, number) for number in available]


def _duration(count: int, seconds: float) -> dict:
    return {"count": count, "ns": round(seconds * 1e9)}


def _version_stats(name: str, version: int, activity: VersionActivity) -> dict:
    batches = activity.batches
    if batches:
        executions = sum(batches.values())
        inferences = sum(rows * count for rows, count in batches.items())
    else:
        executions = inferences = activity.succeeded
    return {
        "name": name,
        "version": str(version),
        "last_inference": round(activity.last_request * 1000),
        "inference_count": inferences,
        "execution_count": executions,
        "inference_stats": {
            "success": _duration(activity.succeeded, activity.succeeded_seconds),
            "fail": _duration(activity.failed, activity.failed_seconds),
            "queue": dict(UNMEASURED),
            "compute_input": dict(UNMEASURED),
            "compute_infer": dict(UNMEASURED),
            "compute_output": dict(UNMEASURED),
        },
        "batch_stats": [
            {
                "batch_size": rows,
                "compute_input": {"count": count, "ns": 0},
                "compute_infer": {"count": count, "ns": 0},
                "compute_output": {"count": count, "ns": 0},
            }
            for rows, count in sorted(batches.items())
        ],
    }
