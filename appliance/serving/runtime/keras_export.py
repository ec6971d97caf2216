"""Keras files (``.keras``, legacy ``.h5``) as SavedModels: exported once with Keras' own ``model.export``.

The SavedModel goes to the per-user cache (``~/.cache/appliance/converted/<sha256 of the file>/``), written
to a hidden temp folder and renamed into place, so a crash leaves no half conversion and a restart, or a
copy of the same file under another name, finds it done. The Keras file itself is only read.

    saved_model = exported_saved_model(Path("~/models/tiny.keras"))   # then load it as any SavedModel
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ...errors import InvalidArgument
from ...paths import ensure_dir, user_cache_dir

log = logging.getLogger(__name__)

CONVERTED = "converted"
STALE_SECONDS = 24 * 3600  # a temp folder this old is a conversion a crash or kill cut short: none takes a day


def file_digest(path: Path) -> str:
    """The SHA-256 of the file's content, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def exported_saved_model(keras_file: Path) -> Path:
    """The SavedModel folder exported from ``keras_file``, exporting it now unless the cache holds it."""
    target = ensure_dir(user_cache_dir() / CONVERTED) / file_digest(keras_file)
    if (target / "saved_model.pb").is_file():
        log.info("model file %s: using cached conversion %s", keras_file, target)
        return target
    _remove_stale_temps(target.parent)
    started = time.perf_counter()
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        _export(keras_file, temp)
        try:
            os.rename(temp, target)
        except OSError:  # another process finished the same conversion first
            if not (target / "saved_model.pb").is_file():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    milliseconds = (time.perf_counter() - started) * 1000
    log.info("model file %s: converted to SavedModel %s in %.0f ms", keras_file, target, milliseconds)
    return target


def _remove_stale_temps(folder: Path) -> None:
    """Remove the temp folders of conversions cut short (a crash, kill -9) more than a day ago."""
    for temp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if time.time() - temp.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(temp)


def _export(keras_file: Path, folder: Path) -> None:
    import keras  # type: ignore[import-untyped]  # Keras publishes no type information

    try:
        model = keras.saving.load_model(keras_file, compile=False)
    except Exception as e:  # a damaged file, a custom layer this process does not know, an unsafe lambda
        raise InvalidArgument(f"cannot read Keras model {keras_file}: {type(e).__name__}: {e}") from None
    try:
        model.export(str(folder), format="tf_saved_model", verbose=False)
    except Exception as e:
        raise InvalidArgument(f"cannot export {keras_file} to a SavedModel: {type(e).__name__}: {e}") from None
    finally:
        del model
        keras.backend.clear_session()
