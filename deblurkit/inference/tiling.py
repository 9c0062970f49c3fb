"""Tile plans over a host image, raised-cosine feathered merging, and the out-of-memory back-off.

A :class:`TilePlan` covers an H×W image with a grid of overlapping tiles whose sides obey an
architecture's :class:`~deblurkit.archs.SizeRule`; tile starts sit on the rule's grid, so a tile that
ends at the image border is padded there exactly as the whole image is. Each tile's weight is the outer
product of two 1-D ramps across the overlaps with its neighbours (none on the image-border sides): the
outer quarter of an overlap, where the network saw the tile's edge, gets weight 0, the middle half a
raised-cosine cross-fade, the inner quarter 1. Weights are normalised so that all tiles' weights sum to
one at every pixel; merging is a weighted sum into a float32 host buffer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..archs import SizeRule

__all__ = [
    "Tile",
    "TilePlan",
    "auto_tile",
    "fit_tile",
    "halve_tile",
    "is_out_of_memory",
    "plan_tiles",
]


@dataclass(frozen=True)
class Tile:
    """One tile: its place in the image and its (normalised) 1-D weights along each axis."""

    top: int
    left: int
    bottom: int
    right: int
    weight_y: np.ndarray
    weight_x: np.ndarray

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices of the tile in the image."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def weights(self) -> np.ndarray:
        """The tile's 2-D blending weights (h×w float32)."""
        return np.outer(self.weight_y, self.weight_x)


@dataclass(frozen=True)
class TilePlan:
    """A grid of tiles over a ``height``×``width`` image (row spans × column spans)."""

    height: int
    width: int
    rows: tuple[tuple[int, int, np.ndarray], ...]
    cols: tuple[tuple[int, int, np.ndarray], ...]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def __iter__(self) -> Iterator[Tile]:
        for top, bottom, weight_y in self.rows:
            for left, right, weight_x in self.cols:
                yield Tile(top, left, bottom, right, weight_y, weight_x)

    @property
    def tile_size(self) -> tuple[int, int]:
        """The largest tile's (height, width)."""
        return max(b - t for t, b, _ in self.rows), max(r - left for left, r, _ in self.cols)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Evenly spread starts (multiples of ``align``) of ``tile``-long spans covering ``length``.

    Consecutive spans overlap by at least ``overlap``; the last may end past ``length`` (it is clipped
    and the Restorer pads it, as it pads the whole image there).
    """
    units, tile_units = _round_up(length, align) // align, tile // align
    if units <= tile_units:
        return [0]
    step = tile_units - overlap // align
    count = math.ceil((units - tile_units) / step) + 1
    last = units - tile_units
    return [round(i * last / (count - 1)) * align for i in range(count)]


def _ramp(n: int) -> np.ndarray:
    """``n`` weights rising from 0 to 1: a quarter of zeros, a raised cosine, a quarter of ones.

    The ramp and its reverse sum to one everywhere, so two tiles cross-fade without normalising.
    """
    margin = n // 4
    core = n - 2 * margin
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(core, dtype=np.float64) + 0.5) / core)
    return np.concatenate([np.zeros(margin), rise, np.ones(margin)])


def _bounds(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """(start, stop) of the spans along one axis, clipped to the image."""
    return [(start, min(start + tile, length)) for start in _starts(length, tile, overlap, align)]


def _spans(length: int, tile: int, overlap: int, align: int) -> tuple[tuple[int, int, np.ndarray], ...]:
    """The spans along one axis, each with its normalised weights across its overlaps."""
    bounds = _bounds(length, tile, overlap, align)
    raw = []
    for i, (start, stop) in enumerate(bounds):
        weight = np.ones(stop - start)
        if i > 0:
            rise = bounds[i - 1][1] - start
            weight[:rise] *= _ramp(rise)
        if i < len(bounds) - 1:
            fall = stop - bounds[i + 1][0]
            weight[stop - start - fall :] *= _ramp(fall)[::-1]
        raw.append(weight)
    total = np.zeros(length)
    for (start, stop), weight in zip(bounds, raw, strict=True):
        total[start:stop] += weight
    return tuple(
        (start, stop, (weight / total[start:stop]).astype(np.float32))
        for (start, stop), weight in zip(bounds, raw, strict=True)
    )


def _align(rule: SizeRule) -> int:
    """The grid tile starts sit on: the rule's multiple, except for square rules (centred padding)."""
    return 1 if rule.square else rule.multiple


