"""Which backend answers a request for a model: the remote TF Serving, the local runtime, or one then the other.

    router = Router(manager, remote)
    router.plan("digits", version=None, label=None)   # -> ["remote", "local"] while the remote is healthy

The plan follows the model's routing mode (``prefer_remote`` by default when a
remote is configured): the remote is tried only while its circuit is closed
and it serves the version asked for; the local runtime is the fallback when
the model exists here. Unversioned requests go to the model's chosen version
on the remote too, when the remote serves it, so the tray's choice holds.
"""

from __future__ import annotations

from ..config import Routing
from .manager import ModelManager
from .remote import Remote

REMOTE, LOCAL = "remote", "local"


class Router:
    """Plans the backends to try, in order, for one request."""

    def __init__(self, manager: ModelManager, remote: Remote | None):
        self._manager = manager
        self.remote = remote

    def remote_version(self, model: str, version: int | None, label: str | None) -> int | None:
        """The version to ask the remote for: the one requested, else the local chosen one when it has it."""
        if version is not None or label is not None or self.remote is None:
            return version
        chosen = self._manager.chosen_version(model)
        return chosen if chosen is not None and self.remote.serves(model, chosen) else None

    def plan(self, model: str, version: int | None, label: str | None) -> list[str]:
        if self.remote is None:
            return [LOCAL]
        mode = self.remote.settings.routing_of(model)
        if mode is Routing.LOCAL_ONLY:
            return [LOCAL]
        if mode is Routing.REMOTE_ONLY:
            return [REMOTE]
        local = model in self._manager.model_names()
        if mode is Routing.PREFER_LOCAL:
            return [LOCAL, REMOTE] if local else [REMOTE]
        wanted = self.remote_version(model, version, label)
        remote_ok = self.remote.usable() and self.remote.serves(model, wanted)
        if not local:
            return [REMOTE]
        return [REMOTE, LOCAL] if remote_ok else [LOCAL]
