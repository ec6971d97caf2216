"""The appliance's own control API: which version of a model answers unversioned requests, and reloading it.

    PUT /v1/appliance/models/digits/chosen   {"version": 1}      (or {"version": "1"}, {"label": "stable"})
    GET /v1/appliance/models/digits/chosen
    -> {"name": "digits", "chosen_version": 1, "versions": [{"version": 2, "state": "AVAILABLE", ...}, ...], ...}
    POST /v1/appliance/models/digits/reload  (empty body or {})  -> the same document

The tray's version menu and this endpoint make the same call on the model
manager; the choice is remembered across restarts. A reload loads every
AVAILABLE version afresh from disk and swaps it in without failing a request.
"""

from __future__ import annotations

import json

import bottle

from ..errors import InvalidArgument
from ..serving.manager import ModelManager
from . import codec
from .metrics import served
from .pages import summary_json
from .responses import dumps, json_response

PATH = "/v1/appliance/models/<name>/chosen"
RELOAD_PATH = "/v1/appliance/models/<name>/reload"


class ControlAPI:
    """Reading and changing a model's chosen version, and reloading a model, over HTTP."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

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
