"""What the appliance says about itself: ``GET /health`` (JSON) and ``GET /`` (a page for people).

    GET /health  -> 200 {"status": "ready", "version": "0.1.0", "device": {...}, "models": [{"name": ...}, ...]}

``/health`` answers 503 ``"loading"`` until the first load of every model has
finished, then 200 ``"ready"`` when every model has an AVAILABLE version, or
200 ``"degraded"`` naming the models that have none.
"""

from __future__ import annotations

import dataclasses
import html

import bottle

from .. import __version__
from ..serving.manager import ModelManager, ModelSummary
from ..serving.remote import RemoteTFServing
from .responses import dumps, json_response


def summary_json(summary: ModelSummary) -> dict:
    return {
        "name": summary.name,
        "base_path": str(summary.base_path),
        "version_policy": summary.policy,
        "labels": summary.labels,
        "chosen_version": summary.chosen_version,
        "versions": [
            {
                "version": v.version,
                "state": v.state.value,
                "error": v.error.message if v.error else None,
            }
            for v in summary.versions
        ],
    }


def health_document(manager: ModelManager, remote: RemoteTFServing | None = None) -> tuple[int, dict]:
    summaries = manager.summaries()
    unavailable = [s.name for s in summaries if s.chosen_version is None]
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
    if status == "degraded":
        document["unavailable_models"] = unavailable
    if remote is not None:
        document["remote"] = dataclasses.asdict(remote.status())
    return code, document


def health(manager: ModelManager, remote: RemoteTFServing | None = None) -> bottle.HTTPResponse:
    code, document = health_document(manager, remote)
    return json_response(dumps(document), code)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>appliance</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;color:#222}}
code,pre{{background:#f4f4f4;border-radius:4px}}pre{{padding:.6em;overflow-x:auto}}
table{{border-collapse:collapse}}td,th{{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}}</style>
</head><body>
<h1>appliance {version}</h1>
<p>Serving TensorFlow models on <b>{device}</b> at <code>{base}</code> &mdash; status: <b>{status}</b>.</p>
<table><tr><th>model</th><th>chosen version</th><th>versions</th></tr>{rows}</table>
<h2>Call it</h2>
<pre>curl -s {base}/predict -d '{{"model": "{model}", "input": ...}}'
curl -s {base}/v1/models/{model}:predict -d '{{"instances": [...]}}'
curl -s {base}/v1/models/{model}
curl -s {base}/v1/models/{model}/metadata
curl -s {base}/health</pre>
<p><code>POST /predict</code> takes <code>{{"input": tensor}}</code> (plus optional <code>model</code>,
<code>version</code>, <code>label</code>, <code>signature_name</code>) and answers with the model's
chosen version. The <code>/v1/models/...</code> routes are TensorFlow Serving's REST API
(predict, classify, regress, status, metadata), so TF Serving clients work unchanged.</p>
<p>API reference: <a href="/docs">/docs</a> lists every endpoint with a form to try it, from the OpenAPI 3.1
document at <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


def index(manager: ModelManager, remote: RemoteTFServing | None = None) -> bottle.HTTPResponse:
    _, document = health_document(manager, remote)
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            html.escape(m["name"]),
            m["chosen_version"] if m["chosen_version"] is not None else "&ndash;",
            ", ".join(f"{v['version']} {v['state'].lower()}" for v in m["versions"]) or "none found",
        )
        for m in document["models"]
    )
    first = document["models"][0]["name"] if document["models"] else "MODEL"
    page = _PAGE.format(
        version=html.escape(__version__),
        device=html.escape(manager.device.describe()),
        base=html.escape(f"{bottle.request.urlparts.scheme}://{bottle.request.urlparts.netloc}"),
        status=document["status"],
        rows=rows,
        model=html.escape(first),
    )
    return bottle.HTTPResponse(body=page, status=200, headers={"Content-Type": "text/html; charset=utf-8"})
