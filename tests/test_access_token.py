"""The access token: made once, owner-only, and a clear error where it cannot be made."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from appliance.access_token import load_or_create_token
from appliance.errors import Code, ServingError


def test_a_token_is_made_once_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "config" / "token"
    token = load_or_create_token(path)
    assert len(token) >= 43 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token


def test_a_token_that_cannot_be_read_is_a_clear_error_naming_the_file(tmp_path):
    path = tmp_path / "token"
    path.mkdir()  # unreadable as a file, for root too
    with pytest.raises(ServingError) as raised:
        load_or_create_token(path)
    assert raised.value.code is Code.FAILED_PRECONDITION
    assert raised.value.message.startswith(f"the access token {path} cannot be read (")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc, where no file can be made (for root too)")
def test_a_token_that_cannot_be_made_is_a_clear_error_naming_the_file():
    path = Path("/proc/self/appliance-token")
    with pytest.raises(ServingError) as raised:
        load_or_create_token(path)
    assert raised.value.code is Code.FAILED_PRECONDITION
    assert raised.value.message.startswith(f"the access token {path} is missing and cannot be made (")
    assert raised.value.message.endswith("or pass --token")
