"""What the appliance says about itself: ``GET /health`` (JSON) and ``GET /`` (the start page, for people).

    GET /health  -> 200 {"status": "ready", "version": "0.1.0", "device": {...}, "models": [{"name": ...}, ...]}
    GET /        -> 200 {"status": "alive", "version": "0.1.0", "health": "/health", ...}  (Accept: text/html: the page)

``/health`` answers 503 ``"loading"`` until the first load of every model has
finished, then 200 ``"ready"`` when every model has an AVAILABLE version, or
200 ``"degraded"`` naming the models that have none. ``GET /`` answers a browser
(``Accept`` naming ``text/html``) with the start page, any other client with
JSON whose ``"status": "alive"`` is what KServe's v1 ``is_server_live`` (which
calls ``GET /``) reads. The start page shows, for each model, its versions and
every signature of its chosen version with a curl line and a form to try it
(:mod:`.examples` makes their bodies).
"""

from __future__ import annotations

import dataclasses
import html
import re
import shlex
from importlib import resources
from urllib.parse import quote

import bottle

from .. import __version__
from ..errors import ServingError
from ..serving.manager import ModelManager, ModelSummary
from ..serving.remote import Remote
from ..serving.runtime import DEFAULT_SIGNATURE, SignatureSpec, TensorSpec
from .examples import Example, compact_json, example_request, expanded, has_filled, python_expression
from .responses import dumps, json_response


def summary_json(summary: ModelSummary) -> dict:
    return {
        "name": summary.name,
        "base_path": str(summary.base_path),
        "version_policy": summary.policy,
        "labels": summary.labels,
        "chosen_version": summary.chosen_version,
        "unloaded": summary.unloaded,
        "versions": [
            {
                "version": v.version,
                "state": v.state.value,
                "error": v.error.message if v.error else None,
            }
            for v in summary.versions
        ],
    }


def health_document(manager: ModelManager, remote: Remote | None = None) -> tuple[int, dict]:
    summaries = manager.summaries()
    unavailable = [s.name for s in summaries if s.chosen_version is None and not s.unloaded]  # not a fault
    if not manager.ready:
        status, code = "loading", 503
    elif unavailable:
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    document = {
        "status": status,
        "version": __version__,
        "device": manager.device.to_json(),
        "models": [summary_json(s) for s in summaries],
    }
    for entry in document["models"]:
        figures = manager.shadow.figures(entry["name"])
        entry["shadow"] = figures.health_json() if figures else None
    if status == "degraded":
        document["unavailable_models"] = unavailable
    if remote is not None:
        document["remote"] = dataclasses.asdict(remote.status())
    return code, document


def health(manager: ModelManager, remote: Remote | None = None) -> bottle.HTTPResponse:
    code, document = health_document(manager, remote)
    return json_response(dumps(document), code)


_TEMPLATE = resources.files(__package__).joinpath("static", "index.html").read_text()
_MARKER = re.compile(r"\{\{(\w+)\}\}")
e = html.escape


def _shape(spec: TensorSpec) -> str:
    return "unknown rank" if spec.shape is None else "[" + ", ".join(str(size) for size in spec.shape) + "]"


def _tensor_rows(kind: str, tensors) -> str:
    return "".join(
        f"<tr><td>{kind}</td><td><code>{e(alias)}</code></td><td>{e(spec.dtype)}</td><td>{e(_shape(spec))}</td></tr>"
        for alias, spec in tensors.items()
    )


def curl_line(base: str, model: str, example: Example) -> str:
    """A shell command sending the example: the body written out, or made by python3 when too large."""
    url = f"{base}/v1/models/{quote(model, safe='')}:{example.verb}"
    if has_filled(example.body):
        script = f"import json; print(json.dumps({python_expression(example.body)}))"
        return f"python3 -c {shlex.quote(script)} | curl -s {shlex.quote(url)} -d @-"
    return f"curl -s {shlex.quote(url)} -d {shlex.quote(compact_json(example.body))}"


