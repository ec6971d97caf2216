"""The appliance's icon, drawn with Pillow: a rounded square holding a small neural network, coloured by status.

    draw_icon("ready")                       # -> 64x64 RGBA image: green, no badge
    draw_icon("error", size=22)              # red, with a white "x" badge
    save_icon_png("appliance.png")           # the 256 px "ready" icon, for packaging

Each status has its own colour and badge, so it reads at a glance and without colour vision:
loading (blue, "..." badge), ready (green, none), degraded (amber, "!"), error (red, "x").
Drawn four times larger and scaled down, for smooth edges at any size. No binary asset ships.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from PIL import Image, ImageDraw

STATUS_COLOURS = {
    "loading": (52, 112, 196),
    "ready": (38, 150, 82),
    "degraded": (222, 146, 20),
    "error": (200, 48, 48),
}
STATUS_BADGES = {"loading": "dots", "ready": None, "degraded": "bang", "error": "cross"}

_OVERSAMPLE = 4
_WHITE = (255, 255, 255, 255)
# The network, on a 64-unit canvas: three inputs, two hidden units, one output.
_LAYERS = (((18, 17), (18, 32), (18, 47)), ((32, 24), (32, 40)), ((46, 32),))


def draw_icon(status: str, size: int = 64) -> Image.Image:
    """The icon for ``status`` ("loading", "ready", "degraded" or "error") as a ``size`` x ``size`` RGBA image."""
    if status not in STATUS_COLOURS:
        raise ValueError(f"unknown tray status {status!r}; expected one of {', '.join(STATUS_COLOURS)}")
    scale = size * _OVERSAMPLE / 64
    image = Image.new("RGBA", (round(64 * scale),) * 2, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return x0 * scale, y0 * scale, x1 * scale, y1 * scale

    draw.rounded_rectangle(box(2, 2, 62, 62), radius=12 * scale, fill=STATUS_COLOURS[status] + (255,))
    _draw_network(draw, scale)
    badge = STATUS_BADGES[status]
    if badge:
        _draw_badge(draw, scale, badge, STATUS_COLOURS[status])
    return image.resize((size, size), Image.Resampling.BOX)


def save_icon_png(path: str | Path, size: int = 256) -> Path:
    """Write the "ready" icon as a ``size`` px PNG (for installers and desktop entries); returns the path."""
    path = Path(path)
    draw_icon("ready", size).save(path, "PNG")
    return path


def _draw_network(draw: ImageDraw.ImageDraw, scale: float) -> None:
    for layer, following in itertools.pairwise(_LAYERS):
        for x0, y0 in layer:
            for x1, y1 in following:
                draw.line((x0 * scale, y0 * scale, x1 * scale, y1 * scale), fill=_WHITE, width=round(2 * scale))
    for layer in _LAYERS:
        for x, y in layer:
            r = 4.5
            draw.ellipse(((x - r) * scale, (y - r) * scale, (x + r) * scale, (y + r) * scale), fill=_WHITE)


def _draw_badge(draw: ImageDraw.ImageDraw, scale: float, badge: str, colour: tuple[int, int, int]) -> None:
    """A white disc in the bottom-right corner, ringed in the status colour, with a mark in that colour."""
    cx, cy, r = 50 * scale, 50 * scale, 13 * scale
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_WHITE, outline=(*colour, 255), width=round(2.5 * scale))
    ink = (*colour, 255)
    stroke = round(3.5 * scale)
    if badge == "cross":
        d = 5.5 * scale
        draw.line((cx - d, cy - d, cx + d, cy + d), fill=ink, width=stroke)
        draw.line((cx - d, cy + d, cx + d, cy - d), fill=ink, width=stroke)
    elif badge == "bang":
        draw.line((cx, cy - 7 * scale, cx, cy + 2 * scale), fill=ink, width=stroke)
        dot = 2 * scale
        draw.ellipse((cx - dot, cy + 4.5 * scale - dot, cx + dot, cy + 4.5 * scale + dot), fill=ink)
    else:  # "dots": work in progress
        dot = 2.2 * scale
        for dx in (-6, 0, 6):
            x = cx + dx * scale
            draw.ellipse((x - dot, cy - dot, x + dot, cy + dot), fill=ink)
