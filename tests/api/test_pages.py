"""``/health`` states, with a real manager before, during and after its first load; the start page (``/``): its
curl lines answer 200, its forms hold the same bodies, and what it shows is escaped; ``/`` answers clients other
than browsers with JSON, over real HTTP.
"""

from __future__ import annotations

import html
import io
import json
import re
import shlex
import shutil
import subprocess
from wsgiref.util import setup_testing_defaults

import pytest
import requests
import tensorflow as tf

from appliance.api.app import create_app
from appliance.api.pages import health_document
from appliance.config import ModelConfig
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository
from appliance.serving.runtime.local_tf import LocalTFRuntime

from ..conftest import MODELS


def test_health_is_loading_then_ready_then_degraded(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    shutil.copytree(MODELS / "iris" / "1", good / "1")
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "saved_model.pb").write_bytes(b"corrupt")
    runtime = LocalTFRuntime(device="cpu")
    manager = ModelManager(Repository([ModelConfig("good", good)]), runtime, poll_seconds=0)
    code, document = health_document(manager)
    assert (code, document["status"]) == (503, "loading")
    assert document["device"]["type"] == "CPU"
    manager.start()
    assert manager.wait_until_ready(60)
    code, document = health_document(manager)
    assert (code, document["status"]) == (200, "ready")
    assert document["models"][0]["versions"] == [{"version": 1, "state": "AVAILABLE", "error": None}]
    manager.stop()

    mixed = ModelManager(Repository([ModelConfig("good", good), ModelConfig("bad", bad)]), runtime, 0)
    mixed.start()
    assert mixed.wait_until_ready(60)
    code, document = health_document(mixed)
    assert (code, document["status"], document["unavailable_models"]) == (200, "degraded", ["bad"])
    (broken,) = next(m for m in document["models"] if m["name"] == "bad")["versions"]
    assert broken["state"] == "END" and broken["error"]
    mixed.unload_model("good")  # unloaded by request: listed as such, and no fault
    code, document = health_document(mixed)
    assert (code, document["status"], document["unavailable_models"]) == (200, "degraded", ["bad"])
    assert next(m for m in document["models"] if m["name"] == "good")["unloaded"] is True
    mixed.stop()


# --- the start page -----------------------------------------------------------------------------------------------


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # what Firefox sends


def call(app, method: str, path: str, body: bytes = b"") -> tuple[str, dict, bytes]:
    """One request to a WSGI app, as a server on 127.0.0.1:8501 would pass it from a browser."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body)}
    environ.update(CONTENT_LENGTH=str(len(body)), HTTP_HOST="127.0.0.1:8501", HTTP_ACCEPT=BROWSER_ACCEPT)
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=dict(headers))

    data = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], data


class WideImages(tf.Module):
    """A model whose input is too large to write out: 64x64 RGB images, and a second, named input."""

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32), tf.TensorSpec([None], tf.int64)])
    def serve(self, images, count):
        return {"mean": tf.reduce_mean(images, axis=[1, 2, 3]) + tf.cast(count, tf.float32)}


@pytest.fixture(scope="module")
def start_app(tmp_path_factory):
    """The app over the bundled models, digits without its samples, and a model of wide images; its page."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "digits" / "2", root / "bare_digits" / "1")
    wide = WideImages()
    tf.saved_model.save(wide, str(root / "wide" / "1"), signatures={"serving_default": wide.serve})
    manager = ModelManager(Repository([], [MODELS, root]), LocalTFRuntime(device="cpu"), poll_seconds=0)
    manager.start()
    assert manager.wait_until_ready(120)
    app = create_app(manager, max_request_bytes=64 << 20)
    status, headers, page = call(app, "GET", "/")
    assert status == "200 OK" and headers["Content-Type"] == "text/html; charset=utf-8"
    yield app, page.decode()
    manager.stop()


def curl_lines(page: str) -> list[str]:
    return [html.unescape(line) for line in re.findall(r"<pre class=curl>(.*?)</pre>", page, re.S)]


