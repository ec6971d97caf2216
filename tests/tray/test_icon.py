"""The tray icon drawn with Pillow: one RGBA image per status, at any size, each status distinct."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from PIL import Image, ImageChops

from appliance.tray.icon import STATUS_COLOURS, draw_icon, save_icon_png

STATUSES = ("loading", "ready", "degraded", "error")


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("size", [16, 22, 64, 256])
def test_every_status_draws_an_rgba_image_of_the_requested_size(status, size):
    image = draw_icon(status, size)
    assert image.mode == "RGBA"
    assert image.size == (size, size)
    assert image.getpixel((0, 0))[3] == 0  # rounded corners: transparent
    assert image.getpixel((size // 2, size // 2))[3] == 255


def test_the_statuses_are_the_ones_the_tray_state_names():
    assert set(STATUS_COLOURS) == set(STATUSES)


@pytest.mark.parametrize(("a", "b"), list(combinations(STATUSES, 2)))
def test_statuses_differ_from_each_other(a, b):
    difference = np.asarray(ImageChops.difference(draw_icon(a), draw_icon(b)))
    changed = int((difference[..., :3].max(axis=-1) > 40).sum())
    assert changed > 64 * 64 // 4  # the background colour changes: most of the icon


def test_statuses_differ_in_more_than_colour():
    """A badge tells the statuses apart without colour vision (ready has none)."""
    shapes = {status: draw_icon(status).convert("L").point(lambda v: 255 if v > 200 else 0) for status in STATUSES}
    for a, b in combinations(STATUSES, 2):
        assert ImageChops.difference(shapes[a], shapes[b]).getbbox() is not None, (a, b)


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="unknown tray status 'busy'"):
        draw_icon("busy")


def test_save_icon_png_writes_the_ready_icon(tmp_path):
    path = save_icon_png(tmp_path / "appliance.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (256, 256)
        assert ImageChops.difference(image.convert("RGBA"), draw_icon("ready", 256)).getbbox() is None
