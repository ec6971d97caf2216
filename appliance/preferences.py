"""The user's preferences: choices made in the app that must survive a restart, kept in one JSON file.

    store = PreferenceStore(preferences_file())
    store.set_chosen_version("digits", 1)   # saved at once, atomically
    store.chosen_version("digits")          # -> 1
    store.set_chosen_version("digits", None)  # forget it: the newest version is chosen again

The file is ``{"format": 1, "chosen_versions": {"digits": 1}}``. A missing file means defaults; a file that cannot
be read or has the wrong shape also means defaults, with a warning naming it, so a bad file never stops the app.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import threading
from pathlib import Path

from .paths import write_file_atomically

log = logging.getLogger(__name__)

_FORGET = object()  # PreferenceStore._put: remove the model's entry

FORMAT = 1


@dataclasses.dataclass
class Preferences:
    """Everything the preferences file holds."""

    chosen_versions: dict[str, int] = dataclasses.field(default_factory=dict)
    """Model name -> the version the user chose to serve by default."""
    request_log_sampling: dict[str, float] = dataclasses.field(default_factory=dict)
    """Model name -> the share of its requests recorded, as the user set it in the tray (0: not recorded)."""
    warmup_from_recent_requests: dict[str, int] = dataclasses.field(default_factory=dict)
    """Model name -> how many of its recent requests warm its new versions up, as the user set it (0: off)."""
    shadow: dict[str, dict[str, float] | None] = dataclasses.field(default_factory=dict)
    """Model name -> its shadow traffic as the user set it in the tray: {"version": 2, "share": 0.1}, or None: off."""


def load_preferences(path: Path) -> Preferences:
    """The preferences in ``path``; defaults when it is missing, or (with a warning) unreadable or malformed."""
    try:
        document = json.loads(path.read_bytes())
        return _from_document(document)
    except FileNotFoundError:
        return Preferences()
    except (OSError, ValueError, RecursionError) as e:  # bad JSON or UTF-8 is a ValueError; deep nesting recurses
        log.warning("ignoring the preferences file %s, using defaults: %s", path, e)
        return Preferences()


def save_preferences(path: Path, prefs: Preferences) -> None:
    """Write ``prefs`` to ``path`` atomically (old file or new, never half of one), readable by the owner only."""
    document = {
        "format": FORMAT,
        "chosen_versions": dict(sorted(prefs.chosen_versions.items())),
        "request_log_sampling": dict(sorted(prefs.request_log_sampling.items())),
        "warmup_from_recent_requests": dict(sorted(prefs.warmup_from_recent_requests.items())),
        "shadow": dict(sorted(prefs.shadow.items())),
    }
    write_file_atomically(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"), mode=0o600)


def _from_document(document: object) -> Preferences:
    """Preferences from parsed JSON, ignoring keys this version does not know; ValueError when malformed."""
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, found {type(document).__name__}")
    if document.get("format") != FORMAT:
        raise ValueError(f"unknown format {document.get('format')!r} (this version reads format {FORMAT})")
    chosen = document.get("chosen_versions", {})
    if not isinstance(chosen, dict) or not all(_is_version(v) for v in chosen.values()):
        raise ValueError('"chosen_versions" must map model names to version numbers')
    sampling = document.get("request_log_sampling", {})  # absent in files of earlier versions
    if not isinstance(sampling, dict) or not all(_is_rate(v) for v in sampling.values()):
        raise ValueError('"request_log_sampling" must map model names to numbers from 0 to 1')
    warmup = document.get("warmup_from_recent_requests", {})  # absent in files of earlier versions
    if not isinstance(warmup, dict) or not all(_is_version(v) for v in warmup.values()):
        raise ValueError('"warmup_from_recent_requests" must map model names to numbers of requests (0: off)')
    shadow = document.get("shadow", {})  # absent in files of earlier versions
    if not isinstance(shadow, dict) or not all(entry is None or _is_shadow(entry) for entry in shadow.values()):
        raise ValueError('"shadow" must map model names to null or {"version": <number>, "share": <0 to 1>}')
    return Preferences(
        chosen_versions=dict(chosen),
        request_log_sampling={k: float(v) for k, v in sampling.items()},
        warmup_from_recent_requests=dict(warmup),
        shadow={
            k: None if v is None else {"version": v["version"], "share": float(v["share"])} for k, v in shadow.items()
        },
    )


def _is_shadow(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"version", "share"}
        and _is_version(value["version"])
        and _is_rate(value["share"])
        and value["share"] > 0
    )


def _is_rate(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def _is_version(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class PreferenceStore:
    """The app's preferences, loaded once and saved on every change; safe to use from any thread."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._prefs = load_preferences(path)

    def chosen_version(self, model: str) -> int | None:
        """The version the user chose for ``model``, or None when they chose none."""
        with self._lock:
            return self._prefs.chosen_versions.get(model)

    def set_chosen_version(self, model: str, version: int | None) -> None:
        """Remember (or, with None, forget) the user's version for ``model``; saved before this returns.

        When the save fails the OSError propagates and the held preferences stay as they were.
        """
        if version is not None and not _is_version(version):
            raise ValueError(f"a version is a non-negative integer, not {version!r}")
        self._put("chosen_versions", model, _FORGET if version is None else version)

    def request_log_sampling(self) -> dict[str, float]:
        """The share of requests recorded that the user set per model (0: not recorded)."""
        with self._lock:
            return dict(self._prefs.request_log_sampling)

    def set_request_log_sampling(self, model: str, rate: float) -> None:
        """Remember the share of ``model``'s requests to record (0: none); saved before this returns."""
        if not _is_rate(rate):
            raise ValueError(f"a sampling rate is a number from 0 to 1, not {rate!r}")
        self._put("request_log_sampling", model, float(rate))

    def warmup_from_recent_requests(self) -> dict[str, int]:
        """How many recent requests warm each model's new versions up, as the user set it (0: off)."""
        with self._lock:
            return dict(self._prefs.warmup_from_recent_requests)

    def set_warmup_from_recent_requests(self, model: str, limit: int) -> None:
        """Remember how many of ``model``'s recent requests warm its new versions up (0: off); saved before this
        returns."""
        if not _is_version(limit):
            raise ValueError(f"a number of requests is a non-negative integer, not {limit!r}")
        self._put("warmup_from_recent_requests", model, limit)

    def shadow(self) -> dict[str, dict[str, float] | None]:
        """The shadow traffic the user set per model: {"version": 2, "share": 0.1}, or None for off."""
        with self._lock:
            return copy.deepcopy(self._prefs.shadow)

    def set_shadow(self, model: str, version: int | None, share: float = 0.1) -> None:
        """Remember ``model``'s shadow traffic to ``version`` (None: off); saved before this returns."""
        entry = None if version is None else {"version": version, "share": float(share)}
        if entry is not None and not _is_shadow(entry):
            raise ValueError(f"shadow traffic needs a version and a share in (0, 1], not {version!r}, {share!r}")
        self._put("shadow", model, entry)

    def _put(self, table: str, model: str, value: object) -> None:
        """Set ``model``'s entry of the preferences' ``table`` (remove it for :data:`_FORGET`) and save; the change
        is kept only once saved (an OSError propagates and the held preferences stay as they were)."""
        with self._lock:
            changed = copy.deepcopy(self._prefs)
            entries = getattr(changed, table)
            if value is _FORGET:
                entries.pop(model, None)
            else:
                entries[model] = value
            save_preferences(self.path, changed)
            self._prefs = changed

    def snapshot(self) -> Preferences:
        """A copy of the current preferences."""
        with self._lock:
            return copy.deepcopy(self._prefs)
