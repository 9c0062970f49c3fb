"""The paper's MAE feature distances as full-reference metrics: ``mae-local`` and ``mae-global``.

Both compare the frozen MAE ViT-B/16 encoder's features (zoo entry ``mae-vit-base``) of the restored
and the reference image at blocks 1..6, with every patch token kept in grid order (no sampling: the
numbers are deterministic), on the centred crop whose sides are multiples of the patch size. They are
the unweighted distances of the losses: ``mae-local`` = Σ_blocks mean |Δφ|, ``mae-global`` = the
per-image 2-Wasserstein distance between sorted channel values, summed over tokens and blocks. When
the encoder weights are not available the metrics refuse with one line saying how to fetch them.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..errors import DeblurkitError
from . import OPTION_CROP_BORDER, Metric, MetricUnavailableError, register

__all__ = ["ENCODER", "mae_distances"]

ENCODER = "mae-vit-base"


@lru_cache(maxsize=2)
def _encoder(device: str):
    from ..losses.encoders import load_encoder

    try:
        return load_encoder(ENCODER, device=device)
    except DeblurkitError as err:
        raise MetricUnavailableError(f"the MAE metrics need the {ENCODER} encoder: {err}") from None


def _centre_crop(x: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    height, width = x.shape[-2:]
    keep_h, keep_w = height - height % patch[0], width - width % patch[1]
    top, left = (height - keep_h) // 2, (width - keep_w) // 2
    return x[..., top : top + keep_h, left : left + keep_w]


def mae_distances(x: torch.Tensor, y: torch.Tensor, data_range: float, kind: str) -> torch.Tensor:
    """Per-image ``local`` or ``global`` MAE feature distance between B×C×H×W batches."""
    from ..losses.mae import global_distance, local_distance

    encoder = _encoder(str(x.device))
    a = _centre_crop(x.to(torch.float32) / data_range, encoder.patch_size)
    b = _centre_crop(y.to(torch.float32) / data_range, encoder.patch_size)
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    ids = torch.arange(encoder.num_patches(*a.shape[-2:]), device=a.device).expand(a.shape[0], -1)
    values = []
    with torch.no_grad():
        features_a, features_b = encoder(a, ids=ids), encoder(b, ids=ids)
        for index in range(a.shape[0]):
            fa, fb = [f[index : index + 1] for f in features_a], [f[index : index + 1] for f in features_b]
            value = (
                local_distance(fa, fb) if kind == "local" else global_distance(fa, fb, variant="per_image")
            )
            values.append(value)
    return torch.stack(values).to(torch.float64)


def _make(kind: str, description: str) -> Metric:
    def compute(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
        return mae_distances(x, y, data_range, kind)

    def check() -> None:
        _encoder("cpu")

    return Metric(
        name=f"mae-{kind}",
        compute=compute,
        convention=(
            f"{description} between features of the frozen {ENCODER} encoder (MAE ViT-B/16) at blocks 1..6 "
            "(no final norm, CLS included), every patch token kept in grid order, RGB in [0, 1] with "
            "ImageNet normalisation, the centred crop whose sides are multiples of 16, grayscale repeated "
            "to RGB, unweighted (no λ), float32; lower is better"
        ),
        higher_is_better=False,
        options=frozenset({OPTION_CROP_BORDER}),
        min_size=16,
        check=check,
    )


register(_make("local", "Σ over blocks of the mean absolute difference"))
register(
    _make("global", "Σ over blocks and tokens of the per-image 2-Wasserstein distance of sorted channels")
)
