"""An independent transcription of the official MAE perceptual-loss computation, for parity and timing.

It follows erfect2020/TransformerPerceptualLoss step by step — ``ReconstructPerceptualLoss`` with the
``MaskedAutoencoderViT.forward_encoder`` of ``models/dual_model_mae.py``, ``selfPerceptualLoss`` (local)
and ``projectedDistributionLoss`` (global) — but shares no code with deblurkit or timm's blocks:

* the blocks are written out as the timm 0.3.2 ``Block`` the MAE code ran on (explicit softmax
  attention, exact GELU, LayerNorm eps 1e-6), loading timm's parameter names;
* the position embedding is resized once, at construction, as MAE's ``interpolate_pos_embed``;
* both images are embedded, the same kept tokens gathered from each, the CLS token prepended, and
  each sequence runs through the first six blocks *without* ``torch.no_grad`` (as the official code:
  the target branch records no graph only because nothing in it requires grad);
* the global loss loops over token positions in Python, as ``projectedDistributionLoss`` does.

Used by ``tests/test_official_parity.py`` (a full-width ViT-B/16 against deblurkit) and by
``benchmarks/bench_losses.py`` (the official training-step cost, side by side with deblurkit's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFICIAL_BLOCKS = 6
LOCAL_WEIGHT = 0.1
GLOBAL_WEIGHT = 1e-4


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def interpolate_pos_embed(pos_embed: torch.Tensor, new_side: int) -> torch.Tensor:
    """MAE's ``interpolate_pos_embed``: the square patch grid resized bicubically, the CLS row kept."""
    dim = pos_embed.shape[-1]
    old_side = int((pos_embed.shape[1] - 1) ** 0.5)
    if old_side == new_side:
        return pos_embed
    grid = pos_embed[:, 1:].reshape(-1, old_side, old_side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


class OfficialMAEEncoder(nn.Module):
    """The official dual-branch MAE encoder (first six blocks), built from a timm ViT state dict."""

    def __init__(
        self,
        state: Mapping[str, torch.Tensor],
        img_size: int,
        heads: int,
        blocks: int = OFFICIAL_BLOCKS,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        proj = state["patch_embed.proj.weight"]
        dim, channels, patch = proj.shape[0], proj.shape[1], proj.shape[-1]
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        side = img_size // patch
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side + 1, dim))
        hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        self.blocks = nn.ModuleList(_Block(dim, heads, hidden / dim) for _ in range(blocks))
        own = {
            "patch_embed.weight": state["patch_embed.proj.weight"],
            "patch_embed.bias": state["patch_embed.proj.bias"],
            "cls_token": state["cls_token"],
            "pos_embed": interpolate_pos_embed(state["pos_embed"], side),
        }
        kept = {f"blocks.{i}." for i in range(blocks)}
        own.update({k: v for k, v in state.items() if k.startswith(tuple(kept))})
        self.to(dtype).load_state_dict({k: v.to(dtype) for k, v in own.items()}, strict=True)
        self.requires_grad_(False)
        self.eval()

    def embed(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:, :]
        x = torch.gather(x, 1, ids.unsqueeze(-1).repeat(1, 1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def run_blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward(
        self, restored: torch.Tensor, target: torch.Tensor, ids: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Block outputs of both images at the kept tokens ``ids`` (B × K), CLS first."""
        return self.run_blocks(self.embed(restored, ids)), self.run_blocks(self.embed(target, ids))


def normalize(images: torch.Tensor) -> torch.Tensor:
    """torchvision's ``normalize`` with ImageNet statistics (a new tensor)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images - mean) / std


def random_ids(
    batch: int, num_patches: int, ratio: float, device: torch.device | None = None
) -> torch.Tensor:
    """The official ``random_masking`` draw: argsort of uniform noise, the first ``int(N·(1−r))``."""
    noise = torch.rand(batch, num_patches, device=device)
    return torch.argsort(noise, dim=1)[:, : int(num_patches * (1 - ratio))]


def local_loss(restored: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """``selfPerceptualLoss``: the sum over blocks of the mean absolute difference (unweighted)."""
    total = 0
    for r, t in zip(restored, target, strict=True):
        total = total + F.l1_loss(r, t, reduction="mean")
    return total


def global_loss(restored: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """``projectedDistributionLoss`` summed over blocks: per token position, the root of the mean
    squared difference of the sorted channel values over the batch (unweighted)."""
    total = 0
    for r, t in zip(restored, target, strict=True):
        for token in range(r.shape[1]):
            sorted_r = torch.sort(r[:, token, :], dim=1)[0]
            sorted_t = torch.sort(t[:, token, :], dim=1)[0]
            total = total + F.mse_loss(sorted_r, sorted_t, reduction="mean") ** 0.5
    return total


class OfficialLoss(nn.Module):
    """``ReconstructPerceptualLoss``: L1 + 0.1·local (``kind="local"``) or L1 + 1e-4·global."""

    def __init__(self, encoder: OfficialMAEEncoder, kind: str = "local", ratio: float = 0.5) -> None:
        super().__init__()
        if kind not in ("local", "global"):
            raise ValueError(f"kind must be local or global, got {kind!r}")
        self.encoder = encoder
        self.kind = kind
        self.ratio = ratio

    def forward(
        self, restored: torch.Tensor, target: torch.Tensor, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        l1 = F.l1_loss(restored, target, reduction="mean")
        restored, target = normalize(restored), normalize(target)
        if ids is None:
            patch = self.encoder.patch_embed.stride[0]
            count = (restored.shape[-2] // patch) * (restored.shape[-1] // patch)
            ids = random_ids(restored.shape[0], count, self.ratio, restored.device)
        feats_r, feats_t = self.encoder(restored, target, ids)
        if self.kind == "local":
            return l1 + LOCAL_WEIGHT * local_loss(feats_r, feats_t)
        return l1 + GLOBAL_WEIGHT * global_loss(feats_r, feats_t)
