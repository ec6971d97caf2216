"""The appliance's own control API: which version of a model answers unversioned requests, and reloading it.

    PUT /v1/appliance/models/digits/chosen   {"version": 1}      (or {"version": "1"}, {"label": "stable"})
    GET /v1/appliance/models/digits/chosen
    -> {"name": "digits", "chosen_version": 1, "versions": [{"version": 2, "state": "AVAILABLE", ...}, ...], ...}
    POST /v1/appliance/models/digits/reload  (empty body or {})  -> the same document
    POST /v1/appliance/models/digits/compare {"version": 1, "against": 2}   (optional "limit", "log": a file path)
    GET  /v1/appliance/models/digits/compare  -> {"state": "running", "done": 120, "total": 500, "result": null, ...}
                                                 ("state": "none" before the first comparison)
    DELETE /v1/appliance/models/digits/compare   (cancels it; the figures so far become its result)
    PUT /v1/appliance/models/digits/warmup   {"from_recent_requests": true}   (optional "limit": 1 to 1000, 100)
    GET /v1/appliance/models/digits/warmup
    -> {"model": "digits", "from_recent_requests": true, "limit": 100, "records": 100, "last_load": {...} | null}
    PUT /v1/appliance/models/digits/shadow {"version": 2, "share": 0.1}   (share optional, 0.1 by default)
    GET /v1/appliance/models/digits/shadow -> {"active": true, "version": 2, "compared": 120,
                                               "agreement": {"class": 0.97, ...}, "fails_on_candidate": 0, ...}
    DELETE /v1/appliance/models/digits/shadow  (off; answers the figures until then)

The tray's version menu and this endpoint make the same call on the model
manager; the choice is remembered across restarts. A reload loads every
AVAILABLE version afresh from disk and swaps it in without failing a request. A comparison replays recorded
requests (or the versions' warm-up requests) against two versions in the background (see
:mod:`appliance.serving.compare`); GET follows its progress and gives its result. Warm-up from recent requests
(see :mod:`appliance.serving.recent_warmup`) warms each new version with the model's newest recorded requests.
Shadow traffic sends a share of the live requests answered by other versions also to a candidate version (see
:mod:`appliance.serving.shadow`); set over this API, it lasts until the appliance stops (the tray's choice is
remembered).
"""

from __future__ import annotations

import json
from pathlib import Path

import bottle

from ..errors import InvalidArgument, NotFound
from ..serving.compare import DEFAULT_LIMIT, Comparisons
from ..serving.manager import ModelManager
from ..serving.recent_warmup import DEFAULT_LIMIT as DEFAULT_WARMUP_LIMIT
from ..serving.recent_warmup import RecentRequestWarmup
from ..serving.request_log import RequestLog
from ..serving.runtime.warmup import MAX_RECORDS
from ..serving.shadow import DEFAULT_SHARE, off_json
from . import codec
from .metrics import served
from .pages import summary_json
from .responses import dumps, json_response

PATH = "/v1/appliance/models/<name>/chosen"
RELOAD_PATH = "/v1/appliance/models/<name>/reload"
COMPARE_PATH = "/v1/appliance/models/<name>/compare"
WARMUP_PATH = "/v1/appliance/models/<name>/warmup"
SHADOW_PATH = "/v1/appliance/models/<name>/shadow"
# GET .../compare before any comparison of the model ran.
NO_COMPARISON = {
    "version": None,
    "against": None,
    "state": "none",
    "done": 0,
    "total": 0,
    "error": None,
    "summary": None,
    "result": None,
}


