"""Secure defaults over real HTTP: Host allow-list against DNS rebinding, the token beyond loopback and for
control, CORS, names that try to reach files, and the size limits.

Real servers on loopback: ``appliance serve`` processes, or :func:`create_app` under
:class:`appliance.server.Server` in process when a test needs several configurations.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import stat
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
import requests

from appliance.access_token import load_or_create_token
from appliance.api.cors import parse_origin
from appliance.api.security import LOOPBACK_HOSTS, LOOPBACK_ONLY, AccessPolicy
from appliance.errors import InvalidArgument

from ..conftest import MODELS, ApplianceProcess, user_dirs_env
from .conftest import serving

BODY = {"input": [[0.0] * 64]}


def port_of(server) -> str:
    return server.url.rsplit(":", 1)[1]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_loopback_host_names_are_answered(bundled_server, host):
    response = requests.post(
        bundled_server.url + "/predict", json=BODY, timeout=30, headers={"Host": f"{host}:{port_of(bundled_server)}"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health%FF", "/%C0%AF", "/v1/appliance/models/digits%FF/chosen", "/docs%E2%82"])
def test_a_path_that_is_not_utf8_is_refused_rather_than_read_without_its_bad_bytes(bundled_server, path):
    response = requests.get(bundled_server.url + path, timeout=30)
    assert response.status_code == 400
    assert response.json() == {"error": "the URL path is not valid UTF-8"}
    assert requests.get(bundled_server.url + "/health", timeout=30).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8501", "127.0.0.1.evil.example", "localhost.evil"])
def test_foreign_host_is_refused_dns_rebinding(bundled_server, host):
    for method, path in (("POST", "/predict"), ("POST", "/v1/models/digits:predict"), ("GET", "/health")):
        response = requests.request(method, bundled_server.url + path, json=BODY, timeout=30, headers={"Host": host})
        assert response.status_code == 403
        assert "is not allowed" in response.json()["error"]


def test_allowed_host_flag_and_explicit_token():
    server = ApplianceProcess("--allowed_host", "models.lan", "--token", "s3cret", wait_ready=False)
    try:
        url = server.url + "/predict"
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and requests.get(server.url + "/health", timeout=30, headers={"Authorization": "Bearer s3cret"}).status_code
            != 200
        ):
            time.sleep(0.1)
        assert requests.post(url, json=BODY, timeout=30).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert requests.post(url, json=BODY, timeout=30, headers=auth).status_code == 200
        assert requests.post(url, json=BODY, timeout=30, headers={**auth, "Host": "models.lan"}).status_code == 200
        assert requests.post(url, json=BODY, timeout=30, headers={**auth, "Host": "other.lan"}).status_code == 403
    finally:
        server.stop()


def test_listening_beyond_loopback_requires_a_stored_token(tmp_path):
    server = ApplianceProcess("--host", "0.0.0.0", home=tmp_path, wait_ready=False)
    try:
        token_file = server.home / "config" / "appliance" / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        url = server.url + "/health"
        response = requests.get(url, timeout=30)
        assert response.status_code == 401 and "Bearer" in response.json()["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert requests.get(url, timeout=30, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = requests.get(url, timeout=30, headers={"Authorization": f"Bearer {token}", "Host": "my-pc.lan:8501"})
        assert ok.status_code in (200, 503)
    finally:
        server.stop()
    again = ApplianceProcess("--host", "0.0.0.0", home=server.home, wait_ready=False)
    try:
        assert (server.home / "config" / "appliance" / "token").read_text().strip() == token, "kept across starts"
    finally:
        again.stop()


# -- the policy from the settings --------------------------------------------------


class StoredToken:
    """``load_or_create_token`` on a file of the test's own, counting the calls."""

    def __init__(self, path: Path):
        self.path = path
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return load_or_create_token(self.path)


def test_beyond_loopback_every_request_needs_the_stored_token(tmp_path):
    stored = StoredToken(tmp_path / "token")
    access = AccessPolicy.for_settings("192.168.1.20", allowed_hosts=("My-PC.lan",), load_token=stored)
    token = stored.path.read_text().strip()
    assert stored.calls == 1 and len(token) >= 32
    assert access == AccessPolicy(
        allowed_hosts=LOOPBACK_HOSTS | {"192.168.1.20", "my-pc.lan"}, token=token, control_token=None
    )
    assert access.token_in_use == token
    again = AccessPolicy.for_settings("192.168.1.20", load_token=stored)
    assert again.token == token, "the stored token, not a new one"


