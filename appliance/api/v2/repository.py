"""The model repository extension: list the models, load and unload them (Triton's /v2/repository/...).

    repository = ModelRepository(manager)
    repository.index(ready_only=False)   # [{"name": "digits", "version": "2", "state": "READY", "reason": ""}, ...]
    repository.unload("digits")          # every version unloaded; requests get NotFound until it is loaded
    repository.load("digits")            # its versions loaded again (a loaded model: reloaded from disk)

PLACEHOLDER: the interface the REST and gRPC wires call; its owner implements it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import Unimplemented
from ...serving.manager import ModelManager


class ModelRepository:
    def __init__(self, manager: ModelManager):
        self._manager = manager

    def index(self, ready_only: bool = False) -> list[dict]:
        """Every version of every model: {"name", "version", "state" (Triton's: READY, UNAVAILABLE, LOADING,
        UNLOADING), "reason"}; ``ready_only``: the READY ones."""
        raise Unimplemented("the model repository extension is not built yet")

    def load(self, name: str, parameters: Mapping[str, object] | None = None) -> None:
        """Load model ``name`` (a configured one); returns once it is served, or raises why not."""
        raise Unimplemented("the model repository extension is not built yet")

    def unload(self, name: str, parameters: Mapping[str, object] | None = None) -> None:
        """Unload every version of model ``name``; returns once no request is answered by it."""
        raise Unimplemented("the model repository extension is not built yet")
