"""Checks that a written figure is a picture of something: its format, its pixel size, and more than a blank canvas
(a file size alone passes an empty figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "GIF": b"GIF89a"}


def check_picture(path: str | Path, *, min_size: tuple[int, int] = (200, 150), kind: str | None = None) -> Path:
    """Assert that ``path`` is a PNG (or GIF, by its extension or ``kind``) of at least ``min_size`` pixels (width,
    height) whose first frame is not blank: more than 1% of the pixels differ from the most common colour (the
    background) and there are more than 16 distinct colours. Returns the path."""
    path = Path(path)
    kind = kind or path.suffix.lstrip(".").upper()
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[: len(SIGNATURES[kind])] == SIGNATURES[kind], f"{path} is not a {kind} file"
    with Image.open(path) as im:
        assert im.format == kind, (path, im.format)
        assert im.width >= min_size[0] and im.height >= min_size[1], (path, im.size, min_size)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    drawn = 1 - counts.max() / len(pixels)
    assert len(colours) > 16 and drawn > 0.01, f"{path} is blank: {len(colours)} colours, {drawn:.2%} drawn"
    return path
