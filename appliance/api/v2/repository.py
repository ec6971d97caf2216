"""The model repository extension: list the models, load and unload them (Triton's /v2/repository/...).

    repository = ModelRepository(manager)
    repository.index(ready_only=False)   # [{"name": "digits", "version": "2", "state": "READY", "reason": ""}, ...]
    repository.unload("digits")          # every version unloaded; requests get NotFound until it is loaded
    repository.load("digits")            # its versions loaded again (a loaded model: reloaded from disk)

The repository is the appliance's own (its config and models folder): a request names a model, never a path,
so Triton's model upload (the ``config`` and ``file:...`` load parameters) is refused. An unload lasts until
the model is loaded again or the appliance restarts, as in Triton.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import InvalidArgument
from ...serving.manager import ModelManager, State, VersionStatus

# Triton's state names for the manager's (START: not loaded yet, END: unloaded or failed).
STATES = {
    State.START: "UNAVAILABLE",
    State.LOADING: "LOADING",
    State.AVAILABLE: "READY",
    State.UNLOADING: "UNLOADING",
    State.END: "UNAVAILABLE",
}
READY = STATES[State.AVAILABLE]
# tritonclient's unload_model() always sends it; the appliance has no ensembles, so there are no dependents.
UNLOAD_PARAMETERS = frozenset({"unload_dependents"})
HOW_TO_ADD = "to serve another model, add it to the appliance's models folder or config (see docs/models.md)"


class ModelRepository:
    """Triton's repository index, load and unload, over one model manager."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    def index(self, ready_only: bool = False) -> list[dict]:
        """Every version of every model: {"name", "version", "state" (Triton's: READY, UNAVAILABLE, LOADING,
        UNLOADING), "reason"}; ``ready_only``: the READY ones.

        A model without any version is one entry with no "version", UNAVAILABLE, and the reason.
        """
        entries = []
        for summary in sorted(self._manager.summaries(), key=lambda s: s.name):
            if not summary.versions:
                why = "unloaded by request" if summary.unloaded else f"no version under {summary.base_path}"
                entries.append({"name": summary.name, "state": "UNAVAILABLE", "reason": why})
            for status in sorted(summary.versions, key=lambda v: v.version):
                entries.append(
                    {
                        "name": summary.name,
                        "version": str(status.version),
                        "state": STATES[status.state],
                        "reason": _reason(status, summary.unloaded),
                    }
                )
        return [entry for entry in entries if entry["state"] == READY] if ready_only else entries

    def load(self, name: str, parameters: Mapping[str, object] | None = None) -> None:
        """Load model ``name`` (a configured one); returns once it is served, or raises why not."""
        for key in parameters or {}:
            if key == "config" or key.startswith("file:"):
                raise InvalidArgument(
                    f'load parameter "{key}" is not supported: the appliance loads only the models of its config '
                    f"and models folder, by name; {HOW_TO_ADD}"
                )
            raise InvalidArgument(f'unknown load parameter "{key}": a load takes no parameters')
        self._manager.load_model(name)

    def unload(self, name: str, parameters: Mapping[str, object] | None = None) -> None:
        """Unload every version of model ``name``; returns once no request is answered by it."""
        for key, value in (parameters or {}).items():
            if key not in UNLOAD_PARAMETERS:
                raise InvalidArgument(f'unknown unload parameter "{key}": the only one is "unload_dependents"')
            if not isinstance(value, bool):
                raise InvalidArgument(f'unload parameter "{key}" must be true or false, not {value!r}')
        self._manager.unload_model(name)


def _reason(status: VersionStatus, unloaded: bool) -> str:
    """Why a version is not READY: its load error, or that it was unloaded; "" for the others."""
    if status.error is not None:
        return status.error.message
    if status.state is State.END:
        return "unloaded by request" if unloaded else "unloaded"
    return ""
