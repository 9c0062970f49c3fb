"""The MAE perceptual losses of Liang et al., *Image Deblurring by Exploring In-depth Properties of
Transformer* (TNNLS 2024), as the official code (erfect2020/TransformerPerceptualLoss) computes them.

φ_l is the output of block l of a frozen encoder (:class:`~deblurkit.losses.encoders.ViTEncoder`), for the
same kept tokens of the restored image Î and the target I, the CLS token first. Half-precision
features are cast to fp32 before any arithmetic, so the losses accumulate in fp32 under autocast.

* Local (``mae_local``): ``Σ_l mean_{b,t,c} |φ_l(Î) − φ_l(I)|^p``; p = 1 is the official code.
* Global (``mae_global``, official): for every block l and token position t, the 1-D p-Wasserstein
  distance between the sorted channel values of the restored and the target token, pooled over the
  batch before the root: ``d_{l,t} = (mean_{b,k} |sort(φ_l(Î)_{b,t,:})_k − sort(φ_l(I)_{b,t,:})_k|^p)^{1/p}``,
  summed over t and l. Batch pooling at a token position mixes image locations across samples
  (the kept tokens are in a per-sample random order), as in the official code.
* ``mae_global_per_image``: the same distance, root per sample, then the mean over the batch.
* ``mae_global_channels``: per channel, the distance between the distributions of that channel's
  values over the tokens (sorted over tokens), pooled over the batch, summed over channels and blocks.
* ``mae_global_sliced``: the token vectors projected on ``projections`` random unit directions (fresh
  each call); per direction, the distance between the distributions of the projections over the
  tokens, pooled over the batch, summed over directions and blocks (the projected-distribution loss).

The weights (λ) are applied by the caller; the defaults are 0.1 (local) and 1e-4 (global).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..errors import DeblurkitError
from .encoders import DEFAULT_BLOCKS, ViTEncoder, keep_count
from .pixel import at_least_fp32

__all__ = [
    "GLOBAL_VARIANTS",
    "MAEGlobalLoss",
    "MAELocalLoss",
    "MAEPerceptualTerm",
    "global_distance",
    "local_distance",
]

GLOBAL_VARIANTS = ("tokens", "per_image", "channels", "sliced")


def _check_p(p: int | float) -> int:
    if p not in (1, 2):
        raise DeblurkitError(f"p must be 1 or 2, got {p}")
    return int(p)


def _power(diff: torch.Tensor, p: int) -> torch.Tensor:
    return diff.abs() if p == 1 else diff * diff


def _root(mean: torch.Tensor, p: int) -> torch.Tensor:
    """The p-th root; for p = 2 a square root whose gradient at 0 is 0 instead of NaN (equal inputs)."""
    if p == 1:
        return mean
    positive = mean > 0
    safe = torch.where(positive, mean, torch.ones_like(mean)).sqrt()
    return torch.where(positive, safe, torch.zeros_like(mean))


def local_distance(
    restored: Sequence[torch.Tensor], target: Sequence[torch.Tensor], p: int = 1
) -> torch.Tensor:
    """``Σ_l mean |φ_l(Î) − φ_l(I)|^p`` over lists of B × T × C block features (unweighted)."""
    p = _check_p(p)
    total = restored[0].new_zeros((), dtype=torch.promote_types(restored[0].dtype, torch.float32))
    for r, t in zip(restored, target, strict=True):
        total = total + _power(at_least_fp32(r) - at_least_fp32(t), p).mean()
    return total


def global_distance(
    restored: Sequence[torch.Tensor],
    target: Sequence[torch.Tensor],
    p: int = 2,
    variant: str = "tokens",
    projections: int = 256,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The (unweighted) distribution loss summed over blocks; see the module docstring for ``variant``."""
    p = _check_p(p)
    if variant not in GLOBAL_VARIANTS:
        raise DeblurkitError(f"unknown global variant {variant!r}; choose from {', '.join(GLOBAL_VARIANTS)}")
    total = restored[0].new_zeros((), dtype=torch.promote_types(restored[0].dtype, torch.float32))
    for r, t in zip(restored, target, strict=True):
        r, t = at_least_fp32(r), at_least_fp32(t)
        if variant == "sliced":
            directions = torch.randn(
                r.shape[-1], projections, device=r.device, dtype=r.dtype, generator=generator
            )
            directions = directions / directions.norm(dim=0, keepdim=True)
            r, t = r @ directions, t @ directions
        # the axis holding the 1-D distribution: channels for the token variants, tokens otherwise
        axis = -1 if variant in ("tokens", "per_image") else 1
        diff = _power(r.sort(dim=axis).values - t.sort(dim=axis).values, p)
        if variant == "tokens":
            total = total + _root(diff.mean(dim=(0, 2)), p).sum()
        elif variant == "per_image":
            total = total + _root(diff.mean(dim=2), p).sum(dim=1).mean()
        else:
            total = total + _root(diff.mean(dim=(0, 1)), p).sum()
    return total


