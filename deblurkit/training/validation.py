"""Validation during training: PSNR, SSIM and (with an encoder) the MAE feature distance of a network
on the validation images, run the way inference runs (tiled) and under a forked RNG."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..archs import get_architecture
from ..zoo.restorer import Restorer
from .data import ValidationSet
from .preparation import Source

if TYPE_CHECKING:
    from ..losses.encoders import ViTEncoder

__all__ = ["image_scores", "mae_distance", "validate"]

_MAE_DISTANCE_SIDE = 512


def mae_distance(
    encoder: ViTEncoder, restored: torch.Tensor, sharp: torch.Tensor, device: torch.device
) -> float:
    """The local MAE loss's feature distance over a centred window (at most 512 px) of the images."""
    from ..losses import local_distance

    patch = encoder.patch_size[0]
    side = min(_MAE_DISTANCE_SIDE, *restored.shape[-2:]) // patch * patch
    if side < patch:
        return float("nan")
    top, left = (restored.shape[-2] - side) // 2, (restored.shape[-1] - side) // 2
    window = (..., slice(top, top + side), slice(left, left + side))
    blocks = tuple(range(1, min(6, encoder.depth) + 1))
    with torch.no_grad():
        a = encoder(restored[window].to(device), blocks=blocks)
        b = encoder(sharp[window].to(device), blocks=blocks)
    return float(local_distance(a, b))


def image_scores(
    restored: np.ndarray, sharp: np.ndarray, encoder: ViTEncoder | None, device: torch.device
) -> dict[str, float]:
    """PSNR and SSIM of one H×W×3 image against its target (and the MAE distance with an encoder)."""
    from ..metrics import get_metric

    x = torch.from_numpy(np.clip(restored, 0, 1)).permute(2, 0, 1)[None].double()
    y = torch.from_numpy(sharp).permute(2, 0, 1)[None].double()
    scores = {name: float(get_metric(name).compute(x, y, 1.0)[0]) for name in ("psnr", "ssim")}
    if encoder is not None:
        scores["mae_distance"] = mae_distance(encoder, x.float(), y.float(), device)
    return scores


def validate(
    network: nn.Module,
    source: Source,
    val_set: ValidationSet,
    *,
    device: torch.device,
    precision: str,
    tile: int,
    encoder: ViTEncoder | None = None,
    with_inputs: bool = True,
) -> tuple[dict[str, float], dict[str, float]]:
    """(mean scores of the restored images, mean scores of the blurry inputs, or {} without
    ``with_inputs``) over the validation set."""
    from ..inference.deblurrer import Deblurrer

    was_training = network.training
    network.eval()
    restorer = Restorer(network, get_architecture(source.architecture), source.config)
    devices = [device] if device.type == "cuda" else []
    totals: dict[str, float] = {}
    inputs: dict[str, float] = {}
    with torch.random.fork_rng(devices=devices):
        deblur = Deblurrer(restorer, tile=tile or "auto", overlap=32, precision=precision)
        for index in range(len(val_set)):
            _, blurry, sharp = val_set[index]
            _accumulate(totals, image_scores(deblur(blurry).pixels, sharp, encoder, device), len(val_set))
            if with_inputs:
                _accumulate(inputs, image_scores(blurry, sharp, encoder, device), len(val_set))
    network.train(was_training)
    return totals, inputs


def _accumulate(totals: dict[str, float], scores: dict[str, float], count: int) -> None:
    for key, value in scores.items():
        totals[key] = totals.get(key, 0.0) + value / count
