"""Restormer (Zamir et al., CVPR 2022), numerically equal to the official ``restormer_arch.py``.

Module and parameter names follow the official code so its checkpoints load with ``strict=True``.
Differences are in implementation only: the layer norms work on a channels-last view instead of an
einops rearrange, and the statistics that can overflow in half precision (the bias-free norm's
variance, the query/key L2 norms of the channel attention) are computed in fp32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import Architecture, ConfigField, SizeRule, register
from .checks import check_heads, check_hidden

__all__ = ["Restormer"]

_EPS = 1e-5


class _NormParams(nn.Module):
    """Holds a layer norm's affine parameters under the official names (``weight``, ``bias``)."""

    def __init__(self, channels: int, with_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None


class LayerNorm(nn.Module):
    """Per-pixel layer norm over the channels of a B×C×H×W tensor.

    ``"WithBias"`` is the usual layer norm (biased variance, eps 1e-5). ``"BiasFree"`` divides by
    the standard deviation without subtracting the mean and has no bias; its variance is taken in
    fp32 so half-precision inputs cannot overflow it.
    """

    def __init__(self, channels: int, LayerNorm_type: str) -> None:
        super().__init__()
        self.with_bias = LayerNorm_type != "BiasFree"
        self.body = _NormParams(channels, self.with_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_bias:
            channels_last = x.permute(0, 2, 3, 1)
            normed = F.layer_norm(channels_last, x.shape[1:2], self.body.weight, self.body.bias, _EPS)
            return normed.permute(0, 3, 1, 2)
        variance = x.float().var(dim=1, keepdim=True, correction=0)
        scale = self.body.weight[:, None, None]
        return (x / torch.sqrt(variance + _EPS) * scale).to(x.dtype)


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network: GELU(dwconv half 1) × (dwconv half 2)."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, 2 * hidden, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(
            2 * hidden, 2 * hidden, kernel_size=3, padding=1, groups=2 * hidden, bias=bias
        )
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dim in fp32 (a half-precision norm over H·W pixels overflows)."""
    return F.normalize(x.float(), dim=-1).to(x.dtype)


class Attention(nn.Module):
    """Multi-Dconv head transposed attention: per head, a C'×C' attention over the channels."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(3 * dim, 3 * dim, kernel_size=3, padding=1, groups=3 * dim, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        q, k, v = qkv.reshape(b, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        attn = (_unit_rows(q) @ _unit_rows(k).transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: attention, then the gated feed-forward network."""

    def __init__(
        self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, LayerNorm_type: str
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3×3 convolution from the image to the first feature level (no bias, as officially)."""

    def __init__(self, in_c: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: 3×3 conv to C/2, then pixel-unshuffle by 2."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        conv = nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, padding=1, bias=False)
        self.body = nn.Sequential(conv, nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: 3×3 conv to 2C, then pixel-shuffle by 2."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        conv = nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, padding=1, bias=False)
        self.body = nn.Sequential(conv, nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """The official Restormer U-Net; inputs must have H and W divisible by 8.

    Returns the restored image: ``output(features) + input`` for single-image tasks; with
    ``dual_pixel_task`` (``inp_channels=6``, the two dual-pixel views) a 1×1 skip from the first
    feature level is added before the output conv and the input is not added.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        dual_pixel_task: bool = False,
    ) -> None:
        super().__init__()

        def stage(channels: int, num_heads: int, depth: int) -> nn.Sequential:
            return nn.Sequential(
                *(
                    TransformerBlock(channels, num_heads, ffn_expansion_factor, bias, LayerNorm_type)
                    for _ in range(depth)
                )
            )

        dim1, dim2, dim3, dim4 = dim, dim * 2, dim * 4, dim * 8
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim1)
        self.encoder_level1 = stage(dim1, heads[0], num_blocks[0])
        self.down1_2 = Downsample(dim1)
        self.encoder_level2 = stage(dim2, heads[1], num_blocks[1])
        self.down2_3 = Downsample(dim2)
        self.encoder_level3 = stage(dim3, heads[2], num_blocks[2])
        self.down3_4 = Downsample(dim3)
        self.latent = stage(dim4, heads[3], num_blocks[3])

        self.up4_3 = Upsample(dim4)
        self.reduce_chan_level3 = nn.Conv2d(dim4, dim3, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(dim3, heads[2], num_blocks[2])
        self.up3_2 = Upsample(dim3)
        self.reduce_chan_level2 = nn.Conv2d(dim3, dim2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(dim2, heads[1], num_blocks[1])
        # Level 1 keeps the concatenated 2·dim channels (no reduction conv), as officially.
        self.up2_1 = Upsample(dim2)
        self.decoder_level1 = stage(dim2, heads[0], num_blocks[0])
        self.refinement = stage(dim2, heads[0], num_refinement_blocks)

        self.dual_pixel_task = dual_pixel_task
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim1, dim2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        embedded = self.patch_embed(inp_img)
        enc1 = self.encoder_level1(embedded)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))

        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1)))

        if self.dual_pixel_task:
            return self.output(dec1 + self.skip_conv(embedded))
        return self.output(dec1) + inp_img


# Every setting of Restormer(...) and its constructor default (the official models: dim 48, [4, 6, 6, 8]).
_SCHEMA = {
    "inp_channels": ConfigField("int", 3, 1, 64),
    "out_channels": ConfigField("int", 3, 1, 64),
    "dim": ConfigField("int", 48, 2, 1024),
    "num_blocks": ConfigField("ints", (4, 6, 6, 8), 0, 64, length=(4, 4)),
    "num_refinement_blocks": ConfigField("int", 4, 0, 64),
    "heads": ConfigField("ints", (1, 2, 4, 8), 1, 256, length=(4, 4)),
    "ffn_expansion_factor": ConfigField("float", 2.66, 0.1, 16),
    "bias": ConfigField("bool", False),
    "LayerNorm_type": ConfigField("str", "WithBias", choices=("WithBias", "BiasFree")),
    "dual_pixel_task": ConfigField("bool", False),
}


def _check_config(config: Mapping[str, Any]) -> str | None:
    """Channels halve and double through pixel (un)shuffles, split evenly into heads, and the
    feed-forward keeps at least one hidden channel."""
    if config["dim"] % 2:
        return f'"dim" must be even (the down- and upsamplings halve it), got {config["dim"]}'
    heads = check_heads(config, "heads", "dim", "level", lambda level: 2**level)
    return heads or check_hidden(config, "ffn_expansion_factor", "dim")


register(
    Architecture(
        name="restormer",
        build=Restormer,
        # Three 2× downsamplings; the official test reflect-pads bottom/right to a multiple of 8.
        size_rule=SizeRule(multiple=8, pad_mode="reflect"),
        # Verified in tests/test_arch_restormer.py against fp32 (fp16 relies on the fp32 statistics above).
        precisions=("fp32", "bf16", "fp16"),
        # The transposed attention pools over the whole image, so every tile sees different channel
        # statistics than the full image; at 128 px the coarsest level still has 16×16 pixels to pool.
        min_tile=128,
        default_config={
            "inp_channels": 3,
            "out_channels": 3,
            "dim": 48,
            "num_blocks": (4, 6, 6, 8),
            "num_refinement_blocks": 4,
            "heads": (1, 2, 4, 8),
            "ffn_expansion_factor": 2.66,
            "bias": False,
            "LayerNorm_type": "WithBias",
            "dual_pixel_task": False,
        },
        summary="Restormer: U-Net of transposed-attention transformer blocks (motion/defocus deblurring).",
        config_schema=_SCHEMA,
        check_config=_check_config,
    )
)
