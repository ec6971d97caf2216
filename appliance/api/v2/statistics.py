"""The statistics extension: per model version, the inferences and their times (Triton's /v2/models/stats).

    statistics = ModelStatistics(manager, metrics)
    statistics.models("digits", None)   # {"model_stats": [{"name": "digits", "version": "2", "inference_count": ...}]}

PLACEHOLDER: the interface the REST and gRPC wires call; its owner implements it.
"""

from __future__ import annotations

from ...errors import Unimplemented
from ...serving.manager import ModelManager
from ..metrics import Metrics


class ModelStatistics:
    def __init__(self, manager: ModelManager, metrics: Metrics):
        self._manager = manager
        self._metrics = metrics

    def models(self, name: str | None, version: str | None) -> dict:
        """Triton's statistics document ({"model_stats": [...]}) for every model (``name`` None), one model's
        versions, or one version; NotFound for a model or version that is not served."""
        raise Unimplemented("the statistics extension is not built yet")
