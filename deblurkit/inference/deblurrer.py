"""Deblur one image array: :class:`Deblurrer` (a model plus inference settings) and :func:`deblur_image`.

The image stays in host memory; only tiles (see :mod:`deblurkit.inference.tiling`) go to the device,
and their weighted outputs are added into a float32 host buffer. ``tile="auto"`` measures the model's
memory per pixel once (a probe forward) and picks the largest tiling that fits the free device memory
(on CPU, also at most :data:`~deblurkit.inference.memory.CPU_TILE_MEMORY`, beyond which bigger tiles are
not faster), the whole image when it fits. On CUDA, equal-sized tiles go through the network in batches,
as many per forward pass as the memory budget holds at the measured memory per pixel (with explicit
tiles, the first tile's forward is measured); on CPU one tile per pass is faster. An out-of-memory
error splits the batch, or with one tile per pass halves the tile and redoes the image; a non-finite
output in bf16/fp16 is redone in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DeblurkitError, UsageError
from ..imaging.reading import from_float, to_float
from ..zoo.restorer import Restorer
from .memory import peak_memory, tile_memory_budget
from .tiling import Tile, TilePlan, auto_tile, fit_tile, halve_tile, is_out_of_memory, plan_tiles

__all__ = ["DEFAULT_OVERLAP", "PRECISIONS", "Deblurrer", "RestoredImage", "deblur_image", "resolve_precision"]

DEFAULT_OVERLAP = 64
"""Default overlap between neighbouring tiles, in pixels."""
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_PROBE_SIDE = 256
_FALLBACK_BYTES_PER_PIXEL = 4096.0
_MIN_BYTES_PER_PIXEL = 24.0
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class _NonFiniteOutputError(Exception):
    """A tile's output held NaN or Inf."""


