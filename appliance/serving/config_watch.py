"""Re-reads ``--model_config_file`` while serving and applies it when it changed.

TF Serving's ``--model_config_file_poll_wait_seconds``: every N seconds the file is looked at; a
changed one is parsed and handed to ``apply`` (the manager's ``reload_config``, which swaps models
without dropping a request). A file that does not parse, or that ``apply`` refuses, is logged once
per content and the models served stay as they are; it is tried again at each look, since a label
refused now may name a version that is AVAILABLE later.

    watcher = ConfigFileWatcher(Path("models.config"), 30.0, manager.reload_config)
    watcher.start()
    watcher.stop()
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..config import ModelConfig, model_configs, parse_model_server_config
from ..errors import ServingError
from .manager import ModelsNotAvailable

log = logging.getLogger(__name__)


class ConfigFileWatcher:
    """Applies each new content of a ``models.config`` file, looked at every ``poll_seconds`` in a thread."""

    def __init__(self, path: Path, poll_seconds: float, apply: Callable[[list[ModelConfig]], None]):
        self._path = Path(path)
        self._poll_seconds = poll_seconds
        self._apply = apply
        self._in_force = self._read()  # the content the models were configured from at start
        self._seen = self._stat()
        self._refused: str | None = None  # the last content not applied, which was logged once
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="appliance-config-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop looking; waits for a change being applied to finish."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self.check()
            except Exception:  # a look must never end the watcher
                log.exception("checking the model config file %s failed", self._path)

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> str | None:
        try:
            return self._path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def check(self) -> None:
        """One look: apply the file if its content changed since it was last applied."""
        seen = self._stat()
        if seen == self._seen and self._refused is None:
            return
        self._seen = seen
        text = self._read()
        if text is None or text == self._in_force:
            return  # a file being replaced may be missing for a moment
        source = f"model config file {self._path}"
        try:
            self._apply(model_configs(parse_model_server_config(text, source), self._path.resolve().parent, source))
        except ModelsNotAvailable as e:  # in force all the same
            log.warning("%s: applied, but %s", source, e.message)
        except ServingError as e:
            if text != self._refused:
                log.warning("%s: not applied, the models served stay as they are: %s", source, e.message)
            self._refused = text
            return
        else:
            log.info("%s: applied", source)
        self._in_force, self._refused = text, None
