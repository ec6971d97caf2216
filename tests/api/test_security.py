"""Secure defaults over real HTTP: Host allow-list against DNS rebinding, and the token beyond loopback."""

from __future__ import annotations

import stat
import time

import pytest
import requests

from ..conftest import ApplianceProcess

BODY = {"input": [[0.0] * 64]}


def port_of(server) -> str:
    return server.url.rsplit(":", 1)[1]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_loopback_host_names_are_answered(bundled_server, host):
    response = requests.post(bundled_server.url + "/predict", json=BODY, timeout=30,
                             headers={"Host": f"{host}:{port_of(bundled_server)}"})
    assert response.status_code == 200


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
        while time.monotonic() < deadline and requests.get(
                server.url + "/health", timeout=30, headers={"Authorization": "Bearer s3cret"}).status_code != 200:
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
