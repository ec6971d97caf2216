"""Where the appliance finds its own files, from a source checkout, a pip install or a frozen bundle.

    bundled_models_dir()  # -> .../models, the SavedModels shipped with the appliance
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_models_dir() -> Path:
    """The folder of bundled SavedModels (``models/``)."""
    candidates = []
    if getattr(sys, "frozen", False):
        candidates.append(Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "models")
    candidates += [PACKAGE_DIR.parent / "models", PACKAGE_DIR / "models"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]
