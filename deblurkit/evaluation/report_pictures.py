"""The pictures of a report page: display-size copies, thumbnails, zoomed crops of the window where
the restorations differ most, and error maps against the sharp reference, written atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..imaging.atomic import write_atomic
from ..imaging.reading import read_image

__all__ = [
    "CROP_SIZE",
    "ERROR_FULL_SCALE",
    "RAMP",
    "Layer",
    "Prepared",
    "ReportImage",
    "most_different_window",
    "prepare_pictures",
]

CROP_SIZE = 128
"""Side of the zoomed crop window, in pixels of the image as the page shows it."""
THUMB_SIZE = 160
"""Long side of the thumbnails in the strip."""
JPEG_QUALITY = 85
ERROR_FULL_SCALE = 64
"""Mean absolute difference (of 255) drawn at the top of the error-map colour ramp."""

# The error-map colour ramp: (position, (r, g, b)); dark for no error, pale yellow for large.
RAMP = (
    (0.0, (0, 0, 0)),
    (0.2, (40, 12, 90)),
    (0.45, (150, 35, 110)),
    (0.7, (235, 95, 50)),
    (1.0, (255, 245, 160)),
)


@dataclass(frozen=True)
class ReportImage:
    """One image of the report: the blurry input, each model's restoration and, if known, the sharp target.

    ``scores`` maps a row (``"input"`` or a model name) to its metrics (``{"psnr": 31.2, ...}``).
    """

    name: str
    input: Path
    outputs: dict[str, Path]
    reference: Path | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Layer:
    key: str  # "input", "model-N" or "sharp": file names and select values
    label: str
    src: str  # relative to the page
    crop: str
    error: str | None  # error map vs sharp, None without a reference (and for the sharp layer)


@dataclass(frozen=True)
class Prepared:
    width: int
    height: int
    thumb: str
    thumb_size: tuple[int, int]
    layers: list[Layer]
    window: tuple[int, int, int, int]  # x, y, width, height at display size


# -- pixels ------------------------------------------------------------------------------------------


def _to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """8-bit RGB for display from read_image's pixels (uint8, uint16 or float in [0, 1]; 1 or 3 channels)."""
    if pixels.dtype == np.uint8:
        out = pixels
    elif pixels.dtype == np.uint16:
        out = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    else:
        out = np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    if out.ndim == 2:
        out = out[:, :, None]
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out[:, :, :3])


def _display_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _load(path: Path, size: tuple[int, int] | None, max_side: int) -> np.ndarray:
    """The image at ``path`` as 8-bit RGB at ``size`` (default: its own size shrunk to ``max_side``)."""
    rgb = _to_rgb8(read_image(path).pixels)
    height, width = rgb.shape[:2]
    if size is None:
        size = _display_size(width, height, max_side)
    if size == (width, height):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))


def most_different_window(layers: Sequence[np.ndarray], size: int = CROP_SIZE) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` of the ``size``×``size`` window where ``layers`` (H×W×C arrays) differ most.

    The per-pixel spread is the largest minus the smallest value across the layers, averaged over the
    channels (with two layers: their absolute difference). Of the windows with the largest total
    spread, the one nearest their centre wins, so a small differing spot ends up mid-window. Fewer
    than two layers: the centred window.
    """
    height, width = layers[0].shape[:2]
    win_w, win_h = min(size, width), min(size, height)
    if len(layers) < 2:
        return (width - win_w) // 2, (height - win_h) // 2, win_w, win_h
    arrays = [np.asarray(layer, dtype=np.float32).reshape(height, width, -1) for layer in layers]
    gap = np.maximum.reduce(arrays) - np.minimum.reduce(arrays)
    spread = sum(gap[:, :, c] for c in range(gap.shape[2])) / gap.shape[2]
    table = np.zeros((height + 1, width + 1), dtype=np.float64)
    table[1:, 1:] = spread.cumsum(axis=0, dtype=np.float64).cumsum(axis=1)
    sums = table[win_h:, win_w:] - table[:-win_h, win_w:] - table[win_h:, :-win_w] + table[:-win_h, :-win_w]
    best = sums.max()
    ys, xs = np.nonzero(sums >= best - max(abs(best) * 1e-9, 1e-6))
    centre_y, centre_x = ys.mean(), xs.mean()
    pick = int(np.argmin((ys - centre_y) ** 2 + (xs - centre_x) ** 2))
    return int(xs[pick]), int(ys[pick]), win_w, win_h


def _ramp_table() -> np.ndarray:
    """Colour for each sum of the three channels' absolute differences (0..765)."""
    level = np.clip(np.arange(3 * 255 + 1) / (3 * ERROR_FULL_SCALE), 0, 1)
    stops = [stop for stop, _ in RAMP]
    channels = [np.interp(level, stops, [colour[c] for _, colour in RAMP]) for c in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


RAMP_TABLE = _ramp_table()


def _error_map(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean absolute difference over the channels, per pixel, through the colour ramp (8-bit RGB)."""
    diff = np.abs(image.astype(np.int16) - reference.astype(np.int16))
    return RAMP_TABLE[diff[:, :, 0] + diff[:, :, 1] + diff[:, :, 2]]


# -- files -------------------------------------------------------------------------------------------


def _save(path: Path, pixels: np.ndarray | Image.Image) -> None:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    if path.suffix == ".png":
        image.save(buffer, "PNG")
    else:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    write_atomic(path, lambda handle: handle.write(buffer.getvalue()))


def prepare_pictures(
    item: ReportImage, index: int, models: Sequence[str], folder: Path, max_side: int
) -> Prepared:
    """Write one image's pictures into ``folder/NNN/`` and describe them for the page."""
    sub = f"{index + 1:03d}"
    target = folder / sub
    target.mkdir(parents=True, exist_ok=True)
    rel = f"{folder.name}/{sub}"
    blurry = _load(item.input, None, max_side)
    height, width = blurry.shape[:2]
    pixels = {"input": blurry}
    labels = {"input": "Input (blurry)"}
    for number, model in enumerate(models, 1):
        if model in item.outputs:
            pixels[f"model-{number}"] = _load(item.outputs[model], (width, height), max_side)
            labels[f"model-{number}"] = model
    restored = [key for key in pixels if key != "input"]
    sharp = _load(item.reference, (width, height), max_side) if item.reference is not None else None

    compared = [pixels[key] for key in restored] if len(restored) > 1 else [pixels[key] for key in pixels]
    window = most_different_window(compared)
    x, y, win_w, win_h = window
    if sharp is not None:
        pixels["sharp"] = sharp
        labels["sharp"] = "Sharp (reference)"

    layers = []
    for key, array in pixels.items():
        _save(target / f"{key}.jpg", array)
        _save(target / f"crop-{key}.png", array[y : y + win_h, x : x + win_w])
        error = None
        if sharp is not None and key != "sharp":
            _save(target / f"error-{key}.jpg", _error_map(array, sharp))
            error = f"{rel}/error-{key}.jpg"
        layers.append(Layer(key, labels[key], f"{rel}/{key}.jpg", f"{rel}/crop-{key}.png", error))
    thumb = Image.fromarray(blurry)
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    _save(target / "thumb.jpg", thumb)
    return Prepared(width, height, f"{rel}/thumb.jpg", thumb.size, layers, window)
