"""Side-by-side before/after images with labels, for people who would rather look than read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import write_atomic
from .reading import to_float

__all__ = ["COMPARE_SUFFIX", "compare_path", "is_comparison", "side_by_side", "write_compare"]

COMPARE_SUFFIX = ".compare.jpg"
"""What ``deblur --compare`` names its before/after pictures: ``NAME.compare.jpg`` beside ``NAME``."""


def compare_path(output: Path) -> Path:
    """The comparison picture written beside the deblurred ``output``."""
    return output.with_name(f"{output.stem}{COMPARE_SUFFIX}")


def is_comparison(path: Path) -> bool:
    """True for a comparison picture deblurkit wrote: never an image to deblur, score or train on."""
    return path.name.endswith(COMPARE_SUFFIX)


MAX_WIDTH = 16000
"""Wider comparisons are scaled down (JPEG holds at most 65,535 pixels a side)."""


def _rgb8(pixels: np.ndarray) -> Image.Image:
    """An 8-bit RGB Pillow image of H×W×C (C = 1 or 3) samples of any type."""
    values = np.rint(np.clip(to_float(pixels), 0, 1) * 255).astype(np.uint8)
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return Image.fromarray(values)


def side_by_side(
    before: np.ndarray, after: np.ndarray, labels: tuple[str, str] = ("before", "after")
) -> Image.Image:
    """``before`` and ``after`` (H×W×C arrays of the same size) next to each other under a label bar."""
    left, right = _rgb8(before), _rgb8(after)
    width, height = left.size
    gap = max(2, width // 200)
    scale = min(1.0, MAX_WIDTH / (2 * width + gap))
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        left, right = (
            left.resize(size, Image.Resampling.LANCZOS),
            right.resize(size, Image.Resampling.LANCZOS),
        )
        width, height = size
        gap = max(2, width // 200)
    font_size = max(12, min(width, height) // 25)
    font = ImageFont.load_default(size=font_size)
    bar = round(font_size * 1.6)
    canvas = Image.new("RGB", (2 * width + gap, height + bar), (0, 0, 0))
    canvas.paste(left, (0, bar))
    canvas.paste(right, (width + gap, bar))
    draw = ImageDraw.Draw(canvas)
    for x, label in ((0, labels[0]), (width + gap, labels[1])):
        draw.text((x + width / 2, bar / 2), label, fill=(255, 255, 255), font=font, anchor="mm")
    return canvas


def write_compare(
    path: Path, before: np.ndarray, after: np.ndarray, labels: tuple[str, str], quality: int = 90
) -> None:
    """Write the side-by-side comparison as a JPEG (atomically)."""
    image = side_by_side(before, after, labels)
    write_atomic(path, lambda handle: image.save(handle, format="JPEG", quality=quality))
