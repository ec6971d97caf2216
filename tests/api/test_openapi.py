"""The API reference: /openapi.json documents exactly the routes the app answers, is valid OpenAPI 3.1, and a
live appliance (real TensorFlow, the bundled models) conforms to it under schemathesis; /docs is self-contained.
"""

from __future__ import annotations

import re
import time

import bottle
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from appliance.api.app import create_app
from appliance.api.openapi import openapi_document
from appliance.api.tfserving import PREDICTION_PATH, STATUS_PATH, parse_model_path
from appliance.errors import InvalidArgument
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ..conftest import ApplianceProcess

METHODS = ("get", "put", "post", "delete", "patch", "options", "head")
REQUEST_TIMEOUT = 10  # seconds: a request that takes longer counts as a hang
MAX_EXAMPLES = 12  # per operation in schemathesis' fuzzing phase (its examples and coverage phases add a fixed
#                   set); the module takes well under a minute on two idle cores
SEED = 8501


@pytest.fixture(scope="module")
def server():
    """An appliance of this module's own (schemathesis chooses and reloads versions), serving the bundled models as
    a user first runs it: no models.config, so no labels."""
    process = ApplianceProcess()
    yield process
    process.stop()


def documented_operations(spec: dict) -> list[tuple[str, str]]:
    return [(path, method) for path, item in spec["paths"].items() for method in METHODS if method in item]


def template_pattern(path: str) -> re.Pattern:
    """The URLs an OpenAPI path template stands for (TF Serving matches /v1 URLs case-insensitively)."""
    pattern = re.escape(path).replace(r"\{version\}", "[0-9]+")
    return re.compile(re.sub(r"\\\{\w+\\\}", "[^/:]+", pattern), re.I)


def the_bottle_app(wsgi) -> bottle.Bottle:
    """The Bottle app inside the middlewares create_app puts in front of it (each keeps what it wraps in _app)."""
    while not isinstance(wsgi, bottle.Bottle):
        wsgi = wsgi._app
    return wsgi


