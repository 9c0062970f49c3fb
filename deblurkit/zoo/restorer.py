"""The inference wrapper every loaded model is: any input size in, the same size out."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..archs import Architecture, SizeRule

__all__ = ["Restorer"]


class Restorer(nn.Module):
    """A deblurring network plus its architecture's official inference procedure.

    ``forward`` takes a B×3×H×W float tensor in [0, 1] of any H and W, pads it the way the
    architecture's official test code does (``size_rule``), runs the network and crops back.
    The bare network is ``self.network`` (official state-dict names), which is what training uses
    and what checkpoints hold.

    ``work_pixels`` (0: off) caps the resolution the network runs at: an image of more pixels is
    downscaled (antialiased bilinear) by ``sqrt(work_pixels / pixels)``, but never below
    ``min_work_scale``; the network's result is upscaled (bicubic) and the input's own detail finer
    than the working resolution is added back: ``up(net(down(x))) + (x − up(down(x)))``. Blur is
    mostly coarser than that detail, so a fast working resolution loses little where the network
    does the work. Deblurring engines that tile call :meth:`work_scale_for` on the whole image,
    :meth:`rescaled` once, and :meth:`native` on each tile.
    """

    def __init__(
        self,
        network: nn.Module,
        architecture: Architecture,
        config: Mapping[str, Any],
        name: str = "",
        work_pixels: int = 0,
        min_work_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if work_pixels < 0 or not 0 < min_work_scale <= 1:
            raise ValueError(
                f"bad working resolution: work_pixels {work_pixels}, min_work_scale {min_work_scale}"
            )
        self.network = network
        self.architecture = architecture
        self.config = dict(config)
        self.name = name or architecture.name
        self.work_pixels = int(work_pixels)
        self.min_work_scale = float(min_work_scale)
        self.size_rule: SizeRule = architecture.size_rule_for(config)

    @property
    def precisions(self) -> tuple[str, ...]:
        """Autocast precisions this network is safe in."""
        return self.architecture.precisions

    def work_scale_for(self, height: int, width: int) -> float:
        """The scale a whole image of this size is deblurred at (1: its own resolution)."""
        if not self.work_pixels or height * width <= self.work_pixels:
            return 1.0
        return max(self.min_work_scale, math.sqrt(self.work_pixels / (height * width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a B×C×H×W tensor, got shape {tuple(x.shape)}")
        scale = self.work_scale_for(*x.shape[-2:])
        return self.native(x) if scale == 1 else self.rescaled(x, scale, self.native)

    @staticmethod
    def rescaled(x: torch.Tensor, scale: float, run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``run`` on ``x`` downscaled by ``scale``, upscaled back, plus ``x``'s finer detail."""
        height, width = x.shape[-2:]
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        small = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

        def up(image: torch.Tensor) -> torch.Tensor:
            return F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False)

        return up(run(small)) + (x - up(small))

    def native(self, x: torch.Tensor) -> torch.Tensor:
        """The official procedure at the input's own resolution: pad, run, crop."""
        height, width = x.shape[-2:]
        padded, (top, left) = self.size_rule.pad(x)
        out = self.network(padded)
        return out[..., top : top + height, left : left + width]

    def extra_repr(self) -> str:
        work = (
            f", work_pixels={self.work_pixels}, min_work_scale={self.min_work_scale:g}"
            if self.work_pixels
            else ""
        )
        return f"name={self.name!r}, size_rule={self.size_rule}{work}"
