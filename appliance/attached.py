"""The desktop app beside the system service: find a running service, and show a tray for it instead of serving.

    service = find_service(rest_port=8501)   # -> Service(url=..., grpc_address=...) | None
    if service is not None:
        attached = AttachedService(service)   # tray_state() and the TrayCommands, over HTTP
        tray = Tray(attached.tray_state, attached)
        attached.subscribe(tray.refresh)
        attached.on_quit(tray.stop)
        threading.Thread(target=attached.poll_forever, daemon=True).start()
        tray.run()

The service is found by its system-wide discovery file (``paths.system_discovery_file()``) naming a live process,
else by ``GET /health`` on loopback's REST port answering an appliance's JSON (not any program on that port). The
tray polls ``/health`` every 2 s and switches versions through the control API with the service's token where
this user may read it (the ``appliance`` group); where the service needs the token and it is unreadable, the tray
is read-only and says why.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from urllib.parse import quote

from . import paths
from .client import http_json
from .desktop import copy_text, open_in_desktop
from .instance import read_live_discovery
from .tray.state import ModelItem, TrayState, VersionItem

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
HEALTH_STATES = ("loading", "ready", "degraded")
READ_ONLY = "Read-only: ask an administrator to add you to the appliance group"
BACKEND = "system service"


@dataclasses.dataclass(frozen=True)
class Service:
    """A running system service: where its REST API answers, and gRPC's address when its discovery file says."""

    url: str
    grpc_address: str | None = None


def is_appliance_health(document: object) -> bool:
    """Whether ``document`` is an appliance's ``/health`` answer (status, version, device and models)."""
    return (
        isinstance(document, dict)
        and document.get("status") in HEALTH_STATES
        and isinstance(document.get("version"), str)
        and isinstance(document.get("device"), dict)
        and isinstance(document.get("models"), list)
    )


def probe_health(url: str, timeout: float = 2.0) -> dict | None:
    """``url``'s ``/health`` when an appliance answers there, else None (nothing listening, another program)."""
    try:
        _, document = http_json(url.rstrip("/") + "/health", timeout=timeout)
    except (OSError, ValueError):
        return None
    return document if is_appliance_health(document) else None


def find_service(rest_port: int | None) -> Service | None:
    """The system service, found by its discovery file, else by an appliance answering ``/health`` on
    ``127.0.0.1:rest_port`` (not probed when None or 0); None when neither."""
    discovery = read_live_discovery(paths.system_discovery_file())
    if discovery is not None and discovery.url:
        return Service(discovery.url, discovery.grpc_address)
    if rest_port:
        url = f"http://127.0.0.1:{rest_port}"
        if probe_health(url) is not None:
            return Service(url)
    return None


def read_token() -> str | None:
    """The service's token when this user may read it (root, the appliance group), else None."""
    try:
        return paths.system_token_file().read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def needs_token_to_switch(url: str) -> bool:
    """Whether the service at ``url`` asks the token for the control API's changes: a PUT for a model that cannot
    exist is refused with 401 before any route when it does (404 otherwise), and changes nothing either way."""
    try:
        status, _ = http_json(f"{url}/v1/appliance/models/%20/chosen", {"version": 1}, method="PUT", timeout=5)
    except (OSError, ValueError):
        return False  # unreachable now: the first switch will say
    return status == 401


