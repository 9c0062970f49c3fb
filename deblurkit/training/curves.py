"""The run's curves as a PNG drawn with Pillow: the training loss (and its terms) and the validation
PSNR against the step."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from ..imaging.atomic import write_atomic

__all__ = ["draw_curves"]

_SIZE = (960, 640)
_MARGIN = (70, 30, 20, 40)  # left, top, right, bottom of each panel
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _series(
    records: Sequence[dict], kind: str, skip: tuple[str, ...]
) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        if record.get("kind") != kind:
            continue
        for key, value in record.items():
            if key in skip or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            series.setdefault(key, []).append((float(record["step"]), float(value)))
    return series


def _panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    title: str,
    series: dict[str, list[tuple[float, float]]],
    max_step: float,
) -> None:
    left, top, right, bottom = box
    x0, y0, x1, y1 = left + _MARGIN[0], top + _MARGIN[1], right - _MARGIN[2], bottom - _MARGIN[3]
    draw.rectangle((x0, y0, x1, y1), outline="#888888")
    draw.text((x0, top + 8), title, fill="black")
    values = [v for points in series.values() for _, v in points]
    if not values:
        draw.text((x0 + 10, y0 + 10), "no data yet", fill="#888888")
        return
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5, high + 0.5
    for fraction in (0.0, 0.5, 1.0):
        value = low + (high - low) * fraction
        y = y1 - (y1 - y0) * fraction
        draw.line((x0 - 4, y, x0, y), fill="#888888")
        draw.text((left + 4, y - 6), f"{value:.4g}", fill="black")
    draw.text((x1 - 80, y1 + 8), f"step {max_step:g}", fill="black")
    for index, (name, points) in enumerate(sorted(series.items())):
        colour = _COLOURS[index % len(_COLOURS)]
        xy = [
            (x0 + (x1 - x0) * step / max(max_step, 1.0), y1 - (y1 - y0) * (value - low) / (high - low))
            for step, value in points
        ]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        else:
            draw.ellipse((xy[0][0] - 3, xy[0][1] - 3, xy[0][0] + 3, xy[0][1] + 3), fill=colour)
        draw.text((x0 + 8 + 130 * index, y0 + 6), name, fill=colour)


def draw_curves(records: Sequence[dict], path: Path) -> Path:
    """Draw the ``train`` records' loss terms and the ``val`` records' PSNR to a PNG (atomically)."""
    image = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(image)
    train = _series(records, "train", ("step", "lr", "samples_per_s", "time", "epoch", "grad_norm"))
    val = {k: v for k, v in _series(records, "val", ("step",)).items() if "psnr" in k}
    steps = [float(r["step"]) for r in records if "step" in r] or [1.0]
    half = _SIZE[1] // 2
    _panel(draw, (0, 0, _SIZE[0], half), "training loss", train, max(steps))
    _panel(draw, (0, half, _SIZE[0], _SIZE[1]), "validation PSNR (dB)", val, max(steps))
    write_atomic(Path(path), lambda handle: image.save(handle, format="PNG"))
    return Path(path)