def test_a_wildcard_bind_answers_any_host_name_behind_the_token(tmp_path):
    for host in ("0.0.0.0", "::", "[::]", ""):
        stored = StoredToken(tmp_path / "token")
        access = AccessPolicy.for_settings(host, allowed_hosts=("models.lan",), load_token=stored)
        assert access.allowed_hosts is None, host
        assert access.token == stored.path.read_text().strip() and access.control_token is None


def test_loopback_with_require_token_for_control_asks_it_of_control_changes_only(tmp_path):
    stored = StoredToken(tmp_path / "token")
    access = AccessPolicy.for_settings(
        "127.0.0.1", require_token_for_control=True, cors_allowed_origins=[LOCAL_PAGE], load_token=stored
    )
    token = stored.path.read_text().strip()
    assert access == AccessPolicy(
        allowed_hosts=LOOPBACK_HOSTS, token=None, control_token=token, cors_allowed_origins=(LOCAL_PAGE,)
    )
    assert access.token_in_use == token


def test_an_explicit_token_on_loopback_is_asked_of_every_request_and_nothing_is_stored(tmp_path):
    stored = StoredToken(tmp_path / "token")
    access = AccessPolicy.for_settings("localhost", token="s3cret", load_token=stored)
    assert access == AccessPolicy(allowed_hosts=LOOPBACK_HOSTS, token="s3cret")
    both = AccessPolicy.for_settings("::1", token="s3cret", require_token_for_control=True, load_token=stored)
    assert (both.token, both.control_token, both.token_in_use) == ("s3cret", "s3cret", "s3cret")
    assert stored.calls == 0 and not stored.path.exists()


def test_plain_loopback_needs_no_token_and_answers_loopback_names(tmp_path):
    stored = StoredToken(tmp_path / "token")
    assert AccessPolicy.for_settings("127.0.0.1", load_token=stored) == LOOPBACK_ONLY
    assert LOOPBACK_ONLY.token_in_use is None
    assert AccessPolicy.for_settings("127.0.0.2", load_token=stored).allowed_hosts == LOOPBACK_HOSTS | {"127.0.0.2"}
    assert stored.calls == 0 and not stored.path.exists()


# -- in-process servers ---------------------------------------------------------

LOCAL_PAGE = "http://localhost:3000"
EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
PREDICT_PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_cross_origin_requests_get_no_cors_headers_without_an_allow_list(bundled_server):
    origin = {"Origin": "http://evil.example"}
    for response in (
        requests.post(bundled_server.url + "/predict", json=BODY, timeout=30, headers=origin),
        requests.get(bundled_server.url + "/health", timeout=30, headers=origin),
        requests.options(bundled_server.url + "/predict", timeout=30, headers={**origin, **PREDICT_PREFLIGHT}),
    ):
        assert cors_headers(response) == {}
    # TF Serving answers OPTIONS under /v1 with an empty 200 when there is an Origin: kept, without CORS headers.
    tf_serving = requests.options(
        bundled_server.url + "/v1/models/digits:predict", timeout=30, headers={**origin, **PREDICT_PREFLIGHT}
    )
    assert tf_serving.status_code == 200 and tf_serving.content == b"" and cors_headers(tf_serving) == {}


@pytest.mark.parametrize("origin", [LOCAL_PAGE, EXTENSION])
def test_an_allowed_origin_gets_a_preflight_and_marked_answers(manager, origin):
    with serving(manager, cors_allowed_origins=(LOCAL_PAGE, EXTENSION)) as url:
        for path in ("/predict", "/v1/models/digits:predict", "/v1/appliance/models/digits/chosen"):
            preflight = requests.options(
                url + path,
                timeout=30,
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,authorization",
                },
            )
            assert preflight.status_code == 204 and preflight.content == b""
            assert cors_headers(preflight) == {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, PUT, OPTIONS",
                "Access-Control-Allow-Headers": "content-type, authorization",
                "Access-Control-Max-Age": "600",
            }
            assert "Origin" in preflight.headers["Vary"]
        answer = requests.post(url + "/predict", json=BODY, timeout=30, headers={"Origin": origin})
        assert answer.status_code == 200
        assert cors_headers(answer) == {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "Inference-Header-Content-Length, X-Appliance-Backend",
        }
        assert answer.headers["Vary"] == "Origin"
        failed = requests.get(url + "/v1/models/nope", timeout=30, headers={"Origin": origin})
        assert failed.status_code == 404 and failed.headers["Access-Control-Allow-Origin"] == origin


