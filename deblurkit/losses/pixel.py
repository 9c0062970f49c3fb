"""Pixel losses on the raw images (no normalisation), computed in fp32 (fp64 inputs stay fp64) whatever
the autocast dtype."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DeblurkitError

__all__ = ["CharbonnierLoss", "L1Loss", "MSELoss", "PSNRLoss", "at_least_fp32", "check_pair"]


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 when it is half precision (autocast), unchanged in fp32 or fp64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def check_pair(restored: torch.Tensor, target: torch.Tensor) -> None:
    """One-line error when a restored and a target batch cannot be compared."""
    if restored.shape != target.shape:
        raise DeblurkitError(
            f"restored and target batches differ in shape: {tuple(restored.shape)} vs {tuple(target.shape)}"
        )


class L1Loss(nn.Module):
    """Mean absolute error."""

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(restored, target)
        return F.l1_loss(at_least_fp32(restored), at_least_fp32(target))


class MSELoss(nn.Module):
    """Mean squared error."""

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(restored, target)
        return F.mse_loss(at_least_fp32(restored), at_least_fp32(target))


class CharbonnierLoss(nn.Module):
    """Charbonnier loss ``mean(sqrt((x − y)² + ε²))`` (Uformer/MPRNet form, ε = 1e-3)."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        if eps <= 0:
            raise DeblurkitError(f"charbonnier eps must be positive, got {eps}")
        self.eps = float(eps)

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(restored, target)
        diff = at_least_fp32(restored) - at_least_fp32(target)
        return torch.sqrt(diff * diff + self.eps * self.eps).mean()

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class PSNRLoss(nn.Module):
    """NAFNet's PSNR loss: ``10/ln 10 · mean_b log(mse_b + 1e-8)`` (i.e. minus the mean per-image PSNR
    for images in [0, 1], up to the 1e-8). ``to_y``: on the BT.601 luma (16–235 scaled to [0, 1]), as
    NAFNet's ``toY`` option."""

    _Y = (65.481, 128.553, 24.966)

    def __init__(self, to_y: bool = False) -> None:
        super().__init__()
        self.to_y = bool(to_y)
        self.scale = 10.0 / math.log(10.0)
        self.register_buffer("coef", torch.tensor(self._Y).view(1, 3, 1, 1), persistent=False)

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(restored, target)
        if restored.ndim != 4:
            raise DeblurkitError(f"psnr loss needs B×C×H×W batches, got {tuple(restored.shape)}")
        pred, gt = at_least_fp32(restored), at_least_fp32(target)
        if self.to_y:
            coef = self.coef.to(pred.device)
            pred = ((pred * coef).sum(dim=1, keepdim=True) + 16.0) / 255.0
            gt = ((gt * coef).sum(dim=1, keepdim=True) + 16.0) / 255.0
        mse = ((pred - gt) ** 2).mean(dim=(1, 2, 3))
        return self.scale * torch.log(mse + 1e-8).mean()

    def extra_repr(self) -> str:
        return f"to_y={self.to_y}"
