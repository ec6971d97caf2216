"""The request every server gets: TF Serving's ``:predict`` with one instance of each bundled model's input."""

from __future__ import annotations

import json

#: One input row per bundled model: an 8x8 digit's 64 pixels (0-16), an iris flower's 4 measurements (cm).
INSTANCES = {
    "digits": [float(i % 17) for i in range(64)],
    "iris": [5.1, 3.5, 1.4, 0.2],
}


def predict_path(model: str) -> str:
    return f"/v1/models/{model}:predict"


def predict_body(model: str) -> bytes:
    """``{"instances": [[...]]}``: batch 1, the same bytes for every server."""
    return json.dumps({"instances": [INSTANCES[model]]}).encode()