def fit_tile(tile: int, rule: SizeRule) -> int:
    """The largest side ≤ ``tile`` that the rule accepts (at least one multiple)."""
    return max(rule.multiple, tile // rule.multiple * rule.multiple)


def _shrink(length: int, tile: int, overlap: int, align: int) -> int:
    """The smallest aligned side ≤ ``tile`` that covers ``length`` with as few spans as ``tile`` needs."""
    count = len(_starts(length, tile, overlap, align))
    if count == 1:
        return tile
    covered = _round_up(length, align) + (count - 1) * overlap
    return min(tile, _round_up(math.ceil(covered / count), align))


def _layout(
    height: int, width: int, tile: tuple[int, int], overlap: int, rule: SizeRule
) -> tuple[int, int, int]:
    """Tile height, tile width and overlap as planned: fitted to the rule, then shrunk to the image."""
    align = _align(rule)
    if rule.square:
        tile_h = tile_w = fit_tile(min(tile), rule)
    else:
        tile_h, tile_w = fit_tile(tile[0], rule), fit_tile(tile[1], rule)
    overlap = min(_round_up(overlap, align), min(tile_h, tile_w) // 2 // align * align)
    if not rule.square:
        tile_h, tile_w = _shrink(height, tile_h, overlap, align), _shrink(width, tile_w, overlap, align)
    return tile_h, tile_w, overlap


def plan_tiles(
    height: int,
    width: int,
    tile: int | tuple[int, int],
    overlap: int,
    rule: SizeRule,
) -> TilePlan:
    """Plan tiles of at most ``tile`` (a side, or (height, width)) over a ``height``×``width`` image.

    ``tile`` 0 means the whole image as one tile. Tile sides are rounded down to the rule's multiple
    (square rules get square tiles), the overlap up to it and to at most half a tile; for other rules
    each side is then shrunk as far as the same number of tiles still covers the image.
    """
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty {height}×{width} image")
    if overlap < 0:
        raise ValueError(f"the tile overlap must be ≥ 0, got {overlap}")
    tile = (tile, tile) if isinstance(tile, int) else tile
    if min(tile) <= 0:
        whole = ((0, height, np.ones(height, np.float32)),), ((0, width, np.ones(width, np.float32)),)
        return TilePlan(height, width, *whole)
    tile_h, tile_w, overlap = _layout(height, width, tile, overlap, rule)
    align = _align(rule)
    return TilePlan(
        height,
        width,
        _spans(height, tile_h, overlap, align),
        _spans(width, tile_w, overlap, align),
    )


def auto_tile(
    height: int, width: int, max_pixels: int, overlap: int, rule: SizeRule, min_tile: int
) -> int | tuple[int, int]:
    """The tile for an image when a tile may hold at most ``max_pixels`` (padded) pixels.

    0 (the whole image) when it fits. Otherwise, for square rules, the largest square; for the others,
    the (height, width) among the tilings with tiles of at most ``max_pixels`` that processes the
    fewest pixels in all (the overlaps are the cost). Never below ``min_tile``.
    """
    padded_h, padded_w = rule.padded_size(height, width)
    if padded_h * padded_w <= max_pixels:
        return 0
    floor = fit_tile(max(min_tile, rule.multiple), rule)
    if rule.square:
        return max(floor, fit_tile(math.isqrt(max_pixels), rule))
    align = _align(rule)
    best: tuple[int, int] = (floor, floor)
    best_cost = math.inf
    for rows in range(1, math.ceil(height / floor) + 1):
        tile_h = _round_up(math.ceil((padded_h + (rows - 1) * overlap) / rows), rule.multiple)
        tile_w = fit_tile(max_pixels // tile_h, rule)
        if tile_h < floor or tile_w < floor or tile_h * tile_w > max_pixels:
            continue
        tile_h, tile_w, fitted = _layout(height, width, (tile_h, tile_w), overlap, rule)
        cost = sum(b - a for a, b in _bounds(height, tile_h, fitted, align)) * sum(
            b - a for a, b in _bounds(width, tile_w, fitted, align)
        )
        if cost < best_cost:
            best, best_cost = (tile_h, tile_w), cost
    return best


_CPU_OOM_MARKERS = ("not enough memory", "defaultcpuallocator", "out of memory", "can't allocate memory")


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA out-of-memory errors and CPU allocation failures."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in _CPU_OOM_MARKERS)


def halve_tile(tile: int, rule: SizeRule, min_tile: int) -> int | None:
    """Half of ``tile`` fitted to the rule, or None when that would go below ``min_tile``."""
    half = fit_tile(tile // 2, rule)
    if half >= tile or half < max(min_tile, rule.multiple):
        return None
    return half