def test_every_curl_line_answers_200_unless_the_page_says_what_to_fill_in(start_app):
    app, page = start_app
    blocks = re.findall(r"<div class=signature>(.*?)</form></div>", page, re.S)
    assert len(blocks) == len(curl_lines(page)) == 3 + 3 + 3 + 1  # digits, iris, bare_digits, wide
    for block in blocks:
        (line,) = curl_lines(block)
        command = shlex.split(line)
        if command[0] == "python3":  # python3 -c SCRIPT | curl -s URL -d @-: a body too large to write out
            body = subprocess.run(command[:3], capture_output=True, check=True).stdout
            assert command[3:] == ["|", "curl", "-s", command[6], "-d", "@-"]
            url = command[6]
        else:
            assert command[:2] == ["curl", "-s"] and command[3] == "-d", line
            url, body = command[2], command[4].encode()
        assert url.startswith("http://127.0.0.1:8501/v1/models/"), url
        status, _, answer = call(app, "POST", url.removeprefix("http://127.0.0.1:8501"), body)
        if "The features this signature reads are not in its metadata" in block:  # classify without a sample
            assert status == "400 Bad Request" and url.endswith(":classify"), line
        else:
            assert status == "200 OK", (line[:200], answer[:300])


def test_each_form_holds_its_curl_lines_body_and_names_its_route(start_app):
    _, page = start_app
    forms = re.findall(
        r'<form class=try data-url="([^"]+)" data-signature="([^"]+)" data-filled="(\w+)">'
        r"<textarea[^>]*>(.*?)</textarea>",
        page,
        re.S,
    )
    assert [(url, filled) for url, _, filled, _ in forms][:3] == [
        ("/v1/models/digits:predict", "false"),
        ("/v1/models/digits:classify", "false"),
        ("/v1/models/digits:predict", "false"),
    ]
    for (url, _, filled, text), line in zip(forms, curl_lines(page)):
        assert url in line
        if filled == "false":
            assert json.loads(html.unescape(text)) == json.loads(shlex.split(line)[4])
    assert sum(filled == "true" for *_, filled, _ in forms) == 1, "only the wide images are made by the page's JS"


def test_the_page_shows_inputs_outputs_and_offers_images_where_a_signature_takes_them(start_app):
    _, page = start_app
    assert page.count('<input type=file accept="image/*">') == 2, "digits and bare_digits: their image signature"
    assert "<td><code>pixels</code></td><td>DT_FLOAT</td><td>[-1, 64]</td>" in page
    assert "<td><code>image_bytes</code></td><td>DT_STRING</td><td>[-1]</td>" in page
    assert "__saved_model_init_op" not in page
    bare = page.split('id="model-bare_digits"')[1].split("<section")[0]
    assert "The features this signature reads are not in its metadata" in bare, "classify without a sample"
    assert "Versions: 1 AVAILABLE (chosen)" in bare


def test_the_page_escapes_what_it_shows(tmp_path):
    name = "<i>x&'"
    shutil.copytree(MODELS / "iris" / "1", tmp_path / name / "1")
    manager = ModelManager(Repository([], [tmp_path]), LocalTFRuntime(device="cpu"), poll_seconds=0)
    manager.start()
    assert manager.wait_until_ready(60)
    _, _, page = call(create_app(manager, max_request_bytes=1 << 20), "GET", "/")
    manager.stop()
    text = page.decode()
    assert name not in text and 'id="model-&lt;i&gt;x&amp;&#x27;"' in text
    assert 'data-url="/v1/models/%3Ci%3Ex%26%27:predict"' in text


# --- GET / for clients other than browsers ------------------------------------------------------------------------


@pytest.mark.parametrize("accept", ["*/*", "application/json", None])
def test_the_root_answers_other_clients_with_json_as_kserve_v1_reads_it(bundled_server, accept):
    # KServe's v1 InferenceRESTClient.is_server_live: GET / (httpx sends Accept: */*), then a 2xx status and
    # response.json().get("status").lower() == "alive".
    response = requests.get(bundled_server.url + "/", headers={"Accept": accept}, timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json()["status"].lower() == "alive"
    assert response.headers["Vary"] == "Accept", "a cache must not give a browser's page to a client, nor back"
    health = response.json()["health"]
    assert requests.get(bundled_server.url + health, timeout=30).json()["status"] == "ready", "it says where to look"


def test_the_root_answers_a_browser_with_the_page(bundled_server):
    response = requests.get(bundled_server.url + "/", headers={"Accept": BROWSER_ACCEPT}, timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Vary"] == "Accept" and '<section class=model id="model-digits">' in response.text
