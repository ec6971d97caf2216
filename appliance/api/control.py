"""The appliance's own control API: which version of a model answers unversioned requests, and reloading it.

    PUT /v1/appliance/models/digits/chosen   {"version": 1}      (or {"version": "1"}, {"label": "stable"})
    GET /v1/appliance/models/digits/chosen
    -> {"name": "digits", "chosen_version": 1, "versions": [{"version": 2, "state": "AVAILABLE", ...}, ...], ...}
    POST /v1/appliance/models/digits/reload  (empty body or {})  -> the same document
    POST /v1/appliance/models/digits/compare {"version": 1, "against": 2}   (optional "limit", "log": a file path)
    GET  /v1/appliance/models/digits/compare  -> {"state": "running", "done": 120, "total": 500, "result": null, ...}
                                                 ("state": "none" before the first comparison)
    DELETE /v1/appliance/models/digits/compare   (cancels it; the figures so far become its result)

The tray's version menu and this endpoint make the same call on the model
manager; the choice is remembered across restarts. A reload loads every
AVAILABLE version afresh from disk and swaps it in without failing a request. A comparison replays recorded
requests (or the versions' warm-up requests) against two versions in the background (see
:mod:`appliance.serving.compare`); GET follows its progress and gives its result.
"""

from __future__ import annotations

import json
from pathlib import Path

import bottle

from ..errors import InvalidArgument, NotFound
from ..serving.compare import DEFAULT_LIMIT, Comparisons
from ..serving.manager import ModelManager
from . import codec
from .metrics import served
from .pages import summary_json
from .responses import dumps, json_response

PATH = "/v1/appliance/models/<name>/chosen"
RELOAD_PATH = "/v1/appliance/models/<name>/reload"
COMPARE_PATH = "/v1/appliance/models/<name>/compare"
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

    def __init__(self, manager: ModelManager, comparisons: Comparisons | None = None):
        self._manager = manager
        self._comparisons = comparisons or Comparisons(manager)

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


def _version(document: dict, key: str) -> int:
    try:
        return codec.version_number(document[key])
    except InvalidArgument:
        raise InvalidArgument(
            f"'{key}' must be a positive integer (2 or \"2\"), not {json.dumps(document[key])}"
        ) from None