def test_preflights_only_allow_the_known_request_headers(manager):
    with serving(manager, cors_allowed_origins=(LOCAL_PAGE,)) as url:
        asked = {"Origin": LOCAL_PAGE, "Access-Control-Request-Method": "POST"}
        echo = requests.options(
            url + "/predict", timeout=30, headers={**asked, "Access-Control-Request-Headers": "x-evil, content-type"}
        )
        assert echo.headers["Access-Control-Allow-Headers"] == "content-type"
        default = requests.options(url + "/predict", timeout=30, headers=asked)
        assert default.headers["Access-Control-Allow-Headers"] == (
            "Content-Type, Authorization, Inference-Header-Content-Length"
        )


def test_pages_may_send_and_read_v2_binary_tensor_data(manager):
    """A page's binary v2 request: its preflight allows the header, the answer lets the page read the split."""
    with serving(manager, cors_allowed_origins=(LOCAL_PAGE,)) as url:
        preflight = requests.options(
            url + "/v2/models/digits/infer",
            timeout=30,
            headers={
                "Origin": LOCAL_PAGE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,inference-header-content-length",
            },
        )
        assert preflight.headers["Access-Control-Allow-Headers"] == "content-type, inference-header-content-length"
        header = json.dumps(
            {
                "inputs": [
                    {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "parameters": {"binary_data_size": 256}}
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        body = header + np.zeros((1, 64), "<f4").tobytes()
        answer = requests.post(
            url + "/v2/models/digits/infer",
            data=body,
            timeout=30,
            headers={"Origin": LOCAL_PAGE, "Inference-Header-Content-Length": str(len(header))},
        )
        assert answer.status_code == 200, answer.text
        assert int(answer.headers["Inference-Header-Content-Length"]) < len(answer.content)
        exposed = answer.headers["Access-Control-Expose-Headers"].split(", ")
        assert (
            "Inference-Header-Content-Length" in exposed and answer.headers["Access-Control-Allow-Origin"] == LOCAL_PAGE
        )


def test_other_origins_get_403_preflights_and_unmarked_answers(manager):
    with serving(manager, cors_allowed_origins=(LOCAL_PAGE,)) as url:
        for other in ("http://evil.example", "http://localhost:3001", "https://localhost:3000", "null"):
            preflight = requests.options(url + "/predict", timeout=30, headers={"Origin": other, **PREDICT_PREFLIGHT})
            assert preflight.status_code == 403 and "may not call" in preflight.json()["error"]
            assert cors_headers(preflight) == {}
            answer = requests.post(url + "/predict", json=BODY, timeout=30, headers={"Origin": other})
            assert answer.status_code == 200 and cors_headers(answer) == {} and "Vary" not in answer.headers
        foreign_host = requests.options(
            url + "/predict", timeout=30, headers={"Origin": LOCAL_PAGE, "Host": "evil.example", **PREDICT_PREFLIGHT}
        )
        assert foreign_host.status_code == 403 and cors_headers(foreign_host) == {}


def test_preflights_need_no_token_but_the_requests_after_them_do(manager):
    with serving(manager, token="s3cret", cors_allowed_origins=(LOCAL_PAGE,)) as url:
        page = {"Origin": LOCAL_PAGE}
        preflight = requests.options(url + "/predict", timeout=30, headers={**page, **PREDICT_PREFLIGHT})
        assert preflight.status_code == 204
        refused = requests.post(url + "/predict", json=BODY, timeout=30, headers=page)
        assert refused.status_code == 401
        assert refused.headers["Access-Control-Allow-Origin"] == LOCAL_PAGE, "the page may read why it was refused"
        allowed = requests.post(
            url + "/predict", json=BODY, timeout=30, headers={**page, "Authorization": "Bearer s3cret"}
        )
        assert allowed.status_code == 200


def test_any_origin_only_when_listed_and_never_with_credentials(manager):
    with serving(manager, cors_allowed_origins=("*",)) as url:
        page = {"Origin": "https://anything.example"}
        preflight = requests.options(url + "/predict", timeout=30, headers={**page, **PREDICT_PREFLIGHT})
        answer = requests.post(url + "/predict", json=BODY, timeout=30, headers=page)
        for response in (preflight, answer):
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("text", ["localhost:3000", "http://localhost:3000/app", "null", "", "http://"])
def test_an_allow_list_entry_must_be_an_origin(text):
    with pytest.raises(InvalidArgument, match="is not an origin"):
        parse_origin(text)
    assert parse_origin("HTTP://LocalHost:3000/") == "http://localhost:3000"


def test_control_token_guards_changes_only(manager):
    chosen = "/v1/appliance/models/digits/chosen"
    reload = "/v1/appliance/models/digits/reload"
    with serving(manager, control_token="s3cret") as url:
        for method, path, body in (("PUT", chosen, {"version": 2}), ("POST", reload, None)):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                refused = requests.request(method, url + path, json=body, timeout=60, headers=headers)
                assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
                assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            allowed = requests.request(
                method, url + path, json=body, timeout=60, headers={"Authorization": "Bearer s3cret"}
            )
            assert allowed.status_code == 200 and allowed.json()["chosen_version"] == 2
        assert requests.post(url + "/predict", json=BODY, timeout=30).status_code == 200
        assert (
            requests.post(url + "/v1/models/digits:predict", json={"instances": BODY["input"]}, timeout=30).status_code
            == 200
        )
        for path in (chosen, "/v1/models/digits", "/health"):
            assert requests.get(url + path, timeout=30).status_code == 200
        # Spellings that might reach the control routes without their token.
        connection = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=30)
        for path in (
            "/v1/appl%FFiance/models/digits/chosen",
            "//v1/appliance/models/digits/chosen",
            "/V1/appliance/models/digits/chosen",
            "/v1/appliance/models/digits/chosen/",
        ):
            connection.request("PUT", path, body=b'{"version": 1}', headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            assert response.status in (400, 401, 404), path
        connection.close()
        assert manager.chosen_version("digits") == 2


def test_control_token_guards_starting_and_cancelling_comparisons(manager):
    compare = "/v1/appliance/models/digits/compare"
    token = {"Authorization": "Bearer s3cret"}
    with serving(manager, control_token="s3cret") as url:
        for method, body in (("POST", {"version": 1, "against": 2}), ("DELETE", None)):
            refused = requests.request(method, url + compare, json=body, timeout=60)
            assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
        assert requests.get(url + compare, timeout=30).json()["state"] == "none"  # reading stays open
        started = requests.post(url + compare, json={"version": 1, "against": 2}, timeout=60, headers=token)
        assert started.status_code == 202, started.text
        assert requests.delete(url + compare, timeout=60, headers=token).json()["state"] in ("cancelled", "done")


def test_control_token_guards_changing_the_warmup_from_recent_requests(manager, tmp_path, monkeypatch):
    for variable, value in user_dirs_env(tmp_path).items():  # the default snapshot folder is the user's
        monkeypatch.setenv(variable, value)
    warmup = "/v1/appliance/models/digits/warmup"
    token = {"Authorization": "Bearer s3cret"}
    with serving(manager, control_token="s3cret") as url:
        refused = requests.put(url + warmup, json={"from_recent_requests": False}, timeout=60)
        assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
        assert requests.get(url + warmup, timeout=30).json()["from_recent_requests"] is False  # reading stays open
        changed = requests.put(url + warmup, json={"from_recent_requests": False}, timeout=60, headers=token)
        assert changed.status_code == 200 and changed.json()["model"] == "digits"


# -- the whole appliance ---------------------------------------------------------


def test_require_token_for_control_and_cors_from_flags_and_the_settings_file(tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text(f'cors_allowed_origins = ["{EXTENSION}"]\n')
    server = ApplianceProcess(
        "--require_token_for_control",
        "--cors_allowed_origin",
        LOCAL_PAGE,
        "--settings_file",
        str(settings),
        home=tmp_path,
    )
    try:
        token_file = tmp_path / "config" / "appliance" / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600, "made on loopback too"
        token = token_file.read_text().strip()
        chosen = server.url + "/v1/appliance/models/digits/chosen"
        assert requests.put(chosen, json={"version": 1}, timeout=60).status_code == 401
        assert (
            requests.put(chosen, json={"version": 1}, timeout=60, headers={"Authorization": f"Bearer {token}"}).json()[
                "chosen_version"
            ]
            == 1
        )
        assert requests.post(server.url + "/predict", json=BODY, timeout=30).json()["version"] == 1
        for origin, status in ((LOCAL_PAGE, 204), (EXTENSION, 204), ("http://evil.example", 403)):
            preflight = requests.options(
                chosen,
                timeout=30,
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "PUT",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            assert preflight.status_code == status, origin
    finally:
        server.stop()


def request_status(connection: http.client.HTTPConnection, method: str, path: str, body=None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    assert "error" in json.loads(answer), (path, answer)
    return response.status


def strace_available() -> bool:
    if shutil.which("strace") is None:
        return False
    probe = os.system("strace -f --seccomp-bpf -qq -e trace=%file -o /dev/null true >/dev/null 2>&1")
    return probe == 0


@pytest.mark.skipif(not strace_available(), reason="needs strace, allowed to trace (ptrace)")
def test_names_that_try_to_reach_files_are_refused_and_open_nothing(tmp_path):
    canary = tmp_path / f"canary-{uuid.uuid4().hex}"
    canary.write_text("secret")
    climb = "../" * 16 + str(canary).lstrip("/")  # reaches the canary from any base path
    windows = climb.replace("/", "\\")
    attempts = [
        ("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", None),
        ("GET", "/v1/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd/metadata", None),
        ("GET", "/v1/models/%2e%2e", None),
        ("GET", f"/v1/models/{quote(climb, safe='')}", None),
        ("GET", f"/v1/models/{quote(climb, safe='')}/metadata", None),
        ("POST", f"/v1/models/{quote(str(canary), safe='')}:predict", {"instances": BODY["input"]}),
        ("POST", f"/v1/models/{quote(windows, safe='')}:predict", {"instances": BODY["input"]}),
        ("POST", f"/v1/models/digits%00{quote(climb, safe='')}:predict", {"instances": BODY["input"]}),
        ("GET", f"/v1/models/digits/labels/{quote(climb, safe='')}/metadata", None),
        ("GET", "/v1/models/digits/versions/..%2F1", None),
        ("GET", "/../../../../../../etc/passwd", None),
        ("GET", "/" + climb, None),
        ("PUT", f"/v1/appliance/models/{quote(climb, safe='')}/chosen", {"version": 1}),
        ("PUT", "/v1/appliance/models/digits/chosen", {"label": climb}),
        ("POST", f"/v1/appliance/models/{quote(str(canary), safe='')}/reload", None),
        ("POST", "/predict", {"model": climb, "input": BODY["input"]}),
        ("POST", "/predict", {"model": str(canary), "input": BODY["input"]}),
        ("POST", "/predict", {"model": "digits\x00" + climb, "input": BODY["input"]}),
        ("POST", "/predict", {"model": windows, "input": BODY["input"]}),
        ("POST", "/predict", {"model": "digits", "label": climb, "input": BODY["input"]}),
    ]
    trace = tmp_path / "trace.log"
    server = ApplianceProcess(
        "--file_system_poll_wait_seconds",
        "0.2",
        home=tmp_path / "home",
        runner=("strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=%file", "-o", str(trace)),
    )
    try:
        scans_before = trace.read_text(errors="replace").count(str(MODELS / "digits"))
        connection = http.client.HTTPConnection("127.0.0.1", int(port_of(server)), timeout=30)
        for method, path, body in attempts:
            assert request_status(connection, method, path, body) in (400, 404), path
        connection.close()
        deadline = time.monotonic() + 30  # the poller's scans show the trace saw the server's threads meanwhile
        while trace.read_text(errors="replace").count(str(MODELS / "digits")) <= scans_before:
            assert time.monotonic() < deadline, "strace recorded no file access of the server"
            time.sleep(0.2)
    finally:
        appliance_pid = int(Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()[0])
        os.kill(appliance_pid, signal.SIGTERM)  # strace itself would only detach
        server.stop()
    assert canary.name not in trace.read_text(errors="replace")
    assert canary.read_text() == "secret"


def raw_exchange(server, request: bytes, timeout: float = 10) -> tuple[int, str, dict]:
    """Send ``request`` as is; the status, Content-Type and JSON body of the answer (within ``timeout``)."""
    with socket.create_connection(("127.0.0.1", int(port_of(server))), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())


def test_an_oversized_body_is_refused_at_once_without_being_read(bundled_server):
    started = time.monotonic()
    status, content_type, body = raw_exchange(
        bundled_server,
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000000000000\r\n\r\n{"input": [[',
        timeout=5,
    )
    assert status == 413 and content_type == "application/json"
    assert "67108864 bytes" in body["error"]
    assert time.monotonic() - started < 5


def test_oversized_headers_or_url_get_431_json(bundled_server):
    fits = requests.get(bundled_server.url + "/health", timeout=30, headers={"X-Pad": "a" * 60_000})
    assert fits.status_code == 200
    for request in (
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /health?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ):
        status, content_type, body = raw_exchange(bundled_server, request)
        assert status == 431 and content_type == "application/json"
        assert "larger than 65536 bytes" in body["error"]
