"""The Bottle app's error plumbing and body limits, called as a WSGI application in process; gzipped request
bodies, over real HTTP to a real appliance as well.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import struct
import time
import zlib
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import bottle
import pytest
import requests

from appliance.api.app import ModelsFirst, _json_errors, inflate, read_body
from appliance.api.metrics import for_api, served
from appliance.api.responses import json_error, json_response
from appliance.errors import InvalidArgument, NotFound

from ..conftest import MODELS


def call_raw(app, path: str, method: str = "GET") -> tuple[str, dict, bytes]:
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], body


def call(app, path: str, method: str = "GET") -> tuple[str, dict, dict]:
    status, headers, body = call_raw(app, path, method)
    return status, headers, json.loads(body)


def test_serving_errors_and_bugs_become_json_and_only_bugs_are_logged(caplog):
    app = bottle.Bottle()
    app.install(_json_errors)

    @app.route("/missing")
    def missing():
        raise NotFound("Could not find any versions of model nope")

    @app.route("/bug")
    def bug():
        return {}["no such key"]

    status, headers, body = call(app, "/missing")
    assert status.startswith("404") and body == {"error": "Could not find any versions of model nope"}
    with caplog.at_level(logging.ERROR, logger="appliance.api.app"):
        status, headers, body = call(app, "/bug")
    assert status.startswith("500") and headers["Content-Type"] == "application/json"
    assert "Internal error" in body["error"] and "KeyError" not in body["error"]
    assert any(r.exc_info for r in caplog.records), "the server log keeps the traceback"


@pytest.mark.parametrize("declared", [None, "11"])
def test_read_body_refuses_more_than_the_limit(declared):
    environ = {"wsgi.input": io.BytesIO(b"x" * 11)}
    if declared:
        environ["CONTENT_LENGTH"] = declared
    with pytest.raises(bottle.HTTPResponse) as refused:
        read_body(environ, limit=10)
    assert refused.value.status_code == 413
    assert read_body({"wsgi.input": io.BytesIO(b"x" * 10)}, limit=10) == b"x" * 10


# --- Content-Encoding ----------------------------------------------------------------------------------------------


def refused(call) -> tuple[int, str]:
    with pytest.raises(bottle.HTTPResponse) as answer:
        call()
    return answer.value.status_code, json.loads(answer.value.body)["error"]


def test_inflate_holds_the_limit_to_the_inflated_size_and_names_what_is_wrong():
    text = b"x" * 10
    assert inflate(gzip.compress(text), limit=10) == text
    assert inflate(gzip.compress(text[:4]) + gzip.compress(text[4:]), limit=10) == text, "every gzip member"
    assert inflate(b"", limit=10) == b""
    assert refused(lambda: inflate(gzip.compress(text + b"x"), limit=10)) == (
        413,
        "request body inflates to more than the limit of 10 bytes",
    )
    assert refused(lambda: inflate(gzip.compress(text[:6]) + gzip.compress(text), limit=10))[0] == 413, "all members"
    status, message = refused(lambda: inflate(b"not gzip at all", limit=10))
    assert status == 400 and message.startswith("request body is not valid gzip: ")
    assert refused(lambda: inflate(gzip.compress(text)[:-5], limit=10)) == (
        400,
        "request body is not valid gzip: it ends before its gzip stream does",
    )


@pytest.mark.parametrize("encoding", ["gzip", "GZip", "x-gzip", " gzip "])
def test_read_body_inflates_gzip_by_any_of_its_names(encoding):
    body = gzip.compress(b'{"instances": [1]}')
    environ = {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "HTTP_CONTENT_ENCODING": encoding}
    assert read_body(environ, limit=100) == b'{"instances": [1]}'


def test_read_body_inflates_deflate_in_zlib_format_within_the_limit():
    """HTTP's deflate, as Triton's clients send it (zlib.compress): inflated, bounded like gzip, corrupt is 400."""
    text = b'{"inputs": []}' * 10
    body = zlib.compress(text)
    environ = {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "HTTP_CONTENT_ENCODING": "deflate"}
    assert read_body(environ, limit=len(text)) == text
    assert refused(lambda: inflate(body, limit=len(text) - 1, encoding="deflate"))[0] == 413
    status, message = refused(lambda: inflate(gzip.compress(text), limit=1000, encoding="deflate"))
    assert status == 400 and message.startswith("request body is not valid deflate: ")


def test_read_body_takes_identity_as_no_encoding_and_refuses_others_naming_what_it_takes():
    environ = {"wsgi.input": io.BytesIO(b"{}"), "CONTENT_LENGTH": "2", "HTTP_CONTENT_ENCODING": "identity"}
    assert read_body(environ, limit=100) == b"{}"
    for encoding in ("br", "compress", "gzip, br"):
        environ = {"wsgi.input": io.BytesIO(b"{}"), "CONTENT_LENGTH": "2", "HTTP_CONTENT_ENCODING": encoding}
        with pytest.raises(bottle.HTTPResponse) as answer:
            read_body(environ, limit=100)
        assert answer.value.status_code == 415
        assert answer.value.headers["Accept-Encoding"] == "gzip, deflate, identity"
        assert f"Content-Encoding {encoding!r} is not supported" in json.loads(answer.value.body)["error"]


def gzip_bomb(mebibytes: int) -> bytes:
    """A gzip stream of ``mebibytes`` MiB of zeros, made without ever holding them: one MiB deflated and fully
    flushed (which resets the compressor, so each MiB deflates to the same bytes) repeated, in gzip's wrapping."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate: the wrapping is written here
    zeros = bytes(1 << 20)
    mebibyte = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip, deflate, no flags, no time, unknown OS
    trailer = struct.pack("<II", crc, (mebibytes << 20) & 0xFFFFFFFF)
    return header + mebibyte * mebibytes + compressor.flush() + trailer


