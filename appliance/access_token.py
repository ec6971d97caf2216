"""The access token required beyond loopback (or by --require_token_for_control): made once, kept owner-only.

token = load_or_create_token(paths.token_file())   # the same token on every start
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from .paths import write_file_atomically

log = logging.getLogger(__name__)


def load_or_create_token(path: Path) -> str:
    """The token stored in ``path``, creating a random one (readable by the owner only) when there is none."""
    try:
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    write_file_atomically(path, (token + "\n").encode(), mode=0o600)
    log.warning("created an access token in %s", path)
    return token