def resolve_precision(requested: str, model: Restorer, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for a request: auto is bf16 on CUDA where safe, else fp32."""
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r} (use {', '.join(PRECISIONS)})")
    if requested == "auto":
        if device.type == "cuda" and "bf16" in model.precisions and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if requested not in model.precisions:
        safe = ", ".join(model.precisions)
        raise UsageError(f"{model.name} is not verified safe in {requested} (safe: {safe})")
    if requested == "fp16" and device.type == "cpu":
        raise UsageError("fp16 is not supported on CPU: use fp32 or bf16")
    return requested


@dataclass
class RestoredImage:
    """An array deblurred: pixels in the input's shape and sample type, and how it was done."""

    pixels: np.ndarray
    precision: str
    tile: tuple[int, int] | None
    notes: list[str] = field(default_factory=list)


class Deblurrer:
    """A loaded model plus inference settings; call it on H×W×C host arrays (C = 1 or 3).

    ``tile``: ``"auto"``, a side in pixels, or 0 for the whole image. ``overlap``: pixels shared by
    neighbouring tiles. ``precision``: see :func:`resolve_precision`. ``compile``: ``torch.compile``
    the network (not on CPU, where each new image size would recompile it: a note says so instead).
    ``memory_budget``: bytes a tile may use (default: :func:`tile_memory_budget`). ``batch_tiles``:
    send equal-sized tiles through the network several at a time, as many as ``memory_budget`` holds
    (default: on CUDA only; on CPU one tile per pass is faster, its activations staying in cache).
    Grayscale is replicated to RGB for the network and the mean of the three outputs taken. On CUDA,
    architectures registered as ``channels_last`` (NAFNet) are switched to that memory format. An
    image side shorter than the smallest meaningful tile is mirrored out to it (centred) when the
    architecture would pad with zeros, which would otherwise be most of what the network sees and
    darken the image.
    """

    def __init__(
        self,
        model: Restorer,
        *,
        tile: int | str = "auto",
        overlap: int = DEFAULT_OVERLAP,
        precision: str = "auto",
        compile: bool = False,
        memory_budget: int | None = None,
        batch_tiles: bool | None = None,
    ) -> None:
        if tile != "auto" and (not isinstance(tile, int) or tile < 0):
            raise UsageError(f"tile must be 'auto', 0 or a positive side in pixels, got {tile!r}")
        if overlap < 0:
            raise UsageError(f"the tile overlap must be ≥ 0, got {overlap}")
        self.model = model
        self.device = next(model.parameters()).device
        self.precision = resolve_precision(precision, model, self.device)
        self.overlap = overlap
        self.memory_budget = memory_budget
        self.batch_tiles = self.device.type == "cuda" if batch_tiles is None else batch_tiles
        self.notes: list[str] = []
        self._rule = model.size_rule
        self._min_tile = fit_tile(max(model.architecture.min_tile, self._rule.multiple), self._rule)
        self._side: int | None = None if tile in ("auto", 0) else self._explicit_side(int(tile))
        self._auto = tile == "auto"
        self._max_pixels: int | None = None
        self._max_batch: int | None = None
        self._bytes_per_pixel: float | None = None
        if self.device.type == "cuda" and model.architecture.channels_last:
            model.to(memory_format=torch.channels_last)
        if compile and self.device.type == "cpu":
            self.notes.append(
                "--compile is ignored on CPU: it would recompile the network for every new image size"
            )
            compile = False
        native = model.native  # the working resolution is handled once per image, in __call__
        self._forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(native) if compile else native

    def _explicit_side(self, side: int) -> int:
        if side < self._min_tile:
            self.notes.append(
                f"tile raised from {side} to {self._min_tile}, the smallest that keeps "
                f"{self.model.architecture.name}'s inference procedure meaningful"
            )
            return self._min_tile
        return fit_tile(side, self._rule)

    def prepare(self) -> None:
        """Measure the model's memory per pixel now (auto tiling does it on first use otherwise)."""
        if self._auto and self._bytes_per_pixel is None:
            self._bytes_per_pixel = self._probe()

    def _probe(self) -> float:
        side = max(_PROBE_SIDE, self._rule.multiple)
        small = torch.rand(1, 3, *self._rule.padded_size(1, 1), device=self.device)
        probe = torch.rand(1, 3, side, side, device=self.device)
        self._infer(small, self.precision)
        peak = peak_memory(lambda: self._infer(probe, self.precision), self.device)
        return self._per_pixel(peak, side**2)

    @staticmethod
    def _per_pixel(peak: float | None, pixels: int) -> float:
        """Bytes per pixel from a forward's measured peak (a fallback where it cannot be measured)."""
        if peak is None:
            return _FALLBACK_BYTES_PER_PIXEL
        # Memory already resident (freed by earlier work) can hide the peak; a forward pass holds at
        # least its fp32 RGB input and output.
        return max(peak / pixels, _MIN_BYTES_PER_PIXEL)

    def _tile_for(self, height: int, width: int) -> int | tuple[int, int]:
        if self._side is not None:
            return self._side
        if not self._auto:
            return 0
        self.prepare()
        return auto_tile(height, width, self._pass_pixels(), self.overlap, self._rule, self._min_tile)

    def _pass_pixels(self) -> int:
        """The most pixels one forward pass may take: the memory budget over the measured bytes per
        pixel, at most what an earlier out-of-memory error left."""
        assert self._bytes_per_pixel is not None
        budget = self.memory_budget or tile_memory_budget(self.device)
        max_pixels = int(budget / self._bytes_per_pixel)
        return max_pixels if self._max_pixels is None else min(max_pixels, self._max_pixels)

    def _back_off(self, tile: tuple[int, int]) -> bool:
        """Halve the tile after an out-of-memory error; False when it cannot get smaller."""
        half = halve_tile(max(tile), self._rule, self._min_tile)
        if half is None:
            return False
        if self._auto:
            self._max_pixels = tile[0] * tile[1] // 4
        else:
            self._side = half
        return True

    def _infer(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        autocast = (
            torch.autocast(self.device.type, dtype=_DTYPES[precision])
            if precision in _DTYPES
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self._forward(x).float()

    def _tile_input(self, pixels: np.ndarray, part: Tile) -> torch.Tensor:
        """One tile of the host image as a 1×3×h×w float tensor on the device."""
        host = torch.from_numpy(to_float(pixels[part.slices])).permute(2, 0, 1)[None]
        return host.to(self.device, non_blocking=True).expand(-1, 3, -1, -1)

    def _tiles_per_pass(self, tile: Tile) -> int:
        """How many tiles of ``tile``'s size one forward pass takes: as many as the memory budget holds
        at the measured memory per pixel, at most the cap set by an earlier out-of-memory error."""
        if not self.batch_tiles or self._bytes_per_pixel is None:
            return 1
        count = max(1, self._pass_pixels() // (tile.height * tile.width))
        return count if self._max_batch is None else min(count, self._max_batch)

    def _passes(self, plan: TilePlan) -> Iterator[list[Tile]]:
        """The plan's tiles in forward passes: runs of equal-sized tiles, as many per pass as fit."""
        group: list[Tile] = []
        for part in plan:
            if group and (
                (part.height, part.width) != (group[0].height, group[0].width)
                or len(group) >= self._tiles_per_pass(group[0])
            ):
                yield group
                group = []
            group.append(part)
        if group:
            yield group

    def _infer_tiles(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        """The network on a batch of tiles; out of memory with more than one tile, the batch is split in
        halves (and later passes capped to that size) instead of shrinking the tiles."""
        if self.batch_tiles and self._bytes_per_pixel is None:
            # The first pass (one tile), measured, sizes all later passes.
            outputs: list[torch.Tensor] = []
            peak = peak_memory(lambda: outputs.append(self._infer(x, precision)), self.device)
            self._bytes_per_pixel = self._per_pixel(peak, x.shape[-2] * x.shape[-1])
            return outputs[0]
        try:
            return self._infer(x, precision)
        except Exception as err:
            if len(x) == 1 or not is_out_of_memory(err):
                raise
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        half = len(x) // 2
        self._max_batch = half
        return torch.cat([self._infer_tiles(x[:half], precision), self._infer_tiles(x[half:], precision)])

    def _run(self, pixels: np.ndarray, plan: TilePlan, precision: str) -> np.ndarray:
        out = np.zeros(pixels.shape, np.float32)
        for group in self._passes(plan):
            x = torch.cat([self._tile_input(pixels, part) for part in group])
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            y = self._infer_tiles(x, precision)
            if precision != "fp32" and not torch.isfinite(y).all():
                raise _NonFiniteOutputError
            if pixels.shape[2] == 1:
                y = y.mean(1, keepdim=True)
            for part, tile_out in zip(group, y, strict=True):
                weights = torch.from_numpy(part.weights()).to(self.device)
                out[part.slices] += (tile_out * weights).permute(1, 2, 0).cpu().numpy()
        return out

    def _small_image_pads(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """(top, bottom), (left, right) mirroring that brings sides below the smallest tile up to it, for
        rules that pad with zeros; None for images the official procedure handles as they are."""
        if self._rule.pad_mode != "constant" or min(height, width) >= self._min_tile:
            return None

        def centred(side: int) -> tuple[int, int]:
            extra = max(self._min_tile - side, 0)
            return extra // 2, extra - extra // 2

        return centred(height), centred(width)

    def __call__(self, pixels: np.ndarray) -> RestoredImage:
        """Deblur an H×W×C (or H×W) array of uint8, uint16 or float32 samples in [0, 1]."""
        if pixels.ndim == 2:
            result = self(pixels[:, :, None])
            result.pixels = result.pixels[:, :, 0]
            return result
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or min(pixels.shape[:2]) < 1:
            raise DeblurkitError(f"expected an H×W×C image with C = 1 or 3, got shape {pixels.shape}")
        if pixels.dtype.kind == "f" and not (np.isfinite(pixels.min()) and np.isfinite(pixels.max())):
            raise DeblurkitError("the image holds NaN or infinite samples")
        height, width = pixels.shape[:2]
        scale = self.model.work_scale_for(height, width)
        if scale < 1:
            return self._deblur_rescaled(pixels, scale)
        pads = self._small_image_pads(height, width)
        if pads is None:
            return self._deblur(pixels)
        (top, _), (left, _) = pads
        result = self._deblur(np.pad(pixels, (*pads, (0, 0)), mode="reflect"))
        result.pixels = np.ascontiguousarray(result.pixels[top : top + height, left : left + width])
        return result

    def _deblur_rescaled(self, pixels: np.ndarray, scale: float) -> RestoredImage:
        """The model's working resolution: the whole image downscaled once, tiled and run there, and
        the result brought back with the input's finer detail (:meth:`Restorer.rescaled`)."""
        done: list[RestoredImage] = []

        def run(small: torch.Tensor) -> torch.Tensor:
            done.append(self._deblur(small[0].permute(1, 2, 0).numpy()))
            return torch.from_numpy(done[-1].pixels).permute(2, 0, 1)[None]

        x = torch.from_numpy(to_float(pixels)).permute(2, 0, 1)[None]
        out = self.model.rescaled(x, scale, run)[0].permute(1, 2, 0).numpy()
        result = done[0]
        result.pixels = from_float(out, pixels.dtype)
        return result

    def _deblur(self, pixels: np.ndarray) -> RestoredImage:
        """Tile, run and merge an H×W×C image, retrying in fp32 or with smaller tiles as needed."""
        precision, notes = self.precision, []
        while True:
            tile = self._tile_for(*pixels.shape[:2])
            plan = plan_tiles(*pixels.shape[:2], tile, self.overlap, self._rule)
            try:
                values = self._run(pixels, plan, precision)
            except _NonFiniteOutputError:
                notes.append(f"non-finite values in the {precision} output: redone in fp32")
                precision = "fp32"
                continue
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                values = None
            if values is not None:
                used = None if len(plan) == 1 else plan.tile_size
                return RestoredImage(from_float(values, pixels.dtype), precision, used, notes)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            size = "×".join(map(str, plan.tile_size))
            if not self._back_off(plan.tile_size):
                raise DeblurkitError(f"out of memory even with {size} tiles")
            notes.append(f"out of memory with {size} tiles: retried with smaller tiles")


def deblur_image(model: Restorer, pixels: np.ndarray, **options) -> np.ndarray:
    """Deblur one H×W×C (or H×W) array; the result has its shape and sample type.

    ``options`` are :class:`Deblurrer`'s (``tile``, ``overlap``, ``precision``, ...). To deblur many
    arrays, make one :class:`Deblurrer` and call it (the memory probe then runs once).
    """
    return Deblurrer(model, **options)(pixels).pixels