def peak_memory(pid: int) -> int:
    """The process's peak resident size in bytes (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


DIGITS_BODY = (MODELS / "digits" / "samples" / "serving_default.json").read_bytes()


@pytest.mark.parametrize("path", ["/v1/models/digits:predict", "/v1/models/digits/versions/1:predict"])
def test_a_gzipped_request_is_answered_as_the_same_request_sent_plain(bundled_server, path):
    plain = requests.post(bundled_server.url + path, data=DIGITS_BODY, timeout=30)
    assert plain.status_code == 200, plain.text
    for headers in ({"Content-Encoding": "gzip"}, {"Content-Encoding": "x-gzip"}):
        zipped = requests.post(bundled_server.url + path, data=gzip.compress(DIGITS_BODY), headers=headers, timeout=30)
        assert (zipped.status_code, zipped.json()) == (200, plain.json())
    chunked = requests.post(  # no Content-Length: read to its end, then inflated
        bundled_server.url + path, data=iter([gzip.compress(DIGITS_BODY)]), headers=headers, timeout=30
    )
    assert (chunked.status_code, chunked.json()) == (200, plain.json())


def test_simple_predict_takes_a_gzipped_body_too(bundled_server):
    body = json.dumps({"input": [[0.0] * 64]}).encode()
    plain = requests.post(bundled_server.url + "/predict", data=body, timeout=30)
    zipped = requests.post(
        bundled_server.url + "/predict", data=gzip.compress(body), headers={"Content-Encoding": "gzip"}, timeout=30
    )
    assert plain.status_code == 200 and (zipped.status_code, zipped.json()) == (200, plain.json())


def test_bad_and_unknown_encodings_answer_400_and_415_over_http(bundled_server):
    url = bundled_server.url + "/v1/models/digits:predict"
    corrupt = requests.post(url, data=b"\x1f\x8b" + DIGITS_BODY, headers={"Content-Encoding": "gzip"}, timeout=30)
    assert corrupt.status_code == 400 and corrupt.json()["error"].startswith("request body is not valid gzip")
    brotli = requests.post(url, data=DIGITS_BODY, headers={"Content-Encoding": "br"}, timeout=30)
    assert brotli.status_code == 415 and "gzip" in brotli.json()["error"]
    assert brotli.headers["Accept-Encoding"] == "gzip, deflate, identity"
    identity = requests.post(url, data=DIGITS_BODY, headers={"Content-Encoding": "identity"}, timeout=30)
    assert identity.status_code == 200


def test_a_gzip_bomb_is_refused_without_being_inflated(bundled_server):
    bomb = gzip_bomb(1024)  # 1 GiB of zeros, about 1 MiB sent
    assert len(bomb) < 2 << 20
    url = bundled_server.url + "/v1/models/digits:predict"
    before = peak_memory(bundled_server.proc.pid)
    started = time.perf_counter()
    answer = requests.post(url, data=bomb, headers={"Content-Encoding": "gzip"}, timeout=60)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 413, answer.text
    assert answer.json() == {"error": f"request body inflates to more than the limit of {64 << 20} bytes"}
    grown = peak_memory(bundled_server.proc.pid) - before
    assert grown < 400 << 20, f"the server's peak memory grew by {grown >> 20} MiB: it inflated more than the limit"
    assert elapsed < 10, elapsed
    assert requests.post(url, data=DIGITS_BODY, timeout=30).status_code == 200, "and it keeps serving"


def test_models_first_sends_v1_models_urls_past_bottle_and_answers_as_bottle_would(caplog):
    seen = []

    def v1(environ):
        seen.append(environ["PATH_INFO"])
        assert bottle.request.environ is environ, "handlers read the request through bottle.request"
        if environ["PATH_INFO"].endswith("/bad"):
            raise InvalidArgument("Malformed request")
        if environ["PATH_INFO"].endswith("/refused"):
            raise json_error(413, "too large")
        if environ["PATH_INFO"].endswith("/bug"):
            return {}["no such key"]
        return json_response('{"model": "\u00e9"}', **{"X-Appliance-Backend": "local"})

    app = bottle.Bottle()
    app.route("/health", "GET", lambda: "fine")
    wsgi = ModelsFirst(v1, app)

    status, headers, body = call_raw(wsgi, "/v1/models/digits")
    assert status == "200 OK" and body == '{"model": "\u00e9"}'.encode()
    assert headers["Content-Type"] == "application/json" and headers["X-Appliance-Backend"] == "local"
    assert headers["Content-Length"] == str(len(body))
    assert call_raw(wsgi, "/V1/MODELS/digits")[0] == "200 OK", "TF Serving matches /v1 URLs in any case"
    status, headers, body = call_raw(wsgi, "/v1/models/digits", "HEAD")
    assert status == "200 OK" and body == b"" and headers["Content-Length"] == str(len('{"model": "é"}'.encode()))
    assert call(wsgi, "/v1/models/bad")[::2] == ("400 Bad Request", {"error": "Malformed request"})
    assert call(wsgi, "/v1/models/refused")[::2] == ("413 Request Entity Too Large", {"error": "too large"})
    with caplog.at_level(logging.ERROR, logger="appliance.api.app"):
        status, _, body = call(wsgi, "/v1/models/bug")
    assert status.startswith("500") and "KeyError" not in body["error"] and caplog.records
    assert call_raw(wsgi, "/health") == (
        "200 OK",
        {"Content-Type": "text/html; charset=UTF-8", "Content-Length": "4"},
        b"fine",
    )
    assert len(seen) == 6, "the other paths are Bottle's"


def test_models_first_answers_with_the_labels_of_what_served_each_request():
    def v1(environ):
        if environ["PATH_INFO"].endswith("/bad"):
            raise InvalidArgument("Malformed request")
        return for_api(served(json_response("{}"), "digits", 2), "predict")

    app = bottle.Bottle()
    app.install(_json_errors)
    app.route("/v1/appliance/models/<name>/chosen", "GET", lambda name: served(json_response("{}"), name, 1))
    app.route("/health", "GET", lambda: json_response("{}"))
    wsgi = ModelsFirst(v1, app, {"/v1/appliance/models/<name>/chosen": "control", "/health": "health"})

    def labels(path: str, method: str = "GET"):
        environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": method}
        setup_testing_defaults(environ)
        return getattr(wsgi(environ, lambda status, headers, exc_info=None: None), "labels", None)

    assert labels("/v1/models/digits:predict", "POST") == ("digits", 2, "predict", "local")
    assert labels("/v1/models/digits", "HEAD") == ("digits", 2, "predict", "local"), "no body, the same labels"
    assert labels("/v1/models/bad") == ("", None, "", ""), "no handler took it"
    wsgi_path = "/v1/appliance/models/café/chosen".encode().decode("latin-1")  # as a WSGI server passes it
    assert labels(wsgi_path) == ("café", 1, "control", "local"), "the route's API; the name as Bottle decodes it"
    assert labels("/health", "HEAD") == ("", None, "health", "")
    assert labels("/nowhere") is None and labels("/health", "POST") is None, "Bottle's own 404 and 405: unlabelled"


def test_the_metrics_path_of_a_monitoring_config_cannot_take_another_route():
    from appliance.api.app import create_app
    from appliance.serving.manager import ModelManager
    from appliance.serving.repository import Repository
    from appliance.serving.runtime.local_tf import LocalTFRuntime

    manager = ModelManager(Repository([]), LocalTFRuntime("cpu"), 0)
    for taken in ("/health", "/", "/predict", "/v1/models/m", "/V1/anything"):
        with pytest.raises(InvalidArgument, match=f"cannot be served at {taken}"):
            create_app(manager, max_request_bytes=1024, metrics_path=taken)
    create_app(manager, max_request_bytes=1024, metrics_path="/metrics")
    create_app(manager, max_request_bytes=1024, metrics_path=None)