def _signature_html(base: str, model: str, signature: SignatureSpec, samples) -> str:
    example = example_request(signature, samples)
    body = compact_json(example.body if has_filled(example.body) else expanded(example.body))
    note = (
        "<p class=note>The features this signature reads are not in its metadata: fill them in.</p>"
        if example.needs_features
        else ""
    )
    image = (
        f"<label class=drop>Or choose or drop an image (sent as <code>{e(example.image_input)}</code>):"
        ' <input type=file accept="image/*"></label>'
        if example.image_input
        else ""
    )
    path = f"/v1/models/{quote(model, safe='')}:{example.verb}"
    return (
        f"<div class=signature><h3>{e(signature.name)} <small>{e(example.verb)}</small></h3>"
        f"<table>{_tensor_rows('input', signature.inputs)}{_tensor_rows('output', signature.outputs)}</table>"
        f"<pre class=curl>{e(curl_line(base, model, example))}</pre>{note}"
        f'<form class=try data-url="{e(path)}" data-signature="{e(signature.name)}"'
        f' data-filled="{"true" if has_filled(example.body) else "false"}">'
        f'<textarea name=body rows=3 spellcheck=false aria-label="JSON body">{e(body)}</textarea>'
        f"{image}<button type=submit>Send</button><div class=answer></div></form></div>"
    )


def _signatures(manager: ModelManager, name: str) -> dict[str, SignatureSpec]:
    """The chosen version's signatures (its metadata, no TensorFlow work), or none if it just went away."""
    try:
        with manager.acquire(name) as handle:
            signatures = handle.servable.signatures
    except ServingError:
        return {}
    ordered = sorted(signatures, key=lambda n: (n != DEFAULT_SIGNATURE, n))
    return {n: signatures[n] for n in ordered if not n.startswith("__")}  # not __saved_model_init_op


def _model_html(manager: ModelManager, base: str, summary: ModelSummary) -> str:
    versions = ", ".join(
        f"{v.version} {v.state.value}" + (" (chosen)" if v.version == summary.chosen_version else "")
        for v in summary.versions
    )
    head = (
        f'<section class=model id="model-{e(summary.name)}"><h2>{e(summary.name)}</h2>'
        f"<p>Versions: {e(versions) or 'none found'} &middot; <code>{e(str(summary.base_path))}</code></p>"
    )
    if summary.chosen_version is None:
        return head + "<p>No version is AVAILABLE: nothing to call yet.</p></section>"
    samples = summary.base_path / "samples"
    signatures = _signatures(manager, summary.name)
    return head + "".join(_signature_html(base, summary.name, s, samples) for s in signatures.values()) + "</section>"


LIVE_DOCUMENT = dumps(
    {"status": "alive", "version": __version__, "health": "/health", "openapi": "/openapi.json", "docs": "/docs"}
)


def index(manager: ModelManager, remote: Remote | None = None) -> bottle.HTTPResponse:
    """The start page for a browser, the liveness document for any other client (``Vary: Accept`` tells caches)."""
    if "text/html" not in bottle.request.get_header("Accept", ""):
        return json_response(LIVE_DOCUMENT, Vary="Accept")
    _, document = health_document(manager, remote)
    base = f"{bottle.request.urlparts.scheme}://{bottle.request.urlparts.netloc}"
    models = "".join(_model_html(manager, base, s) for s in manager.summaries()) or "<p>No model is served.</p>"
    values = {
        "version": e(__version__),
        "device": e(manager.device.describe()),
        "base": e(base),
        "status": e(document["status"]),
        "models": models,
    }
    page = _MARKER.sub(lambda m: values[m.group(1)], _TEMPLATE)  # one pass: a value's text is never rescanned
    return bottle.HTTPResponse(body=page, headers={"Content-Type": "text/html; charset=utf-8", "Vary": "Accept"})
