"""The access token required beyond loopback (or by --require_token_for_control): made once, kept owner-only.

token = load_or_create_token(paths.token_file())   # the same token on every start
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from .errors import FailedPrecondition
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
    except OSError as e:  # e.g. the service's user given a token only root may read
        raise FailedPrecondition(
            f"the access token {path} cannot be read ({e.strerror or e}): make it readable by this user, "
            "or pass --token"
        ) from None
    token = secrets.token_urlsafe(32)
    try:
        write_file_atomically(path, (token + "\n").encode(), mode=0o600)
    except OSError as e:  # e.g. the system service, which may not write /etc/appliance: the package makes it
        raise FailedPrecondition(
            f"the access token {path} is missing and cannot be made ({e.strerror or e}): write one there "
            "(a long random string, readable by this user only), or pass --token"
        ) from None
    log.warning("created an access token in %s", path)
    return token
