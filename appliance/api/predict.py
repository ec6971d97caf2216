"""The simple endpoint: ``POST /predict`` on a model's chosen version.

    POST /predict  {"input": [[0, 0, 5, 13, ...]]}
    -> {"predictions": {"class": [0], "probabilities": [[...]]}, "model": "digits", "version": 2}

``input`` is the tensor for a single-input signature (a nested list, or
``{"b64": ...}`` for bytes) or an object naming each input. ``model`` defaults
to the first served model; ``version`` or ``label`` pin a version, else the
chosen one answers; ``signature_name`` defaults to ``serving_default``.
"""

from __future__ import annotations

import json

import bottle

from ..errors import InvalidArgument, Unavailable
from ..serving.manager import ModelManager
from ..serving.runtime import DEFAULT_SIGNATURE, Servable, signature_list
from . import codec
from .metrics import answered_by
from .responses import json_response

KEYS = ("input", "model", "version", "label", "signature_name")


def _version(document: dict) -> int | None:
    version = document.get("version")
    return None if version is None else codec.version_number(version)


def _optional_string(document: dict, key: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"'{key}' must be a string, not {json.dumps(value)}")
    return value


class SimplePredictAPI:
    """``POST /predict`` over one model manager."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    def _default_model(self) -> str:
        names = self._manager.model_names()
        if not names:
            raise Unavailable("no model is being served yet")
        return names[0]

    def handle(self, body: bytes) -> bottle.HTTPResponse:
        """Answer one request; raises ServingError for anything the client got wrong."""
        document = codec.parse_predict_document(body)
        unknown = sorted(set(document) - set(KEYS))
        if unknown:
            raise InvalidArgument(f"unknown key {unknown[0]!r} in the request; expected some of: {', '.join(KEYS)}")
        if "input" not in document:
            raise InvalidArgument("missing 'input': send {\"input\": <tensor or object of named tensors>}")
        model = _optional_string(document, "model") or self._default_model()
        version, label = _version(document), _optional_string(document, "label")
        if version is not None and label is not None:
            raise InvalidArgument(
                f"Both model version ({version}) and model version label ({label}) cannot be supplied."
            )
        signature_name = _optional_string(document, "signature_name") or DEFAULT_SIGNATURE
        handle = self._manager.acquire(model, version, label)

        def run(servable: Servable):
            signature = servable.signatures.get(signature_name)
            if signature is None:
                raise InvalidArgument(
                    f'Serving signature name: "{signature_name}" not found in signature def. Model {model} '
                    f"version {handle.version} has signatures: {signature_list(servable.signatures)}."
                )
            try:
                inputs = codec.decode_input_value(document["input"], signature.input_dtypes)
            except InvalidArgument as e:
                raise InvalidArgument(
                    f'{e.message.rstrip(".")}. Signature "{signature_name}" of model {model} version '
                    f"{handle.version}: {signature.input_check.expected}."
                ) from None
            outputs = servable.predict(signature_name, inputs)
            handle.record_predict(signature_name, inputs, outputs)
            return outputs

        def encode(outputs) -> bottle.HTTPResponse:
            predictions = codec.encode_outputs_value(outputs)
            return json_response(
                f'{{"predictions": {predictions}, "model": {json.dumps(model)}, "version": {handle.version}}}'
            )

        return answered_by(handle, model, run, encode)
