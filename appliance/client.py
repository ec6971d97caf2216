"""The client side of the command line: ask a running appliance what it serves, or for a prediction.

list_models("http://127.0.0.1:8501")                       # `appliance models`
predict("http://127.0.0.1:8501", "digits", "[[0, 0, 5, ...]]")  # `appliance predict digits --input ...`: one line
compare("http://127.0.0.1:8501", "digits", 1, 2)           # `appliance compare digits --version 1 --against 2`
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def http_json(
    url: str, body: dict | None = None, method: str | None = None, token: str | None = None, timeout: float = 60
) -> tuple[int, dict]:
    """The status and JSON answer of a request to a running appliance (GET, or POST with ``body``; ``token`` is
    sent as ``Authorization: Bearer``). Raises OSError when nothing answers, ValueError when the answer is not JSON.
    """
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def list_models(url: str) -> int:
    """Print the models, versions and states of the appliance at ``url`` (its ``/health``)."""
    _, health = http_json(url.rstrip("/") + "/health")
    device = health.get("device", {})
    print(f"{url}  status: {health.get('status')}  device: {device.get('type')} ({device.get('name')})")
    rows = [("MODEL", "VERSION", "STATE", "CHOSEN", "ERROR")]
    for model in health.get("models", []):
        for v in model["versions"] or [{"version": "-", "state": "NO VERSIONS", "error": None}]:
            chosen = "*" if v["version"] == model["chosen_version"] else ""
            rows.append((model["name"], str(v["version"]), v["state"], chosen, v["error"] or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + ("  " + row[4] if row[4] else ""))
    remote = health.get("remote")
    if remote:
        latency = f", {remote['latency_ms']} ms" if remote.get("latency_ms") is not None else ""
        print(
            f"remote {remote['url']}: {remote['state']}{latency}" + (f" ({remote['error']})" if remote["error"] else "")
        )
        for model, routing in sorted(remote["routing"].items()):
            versions = ", ".join(map(str, remote["versions"].get(model, []))) or "none"
            print(f"  {model}: {routing}; remote serves versions: {versions}")
    return 0


def predict(
    url: str,
    model: str,
    text: str,
    version: int | None = None,
    label: str | None = None,
    signature_name: str | None = None,
    pretty: bool = False,
) -> int:
    """POST ``/predict`` with the input ``text`` (JSON, or ``@FILE``, ``@-`` for stdin) and print the answer.

    The answer is printed as one line of compact JSON, for scripts and ``jq``; indented with ``pretty``.
    """
    if text.startswith("@"):
        text = sys.stdin.read() if text == "@-" else Path(text[1:]).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        print(f"appliance: error: --input is not valid JSON: {e}", file=sys.stderr)
        return 2
    body = {"model": model, "input": value}
    for key, option in (("version", version), ("label", label), ("signature_name", signature_name)):
        if option is not None:
            body[key] = option
    status, answer = http_json(url.rstrip("/") + "/predict", body)
    if status != 200:
        print(f"appliance: error {status}: {answer.get('error', answer)}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if pretty else json.dumps(answer, separators=(",", ":")))
    return 0


def compare(
    url: str,
    model: str,
    version: int,
    against: int,
    log: Path | None = None,
    limit: int | None = None,
    as_json: bool = False,
) -> int:
    """Have the appliance at ``url`` compare two versions of ``model`` on its recorded requests (or ``log``),
    show its progress on stderr, then print the summary and the figures (the result's JSON with ``as_json``)."""
    body: dict = {"version": version, "against": against}
    if log is not None:
        body["log"] = str(log.resolve())
    if limit is not None:
        body["limit"] = limit
    endpoint = f"{url.rstrip('/')}/v1/appliance/models/{model}/compare"
    status, answer = http_json(endpoint, body)
    while status in (200, 202):
        progress = f"v{version} with v{against}: {answer['done']}/{answer['total']} requests"
        if answer["state"] != "running":
            print(f"\rcompared {progress}, {answer['state']}", file=sys.stderr)
            break
        print(f"\rcomparing {progress}", end="", file=sys.stderr)
        time.sleep(0.2)
        status, answer = http_json(endpoint)
    if status not in (200, 202):
        print(f"appliance: error {status}: {answer.get('error', answer)}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(answer["result"], indent=2))
    else:
        _print_comparison(answer["result"])
    if answer["error"]:
        print(f"appliance: the comparison stopped early: {answer['error']}", file=sys.stderr)
        return 1
    return 0


def _print_comparison(result: dict) -> None:
    print(result["summary"])
    rows = [("OUTPUT", "PREDICTIONS", "AGREEMENT", "MEAN |DIFF|", "MAX |DIFF|")]
    for output in result["outputs"]:
        agreement = output["agreement"]
        rows.append(
            (
                output["label"],
                str(output["predictions"]),
                "-" if agreement is None else f"{100 * agreement:.1f}%",
                _number(output["mean_abs_diff"]),
                _number(output["max_abs_diff"]),
            )
        )
    rows.append(("VERSION", "P50", "P95", "FAIL ALONE", "SAMPLE ERROR"))
    for side in (result["version"], result["against"]):
        p50, p95 = (_number(side[key], " ms") for key in ("p50_ms", "p95_ms"))
        rows.append((f"v{side['version']}", p50, p95, str(side["fails_alone"]), side["sample_error"] or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])


def _number(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.4g}{unit}"
