"""Validation during training: PSNR, SSIM and (with an encoder) the MAE feature distance of a network
on the validation images, run the way inference runs (tiled) and under a forked RNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..archs import get_architecture
from ..evaluation.html_report import write_html_report
from ..evaluation.report_pictures import ReportImage
from ..imaging.atomic import write_atomic
from ..metrics.sharpness import sharpness
from ..zoo.restorer import Restorer
from .data import ValidationSet
from .preparation import Source

if TYPE_CHECKING:
    from ..losses.encoders import ViTEncoder

__all__ = ["ValidationPictures", "image_scores", "mae_distance", "validate"]

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


class ValidationPictures:
    """The last validation's images, kept for the run's report page (``train/report.html``): the first
    ``limit`` inputs, restorations and targets as 8-bit PNGs in ``folder``, with their scores."""

    def __init__(self, folder: Path, label: str, limit: int = 24) -> None:
        self.folder, self.label, self.limit = folder, label, limit
        self.images: list[ReportImage] = []

    def add(
        self, name: str, blurry: np.ndarray, restored: np.ndarray, sharp: np.ndarray, scores: dict
    ) -> None:
        """Keep one validation image (``scores``: row → metric → value)."""
        if len(self.images) >= self.limit:
            return
        target = self.folder / f"{len(self.images) + 1:03d}"
        target.mkdir(parents=True, exist_ok=True)
        paths = {}
        for role, pixels in (("input", blurry), ("output", restored), ("sharp", sharp)):
            paths[role] = target / f"{role}.png"
            eight = np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
            write_atomic(paths[role], lambda handle, image=eight: Image.fromarray(image).save(handle, "PNG"))
        outputs = {self.label: paths["output"]}
        self.images.append(ReportImage(name, paths["input"], outputs, paths["sharp"], scores))

    def write(self, page: Path, means: dict[str, dict[str, float]], notes: Sequence[str] = ()) -> Path:
        """Write the report page for the kept images."""
        columns = ("psnr", "ssim", "sharpness")
        return write_html_report(
            page, title=f"deblurkit train: {self.label}", images=self.images, means=means, columns=columns,
            notes=notes,
        )  # fmt: skip


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
    pictures: ValidationPictures | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(mean scores of the restored images, mean scores of the blurry inputs, or {} without
    ``with_inputs``) over the validation set; ``pictures`` keeps the images for the report page."""
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
            name, blurry, sharp = val_set[index]
            restored = deblur(blurry).pixels
            scores = image_scores(restored, sharp, encoder, device)
            _accumulate(totals, scores, len(val_set))
            if with_inputs or pictures is not None:
                input_scores = image_scores(blurry, sharp, encoder, device)
            if with_inputs:
                _accumulate(inputs, input_scores, len(val_set))
            if pictures is not None:
                shown = {"input": {**input_scores, "sharpness": sharpness(blurry)}}
                shown[pictures.label] = {**scores, "sharpness": sharpness(restored)}
                pictures.add(name, blurry, restored, sharp, shown)
    network.train(was_training)
    return totals, inputs


def _accumulate(totals: dict[str, float], scores: dict[str, float], count: int) -> None:
    for key, value in scores.items():
        totals[key] = totals.get(key, 0.0) + value / count
