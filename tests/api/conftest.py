"""Shared by the API tests: a manager of the bundled models, and ``create_app`` served on loopback for it."""

from __future__ import annotations

import contextlib

import pytest

from appliance.api.app import create_app
from appliance.api.security import AccessPolicy
from appliance.server import Server
from appliance.serving.manager import ModelManager
from appliance.serving.repository import Repository

from ..conftest import MODELS


@pytest.fixture(scope="module")
def manager():
    from appliance.serving.runtime.local_tf import LocalTFRuntime

    models = ModelManager(Repository([], roots=[MODELS]), LocalTFRuntime(device="cpu"), poll_seconds=0)
    models.start()  # one pass: poll_seconds=0
    assert models.wait_until_ready(120)
    yield models
    models.stop()


@contextlib.contextmanager
def serving(manager, **options):
    """``create_app`` with ``AccessPolicy(**options)`` served on a free loopback port; yields its URL."""
    server = Server(create_app(manager, max_request_bytes=1 << 20, access=AccessPolicy(**options)), "127.0.0.1", 0)
    thread = server.start()
    try:
        yield server.url
    finally:
        server.stop()
        thread.join(30)