# --- the document and the routes ----------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1_and_served_as_built(server):
    spec = openapi_document()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    response = requests.get(server.url + "/openapi.json", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json() == spec


def example_request(spec: dict, path: str, method: str) -> tuple[str, object] | None:
    """The URL and JSON body of an operation filled with the document's examples, as the docs page fills them;
    None when a path parameter has no example (the page leaves it empty)."""
    item = spec["paths"][path]
    parameters = [
        spec["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
        for p in item.get("parameters", [])
    ]
    if any("example" not in p for p in parameters):
        return None
    examples = {p["name"]: str(p["example"]) for p in parameters}
    url = re.sub(r"\{(\w+)\}", lambda m: examples[m.group(1)], path)
    body = item[method].get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
    return url, body


def as_javascript_writes_it(value):
    """A JSON value as the docs page's JSON.stringify writes it: whole floats lose their ".0" (6.0 -> 6)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [as_javascript_writes_it(item) for item in value]
    if isinstance(value, dict):
        return {key: as_javascript_writes_it(item) for key, item in value.items()}
    return value


def test_every_prefilled_form_answers_2xx_on_the_bundled_models(server):
    """Each operation the docs page prefills, sent as the page sends it to an appliance serving the bundled models
    with no configuration, succeeds; only the label routes are left unfilled, and they say why."""
    spec = openapi_document()
    failures, unfilled = [], []
    for path, method in documented_operations(spec):
        request = example_request(spec, path, method)
        if request is None:
            unfilled.append(path)
            assert "models.config" in spec["paths"][path][method]["description"], f"{path} says why it is empty"
            continue
        url, body = request
        response = requests.request(
            method, server.url + url, json=as_javascript_writes_it(body), timeout=REQUEST_TIMEOUT
        )
        if not 200 <= response.status_code < 300:
            failures.append(f"{method.upper()} {url}: {response.status_code} {response.text[:200]}")
    assert failures == []
    assert unfilled == [path for path, _ in documented_operations(spec) if "/labels/{label}" in path]


def test_every_route_of_the_app_is_documented():
    documented = documented_operations(openapi_document())
    app = the_bottle_app(create_app(ModelManager(Repository([]), LocalTFRuntime("cpu"), 0), max_request_bytes=1 << 20))
    catch_all = [route for route in app.routes if route.rule.lower() == "/v1/<rest:path>"]
    assert [route.method for route in catch_all] == ["ANY", "ANY"], "TF Serving's /v1/ dispatcher"
    undocumented = [
        f"{route.method} {route.rule}"
        for route in app.routes
        if route not in catch_all and (re.sub(r"<(\w+)>", r"{\1}", route.rule), route.method.lower()) not in documented
    ]
    assert undocumented == []


@hypothesis.settings(max_examples=300, derandomize=True, deadline=None)
@hypothesis.given(
    st.one_of(
        st.tuples(st.just("POST"), st.from_regex(PREDICTION_PATH, fullmatch=True)),
        st.tuples(st.just("GET"), st.from_regex(STATUS_PATH, fullmatch=True)),
    )
)
def test_every_url_tf_serving_answers_is_documented(request_line):
    """Every method and URL the /v1/ dispatcher serves (TF Serving's own URL patterns) has a documented operation."""
    method, path = request_line
    try:
        target = parse_model_path(method, path)
    except InvalidArgument:  # a version beyond int64: always 400 "Failed to convert version"
        target = None
    hypothesis.assume(target is not None and target.name)  # no model name: always 400 "Missing model name"
    documented = [
        template
        for template, verb in documented_operations(openapi_document())
        if verb == method.lower() and template_pattern(template).fullmatch(path)
    ]
    assert documented, f"{method} {path} is answered but not documented"


def test_the_dispatcher_answers_no_other_method():
    """GET and POST are all the /v1/ dispatcher serves, so the test above covers every method."""
    for method in (m.upper() for m in METHODS if m not in ("get", "post")):
        for path in ("/v1/models/iris", "/v1/models/iris/versions/1:predict", "/v1/models/iris/labels/a/metadata"):
            assert parse_model_path(method, path) is None


# --- the docs page ------------------------------------------------------------------------------------------------


def test_the_docs_page_is_self_contained_and_reads_the_document(server):
    response = requests.get(server.url + "/docs", timeout=REQUEST_TIMEOUT)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert not re.search(r"https?:|//[a-z0-9]", page, re.I), "no URL to another host (nor a protocol-relative one)"
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", page, re.I), "no external files"
    assert "connect-src 'self'" in page, "its Content-Security-Policy lets it call this server only"
    assert 'fetch("/openapi.json"' in page
    index = requests.get(server.url + "/", headers={"Accept": "text/html"}, timeout=REQUEST_TIMEOUT).text
    assert 'href="/docs"' in index and 'href="/openapi.json"' in index


# --- schemathesis against the live server -------------------------------------------------------------------------

# positive_data_acceptance is left out: a document cannot say which tensors each model's signature takes, so
# requests valid by the schema are rightly refused (400) by most models. unsupported_method is left out because
# under /v1/ TF Serving answers an unlisted method with 400 "Malformed request", not 405.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


# The document the server serves (test_the_document_is_valid_openapi_3_1_and_served_as_built checks it is this one),
# built at collection, before the server starts: schemathesis' fixture-based loader (from_fixture) fails under
# pytest 9.2 ("'Function' object has no attribute '_nodeid'").
live_schema = schemathesis.openapi.from_dict(
    openapi_document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": REQUEST_TIMEOUT,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        }
    ),
)


@pytest.fixture(scope="module")
def tally(request):
    """Counts the requests schemathesis sends and reports them with the run's duration."""
    counts = {"examples": 0, "started": time.monotonic()}
    yield counts
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\nschemathesis: {counts['examples']} examples in {time.monotonic() - counts['started']:.1f} s")


@live_schema.parametrize()
def test_the_live_server_conforms_to_the_document(case, server, tally):
    tally["examples"] += 1
    case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=REQUEST_TIMEOUT)