class AttachedService:
    """The tray's state and commands for a running system service, over its HTTP API."""

    def __init__(self, service: Service):
        self.service = service
        self.token = read_token()
        self.read_only = READ_ONLY if self.token is None and needs_token_to_switch(service.url) else None
        self._health: dict | None = None
        self._problem: str | None = "connecting"
        self._lock = threading.Lock()
        self._listeners: list = []
        self._quit_callbacks: list = []
        self._wake = threading.Event()
        self._closing = False

    def subscribe(self, listener) -> None:
        """Call ``listener()`` whenever what the service reports changes."""
        self._listeners.append(listener)

    def on_quit(self, callback) -> None:
        self._quit_callbacks.append(callback)

    def poll_forever(self) -> None:
        """Read ``/health`` now, then every :data:`POLL_SECONDS` (or at once after a switch) until :meth:`quit`."""
        while not self._closing:
            self.poll()
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def poll(self) -> None:
        """Read the service's ``/health`` once; tell the listeners when it changed."""
        health, problem = None, None
        try:
            status, document = http_json(self.service.url + "/health", token=self.token, timeout=10)
        except (OSError, ValueError):
            problem = f"service unreachable at {self.service.url}, retrying"
        else:
            if is_appliance_health(document):
                health = document
            elif status == 401:
                problem = "the service asks for its token: ask an administrator to add you to the appliance group"
            else:
                problem = f"the service answered {status}: {document.get('error', 'not an appliance')}"
        with self._lock:
            changed = (health, problem) != (self._health, self._problem)
            if problem is not None and self._problem is None:
                log.warning("%s", problem)
            elif problem is None and self._problem is not None:
                log.info("the service at %s answers", self.service.url)
            self._health, self._problem = health, problem
        if changed:
            for listener in self._listeners:
                listener()

    def tray_state(self) -> TrayState:
        with self._lock:
            health, problem = self._health, self._problem
        models: tuple[ModelItem, ...] = ()
        if health is None:
            status, detail, device = "error", problem or "", "unknown"
        else:
            models = tuple(_model_item(m) for m in health["models"] if not m.get("unloaded"))
            status, detail = _status_line(health, models)
            device = _device_line(health["device"])
        return TrayState(
            status=status,
            detail=detail,
            url=self.service.url,
            grpc_address=self.service.grpc_address,
            device=device,
            backend=BACKEND,
            models=models,
            start_at_login=False,
            token_in_use=self.token is not None,
            attached=True,
            read_only=self.read_only,
        )

    # -- commands ------------------------------------------------------------

    def switch_version(self, model: str, version: int) -> None:
        """PUT the chosen version, off the tray's GUI thread (the service may load the version first)."""
        threading.Thread(target=self._switch, args=(model, version), name="appliance-switch", daemon=True).start()

    def _switch(self, model: str, version: int) -> None:
        url = f"{self.service.url}/v1/appliance/models/{quote(model, safe='')}/chosen"
        try:
            status, answer = http_json(url, {"version": version}, method="PUT", token=self.token)
        except (OSError, ValueError) as e:
            status, answer = 0, {"error": str(e)}
        if status != 200:
            log.warning("cannot switch %s to version %d: %s", model, version, answer.get("error", status))
        self._wake.set()  # show the outcome now

    def open_docs(self) -> None:
        open_in_desktop(self.service.url + "/")

    def copy_url(self) -> None:
        copy_text(self.service.url)

    def copy_grpc_address(self) -> None:
        if self.service.grpc_address is not None:
            copy_text(self.service.grpc_address)

    def copy_token(self) -> None:
        if self.token is not None:
            copy_text(self.token)

    # The menu hides these for a service: its models folder, logs, start and settings are its administrator's.
    def open_models_folder(self) -> None: ...

    def view_logs(self) -> None: ...

    def set_start_at_login(self, enabled: bool) -> None: ...

    def set_recording(self, model: str, enabled: bool) -> None: ...

    def delete_recorded_requests(self, model: str) -> None: ...

    def compare_versions(self, model: str, version: int) -> None: ...

    def cancel_comparison(self, model: str) -> None: ...

    def set_warmup_from_recent_requests(self, model: str, enabled: bool) -> None: ...

    def set_shadow(self, model: str, version: int | None) -> None: ...

    def quit(self) -> None:
        """Close the tray; the service keeps running."""
        log.info("closing the tray of the system service")
        self._closing = True
        self._wake.set()
        for callback in self._quit_callbacks:
            callback()


def _model_item(model: dict) -> ModelItem:
    labels: dict[int, list[str]] = {}
    for label, version in sorted((model.get("labels") or {}).items()):
        labels.setdefault(version, []).append(label)
    versions = tuple(
        VersionItem(v["version"], v["state"], v.get("error"), tuple(labels.get(v["version"], ())))
        for v in model["versions"]
    )
    return ModelItem(model["name"], model.get("chosen_version"), versions)


def _status_line(health: dict, models: tuple[ModelItem, ...]) -> tuple[str, str]:
    """The icon's status and the tooltip's line, as the desktop app words its own."""
    unavailable = [m.name for m in models if m.chosen_version is None]
    if health["status"] == "loading":
        return "loading", "loading models"
    if models and len(unavailable) == len(models):
        return "error", "no model could be loaded"
    if unavailable:
        return "degraded", f"unavailable: {', '.join(unavailable)}"
    return "ready", f"ready: {len(models)} model{'s' * (len(models) != 1)}"


def _device_line(device: dict) -> str:
    """As ``DeviceInfo.describe()`` words it, from its JSON (not imported: numpy would start threads before the
    quit signals are blocked)."""
    text = f"{device.get('type')} ({device.get('name')})"
    if device.get("type") == "GPU":
        text += f", {device.get('count')} visible, memory growth {'on' if device.get('memory_growth') else 'off'}"
    return text