class MAEPerceptualTerm(nn.Module):
    """Base of the MAE losses: features of chosen blocks at the same sampled tokens, compared with
    exponent ``p`` (1 or 2).

    ``forward(restored, target, ids=None)`` returns the unweighted loss. A caller that already has the
    features (a combined loss sharing them between terms) calls :meth:`from_features`.
    """

    def __init__(
        self,
        encoder: ViTEncoder,
        blocks: int | Iterable[int] = DEFAULT_BLOCKS,
        ratio: float = 0.5,
        p: int = 1,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.blocks = (blocks,) if isinstance(blocks, int) else tuple(int(b) for b in blocks)
        if not self.blocks:
            raise DeblurkitError("no encoder blocks chosen")
        bad = [b for b in self.blocks if not 1 <= b <= encoder.depth]
        if bad:
            raise DeblurkitError(f"encoder blocks must be in 1..{encoder.depth} (1-based), got {bad[0]}")
        keep_count(1, ratio)  # validates the ratio
        self.ratio = float(ratio)
        self.p = _check_p(p)

    def forward(
        self, restored: torch.Tensor, target: torch.Tensor, *, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        feats_r, feats_t, _ = self.encoder.features_pair(
            restored, target, blocks=self.blocks, ratio=self.ratio, ids=ids
        )
        return self.from_features(feats_r, feats_t)

    def from_features(self, restored: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
        """The loss from the features of ``self.blocks`` (in that order)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"blocks={self.blocks}, ratio={self.ratio}, p={self.p}"


class MAELocalLoss(MAEPerceptualTerm):
    """Local MAE perceptual loss ``Σ_l mean |φ_l(Î) − φ_l(I)|^p`` (p = 1: official)."""

    def from_features(self, restored: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
        return local_distance(restored, target, self.p)


class MAEGlobalLoss(MAEPerceptualTerm):
    """Global distribution MAE perceptual loss (``variant="tokens"``, p = 2: official)."""

    def __init__(
        self,
        encoder: ViTEncoder,
        blocks: int | Iterable[int] = DEFAULT_BLOCKS,
        ratio: float = 0.5,
        p: int = 2,
        variant: str = "tokens",
        projections: int = 256,
    ) -> None:
        super().__init__(encoder, blocks, ratio, p)
        if variant not in GLOBAL_VARIANTS:
            raise DeblurkitError(
                f"unknown global variant {variant!r}; choose from {', '.join(GLOBAL_VARIANTS)}"
            )
        if projections < 1:
            raise DeblurkitError(f"projections must be at least 1, got {projections}")
        self.variant = variant
        self.projections = int(projections)

    def from_features(self, restored: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
        return global_distance(restored, target, self.p, self.variant, self.projections)

    def extra_repr(self) -> str:
        extra = f", projections={self.projections}" if self.variant == "sliced" else ""
        return f"{super().extra_repr()}, variant={self.variant!r}{extra}"