class ControlAPI:
    """Reading and changing a model's chosen version, and reloading a model, over HTTP."""

    def __init__(
        self,
        manager: ModelManager,
        comparisons: Comparisons | None = None,
        recent_warmup: RecentRequestWarmup | None = None,
    ):
        self._manager = manager
        self._comparisons = comparisons or Comparisons(manager)
        self._recent_warmup = recent_warmup or RecentRequestWarmup(manager.request_log or RequestLog())

    def chosen(self, name: str) -> bottle.HTTPResponse:
        summary = self._manager.summary(name)
        return served(json_response(dumps(summary_json(summary))), name, summary.chosen_version)

    def choose(self, name: str, body: bytes) -> bottle.HTTPResponse:
        document = codec.parse_document(body)
        unknown = sorted(set(document) - {"version", "label"})
        if unknown or len(document) != 1:
            raise InvalidArgument('send exactly one of {"version": <number>} or {"label": "<label>"}')
        version, label = document.get("version"), document.get("label")
        if "version" in document:
            version = codec.version_number(version)
        if "label" in document and not isinstance(label, str):
            raise InvalidArgument(f"'label' must be a string, not {json.dumps(label)}")
        self._manager.choose(name, version, label)
        return self.chosen(name)

    def reload(self, name: str, body: bytes) -> bottle.HTTPResponse:
        if body.strip() and codec.parse_document(body) != {}:
            raise InvalidArgument("a reload takes no arguments: send an empty body or {}")
        self._manager.reload(name)
        return self.chosen(name)

    def compare(self, name: str, body: bytes) -> bottle.HTTPResponse:
        document = codec.parse_document(body)
        unknown = sorted(set(document) - {"version", "against", "limit", "log"})
        if unknown or "version" not in document or "against" not in document:
            raise InvalidArgument(
                'send {"version": <number>, "against": <number>}, optionally with "limit": <number> '
                'and "log": "<path of a request log file>"' + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        limit = document.get("limit", DEFAULT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidArgument(f"'limit' must be a positive number of requests, not {json.dumps(limit)}")
        log = document.get("log")
        if "log" in document and (not isinstance(log, str) or not Path(log).is_absolute()):
            raise InvalidArgument(f"'log' must be the absolute path of a request log file, not {json.dumps(log)}")
        version, against = (_version(document, key) for key in ("version", "against"))
        comparison = self._comparisons.start(name, version, against, Path(log) if isinstance(log, str) else None, limit)
        return served(json_response(dumps(comparison.to_json()), 202), name, None)

    def comparison(self, name: str) -> bottle.HTTPResponse:
        comparison = self._comparisons.latest(name)
        document = comparison.to_json() if comparison else {**NO_COMPARISON, "model": name}
        return served(json_response(dumps(document)), name, None)

    def cancel_comparison(self, name: str) -> bottle.HTTPResponse:
        comparison = self._comparisons.latest(name)
        if comparison is None:
            raise NotFound(f"no comparison of model {name} has run: start one with POST")
        comparison.cancel()
        comparison.wait(10)  # the request being replayed finishes first
        return served(json_response(dumps(comparison.to_json())), name, None)

    def warmup(self, name: str) -> bottle.HTTPResponse:
        self._manager.summary(name)  # NotFound for a model not served
        warmup = self._recent_warmup
        last = warmup.last_replay.get(name)
        document = {
            "model": name,
            "from_recent_requests": warmup.enabled(name),
            "limit": warmup.limit(name),
            "records": warmup.records(name),
            "last_load": None
            if last is None
            else {"version": last.version, "replayed": last.replayed, "skipped": last.skipped},
        }
        return served(json_response(dumps(document)), name, None)

    def set_warmup(self, name: str, body: bytes) -> bottle.HTTPResponse:
        document = codec.parse_document(body)
        unknown = sorted(set(document) - {"from_recent_requests", "limit"})
        enabled = document.get("from_recent_requests")
        if unknown or not isinstance(enabled, bool):
            raise InvalidArgument(
                'send {"from_recent_requests": true} or {"from_recent_requests": false}, optionally with '
                f'"limit": <number of requests, 1 to {MAX_RECORDS}>'
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        limit = document.get("limit", DEFAULT_WARMUP_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_RECORDS:
            raise InvalidArgument(
                f"'limit' must be a number of requests from 1 to {MAX_RECORDS}, not {json.dumps(limit)}"
            )
        self._manager.summary(name)
        self._recent_warmup.set(name, limit if enabled else 0)
        return self.warmup(name)

    def shadow(self, name: str) -> bottle.HTTPResponse:
        self._manager.summary(name)  # NotFound for a model not served
        figures = self._manager.shadow.figures(name)
        return served(json_response(dumps(figures.to_json() if figures else off_json(name))), name, None)

    def set_shadow(self, name: str, body: bytes) -> bottle.HTTPResponse:
        document = codec.parse_document(body)
        unknown = sorted(set(document) - {"version", "share"})
        if unknown or "version" not in document:
            raise InvalidArgument(
                'send {"version": <number>}, optionally with "share": <a number in (0, 1]>'
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        version = _version(document, "version")
        share = document.get("share", DEFAULT_SHARE)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise InvalidArgument(f"'share' must be a number greater than 0 and at most 1, not {json.dumps(share)}")
        known = [v.version for v in self._manager.summary(name).versions]
        if version not in known:
            listed = ", ".join(map(str, known)) or "none"
            raise NotFound(f"model {name} has no version {version} to shadow requests to (its versions: {listed})")
        figures = self._manager.shadow.set(name, version, float(share))
        return served(json_response(dumps(figures.to_json())), name, None)

    def clear_shadow(self, name: str) -> bottle.HTTPResponse:
        self._manager.summary(name)
        figures = self._manager.shadow.clear(name)
        return served(json_response(dumps(figures.to_json() if figures else off_json(name))), name, None)


def _version(document: dict, key: str) -> int:
    try:
        return codec.version_number(document[key])
    except InvalidArgument:
        raise InvalidArgument(
            f"'{key}' must be a positive integer (2 or \"2\"), not {json.dumps(document[key])}"
        ) from None
