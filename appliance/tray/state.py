"""What the tray shows and the commands it sends: the contract between the tray and the application.

    state = TrayState(status="ready", detail="ready: 2 models", url="http://127.0.0.1:8501",
                      device="CPU (AMD EPYC)", backend="local", start_at_login=False,
                      models=(ModelItem("digits", 2, (VersionItem(2, "AVAILABLE", labels=("stable",)),)),))
    tray = Tray(lambda: state, commands)    # commands: anything with the TrayCommands methods

The application builds a :class:`TrayState` from its own state whenever the tray asks, and implements
:class:`TrayCommands`; the tray never reaches further into the application than this. Nothing here imports
pystray, so the application can import this module with or without a display.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class VersionItem:
    """One version of a model: its servable state, its load error if any, the labels that point at it."""

    version: int
    state: str  # "START" | "LOADING" | "AVAILABLE" | "UNLOADING" | "END"
    error: str | None = None  # set when the version failed to load
    labels: tuple[str, ...] = ()  # version labels pointing at it, e.g. ("stable",)


@dataclass(frozen=True)
class ComparisonItem:
    """A model's running or last comparison of two versions on recorded requests, or why one was refused."""

    version: int  # the version compared...
    against: int  # ...with this one (the chosen version when the tray started it)
    state: str  # "running" | "done" | "cancelled" | "failed" | "refused"
    done: int = 0  # requests replayed so far
    total: int = 0  # requests to replay
    summary: str | None = None  # once finished, e.g. "v1 agrees with v2 on 96.8% of 500 requests; 3 fail on v1"
    error: str | None = None  # why it failed or was refused


@dataclass(frozen=True)
class ModelItem:
    """One served model, its chosen version (the one ``/predict`` uses) and its versions, newest first."""

    name: str
    chosen_version: int | None
    versions: tuple[VersionItem, ...]
    recording: bool = False  # its requests are recorded in the local request log
    comparison: ComparisonItem | None = None  # its running or last comparison of two versions
    recorded_bytes: int = 0  # the size of its recorded requests on disk
    recorded_files: int = 0
    warmup_from_recent_requests: bool = False  # its new versions warm up with its recent recorded requests
    has_recorded_requests: bool = False  # recorded requests (or a warm-up snapshot of them) are on disk
    shadow_version: int | None = None  # the candidate version its live requests are shadowed to, if any
    shadow_summary: str | None = None  # e.g. "v2 agrees on 97.2% of 1 203 requests" while shadowing


@dataclass(frozen=True)
class TrayState:
    """Everything the tray shows: the icon's status, the tooltip line, the status section and the models."""

    status: str  # "loading" | "ready" | "degraded" | "error"
    detail: str  # one line for the tooltip, e.g. "loading digits v2 (1/3)" or "ready: 2 models"
    url: str | None  # e.g. "http://127.0.0.1:8501"; None when the REST API is off
    device: str  # e.g. "CPU (AMD EPYC)" or "GPU (NVIDIA RTX 4090), memory growth on"
    backend: str  # "local" (later "remote"/"local fallback")
    models: tuple[ModelItem, ...]
    start_at_login: bool
    token_in_use: bool = False  # clients need the access token: the menu offers to copy it
    grpc_address: str | None = None  # e.g. "127.0.0.1:8500" (" and unix:/path" with a socket); None when off
    attached: bool = False  # the tray of a system service this process did not start: no local-only items,
    #                         "Close (the service keeps running)" instead of Quit
    read_only: str | None = None  # why the versions cannot be switched (shown greyed out), None when they can


class TrayCommands(Protocol):
    """The named commands the tray sends; implemented by the application.

    They are called on the tray's GUI thread: return quickly (hand long work to another thread) and call
    ``Tray.refresh()`` once the state they change has changed.
    """

    def switch_version(self, model: str, version: int) -> None: ...

    def open_docs(self) -> None: ...

    def copy_url(self) -> None: ...

    def copy_grpc_address(self) -> None: ...

    def copy_token(self) -> None: ...

    def open_models_folder(self) -> None: ...

    def view_logs(self) -> None: ...

    def set_start_at_login(self, enabled: bool) -> None: ...

    def set_recording(self, model: str, enabled: bool) -> None: ...

    def delete_recorded_requests(self, model: str) -> None: ...

    def compare_versions(self, model: str, version: int) -> None: ...

    def cancel_comparison(self, model: str) -> None: ...

    def set_warmup_from_recent_requests(self, model: str, enabled: bool) -> None: ...

    def set_shadow(self, model: str, version: int | None) -> None: ...

    def quit(self) -> None: ...
