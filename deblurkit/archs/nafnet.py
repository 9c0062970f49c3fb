"""NAFNet (Chen et al., ECCV 2022) and its TLC inference variant, as in megvii-research/NAFNet.

Two architectures are registered:

* ``"nafnet"``: the plain network; the simplified channel attention (SCA) pools globally.
* ``"nafnet-local"``: NAFNetLocal, the Test-time Local Converter (TLC, Chu et al. 2022): the same
  weights, but every SCA pool is a local mean whose window is 1.5× the feature size seen at training
  size, replicate-padded back to the full map.

Module and parameter names follow the official code, so official checkpoints load with
``strict=True``. The computation is the official one, rearranged where it costs nothing in exactness:
features are kept channels-last, the layer norm uses ``F.layer_norm`` with fp32 statistics (the
official variance overflows in fp16), the local mean uses separable running sums, and the SCA's 1×1
conv runs before the replicate padding (a per-pixel map commutes with it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import Architecture, ConfigField, SizeRule, register

__all__ = ["GlobalMean", "LayerNorm2d", "LocalMean", "NAFBlock", "NAFNet", "NAFNetLocal", "tlc_kernel_sizes"]


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of a B×C×H×W tensor, statistics always in fp32."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.permute(0, 2, 3, 1).float()
        y = F.layer_norm(channels_last, (x.shape[1],), self.weight.float(), self.bias.float(), self.eps)
        return y.permute(0, 3, 1, 2).to(x.dtype)


class GlobalMean(nn.Module):
    """The official SCA pool: the mean of each channel over the whole map (B×C×1×1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean((2, 3), keepdim=True).to(x.dtype)


class LocalMean(nn.Module):
    """TLC's local mean over a ``kernel_size`` window at stride 1, accumulated in fp32.

    Returns the "valid" part of the filtered map ((H−k₁+1)×(W−k₂+1), windows clipped to the map), or
    the global mean when the window covers the whole map, as the official ``AvgPool2d`` does before
    its replicate padding (see :func:`_multiply_replicated`).
    """

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        k1, k2 = self.kernel_size
        if k1 >= height and k2 >= width:
            return x.float().mean((2, 3), keepdim=True).to(x.dtype)
        k1, k2 = min(k1, height), min(k2, width)
        sums = _box_sum(_box_sum(x.float(), 3, k2), 2, k1)
        return sums.div_(k1 * k2).to(x.dtype)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"


def _box_sum(x: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """Sums of the ``k`` consecutive entries along ``dim`` at every valid offset (a new tensor)."""
    n = x.shape[dim]
    if k == n:
        return x.sum(dim, keepdim=True)
    if x.device.type == "cpu" and not torch.is_grad_enabled():
        return _box_sum_sliding(x, dim, k)
    return _box_sum_cumsum(x, dim, k)


def _box_sum_cumsum(x: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """Box sums as differences of a prefix sum (differentiable; fast where ``cumsum`` is parallel)."""
    n = x.shape[dim]
    prefix = x.cumsum(dim)
    later = prefix.narrow(dim, k, n - k) - prefix.narrow(dim, 0, n - k)
    return torch.cat([prefix.narrow(dim, k - 1, 1), later], dim)


def _box_sum_sliding(x: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """Box sums by sliding the window one step at a time, each step a vectorised slice update.

    On CPU ``cumsum`` is a scalar scan (slow, especially channels-last); here the first window is
    summed, each later one adds its entering slice and drops its leaving one, and the running update
    goes across whole slices.
    """
    n = x.shape[dim]
    out = torch.empty_like(x.narrow(dim, 0, n - k + 1))
    torch.sum(x.narrow(dim, 0, k), dim, keepdim=True, out=out.narrow(dim, 0, 1))
    torch.sub(x.narrow(dim, k, n - k), x.narrow(dim, 0, n - k), out=out.narrow(dim, 1, n - k))
    for previous, current in itertools.pairwise(out.unbind(dim)):
        current.add_(previous)
    return out


def _multiply_replicated(x: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """``x`` times ``pooled`` replicate-padded to x's size (centred, floor half on the top/left).

    Without autograd the product is written into ``x`` and the padding is never materialised.
    """
    height, width = x.shape[-2:]
    pooled_h, pooled_w = pooled.shape[-2:]
    if (pooled_h, pooled_w) == (1, 1):
        return x * pooled if torch.is_grad_enabled() else x.mul_(pooled)
    left, top = (width - pooled_w) // 2, (height - pooled_h) // 2
    rows = F.pad(pooled, (left, width - pooled_w - left, 0, 0), mode="replicate")
    if torch.is_grad_enabled():
        return x * F.pad(rows, (0, 0, top, height - pooled_h - top), mode="replicate")
    x[..., :top, :].mul_(rows[..., :1, :])
    x[..., top : top + pooled_h, :].mul_(rows)
    x[..., top + pooled_h :, :].mul_(rows[..., -1:, :])
    return x


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1×1 convolution as a matmul over channels-last pixels (strided channel slices are fine)."""
    return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)


def _simple_gate(x: torch.Tensor) -> torch.Tensor:
    """NAFNet's SimpleGate: first half of the channels times the second (in place without autograd)."""
    first, second = x.chunk(2, dim=1)
    return first * second if torch.is_grad_enabled() else first.mul_(second)


class ChannelAttention(nn.Sequential):
    """Simplified channel attention: a mean pool then a 1×1 conv (official names ``sca.0``, ``sca.1``).

    ``forward`` returns the input scaled by the attention. The conv runs on the pooled map before it
    is replicate-padded, which is the same per-pixel map as the official conv after the padding.
    """

    def __init__(self, channels: int, pool: GlobalMean | LocalMean) -> None:
        super().__init__(pool, nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool, conv = self[0], self[1]
        return _multiply_replicated(x, _pointwise(pool(x), conv.weight, conv.bias))


class NAFBlock(nn.Module):
    """NAFNet's block (DW expand 2, FFN expand 2, no dropout), official parameter names.

    The residual scales ``beta`` and ``gamma`` are folded into ``conv3`` and ``conv5``.
    """

    def __init__(self, channels: int, pool: GlobalMean | LocalMean) -> None:
        super().__init__()
        c = channels
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.sca = ChannelAttention(c, pool)
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.conv2(_pointwise(self.norm1(inp), self.conv1.weight, self.conv1.bias))
        x = self.sca(_simple_gate(x))
        y = _add(_scaled_pointwise(x, self.conv3, self.beta), inp, self.beta.dtype)
        x = _simple_gate(_pointwise(self.norm2(y), self.conv4.weight, self.conv4.bias))
        return _add(_scaled_pointwise(x, self.conv5, self.gamma), y, self.gamma.dtype)


def _scaled_pointwise(x: torch.Tensor, conv: nn.Conv2d, scale: torch.Tensor) -> torch.Tensor:
    """``conv(x) * scale`` for a 1×1 conv and a per-channel scale, with the scale in the weights."""
    scale = scale.flatten()
    return _pointwise(x, conv.weight * scale[:, None, None, None], conv.bias * scale)


def _add(fresh: torch.Tensor, other: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``fresh + other`` in their promoted dtype (and ``dtype``'s), in ``fresh``'s storage if it has it.

    ``fresh`` must be an intermediate nothing else holds. Under autocast this keeps the official
    promotion: a half-precision branch added to (or scaled by) fp32 tensors gives fp32.
    """
    target = torch.promote_types(fresh.dtype, other.dtype)
    if dtype is not None:
        target = torch.promote_types(target, dtype)
    return fresh.to(target).add_(other)


def _global_pool(level: int) -> GlobalMean:
    return GlobalMean()


class NAFNet(nn.Module):
    """The NAFNet U-Net. Inputs must have H and W multiples of ``2 ** len(enc_blk_nums)``.

    ``pool_for_level(level)`` makes the SCA pool of a block at resolution level ``level`` (0 is
    full resolution); the default is the official global mean. Features are kept channels-last.
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (),
        dec_blk_nums: Sequence[int] = (),
        pool_for_level: Callable[[int], GlobalMean | LocalMean] = _global_pool,
    ) -> None:
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(
                f"enc_blk_nums and dec_blk_nums differ in length: {enc_blk_nums}, {dec_blk_nums}"
            )
        levels = len(enc_blk_nums)
        self.multiple = 2**levels
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()

        def stage(channels: int, blocks: int, level: int) -> nn.Sequential:
            return nn.Sequential(*(NAFBlock(channels, pool_for_level(level)) for _ in range(blocks)))

        for level, blocks in enumerate(enc_blk_nums):
            channels = width * 2**level
            self.encoders.append(stage(channels, blocks, level))
            self.downs.append(nn.Conv2d(channels, 2 * channels, 2, stride=2))
        self.middle_blks = stage(width * 2**levels, middle_blk_num, levels)
        for level, blocks in zip(reversed(range(levels)), dec_blk_nums, strict=True):
            channels = width * 2**level
            self.ups.append(
                nn.Sequential(nn.Conv2d(2 * channels, 4 * channels, 1, bias=False), nn.PixelShuffle(2))
            )
            self.decoders.append(stage(channels, blocks, level))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        self._check_size(inp)
        x = self.intro(inp.contiguous(memory_format=torch.channels_last))
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            x = decoder(_add(up(x), skip))
        return _add(self.ending(x), inp).contiguous()

    def _check_size(self, inp: torch.Tensor) -> None:
        height, width = inp.shape[-2:]
        if height % self.multiple or width % self.multiple:
            raise ValueError(
                f"NAFNet needs H and W multiples of {self.multiple}, got {height}×{width} "
                "(wrap it in deblurkit.Restorer to pad any size)"
            )


def _train_hw(train_size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) of a training size given as a side or as the official (N, C, H, W) / (H, W)."""
    if isinstance(train_size, int):
        return train_size, train_size
    return int(train_size[-2]), int(train_size[-1])


def tlc_kernel_sizes(train_size: int | Sequence[int], levels: int) -> list[tuple[int, int]]:
    """TLC's local-mean window at each resolution level 0..``levels``.

    The official code measures the feature size of each pool on a dummy forward at the training size
    (padded to a multiple of ``2**levels``) and sets the window to that size × base/train, where base
    is 1.5 × train (truncated).
    """
    train_h, train_w = _train_hw(train_size)
    base_h, base_w = int(train_h * 1.5), int(train_w * 1.5)
    multiple = 2**levels
    padded_h, padded_w = -(-train_h // multiple) * multiple, -(-train_w // multiple) * multiple
    return [
        ((padded_h >> level) * base_h // train_h, (padded_w >> level) * base_w // train_w)
        for level in range(levels + 1)
    ]


class NAFNetLocal(NAFNet):
    """NAFNet with TLC: every SCA pool is a local mean sized from ``train_size`` (official NAFNetLocal)."""

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (),
        dec_blk_nums: Sequence[int] = (),
        train_size: int | Sequence[int] = 256,
        fast_imp: bool = False,
    ) -> None:
        if fast_imp:
            raise ValueError("fast_imp=True (the official approximate TLC) is not supported")
        kernels = tlc_kernel_sizes(train_size, len(enc_blk_nums))
        super().__init__(
            img_channel,
            width,
            middle_blk_num,
            enc_blk_nums,
            dec_blk_nums,
            pool_for_level=lambda level: LocalMean(kernels[level]),
        )


def _size_rule(config: Mapping[str, Any]) -> SizeRule:
    return SizeRule(multiple=2 ** len(config.get("enc_blk_nums", ())))


_GOPRO_WIDTH32 = {
    "img_channel": 3,
    "width": 32,
    "middle_blk_num": 1,
    "enc_blk_nums": (1, 1, 1, 28),
    "dec_blk_nums": (1, 1, 1, 1),
}

# Every setting of NAFNet(...) and its constructor default; the official models use width 32/64, four
# levels and at most 28 blocks per level (the parameter ceiling of the validation bounds the rest).
_SCHEMA = {
    "img_channel": ConfigField("int", 3, 1, 64),
    "width": ConfigField("int", 16, 1, 1024),
    "middle_blk_num": ConfigField("int", 1, 0, 64),
    "enc_blk_nums": ConfigField("ints", (), 0, 64, length=(0, 8)),
    "dec_blk_nums": ConfigField("ints", (), 0, 64, length=(0, 8)),
}
_LOCAL_SCHEMA = {
    **_SCHEMA,
    # A side, or the official (N, C, H, W) / (H, W) training shape.
    "train_size": ConfigField("int|ints", 256, 1, 16384, length=(2, 4)),
    "fast_imp": ConfigField("bool", False),
}


def _check_config(config: Mapping[str, Any]) -> str | None:
    """Encoder and decoder have one entry per level."""
    levels, decoders = len(config["enc_blk_nums"]), len(config["dec_blk_nums"])
    if decoders != levels:
        return f'"dec_blk_nums" must have as many entries as "enc_blk_nums" ({levels}), got {decoders}'
    return None


def _check_local_config(config: Mapping[str, Any]) -> str | None:
    """NAFNet's checks; the official approximate TLC (``fast_imp``) is not implemented."""
    if config["fast_imp"]:
        return '"fast_imp" must be false (the official approximate TLC is not supported)'
    return _check_config(config)


register(
    Architecture(
        name="nafnet",
        build=NAFNet,
        size_rule=_size_rule,
        precisions=("fp32", "bf16", "fp16"),
        min_tile=64,
        default_config=_GOPRO_WIDTH32,
        summary="NAFNet (Chen et al. 2022), megvii-research/NAFNet; global channel attention",
        pixel_loss="psnr",
        channels_last=True,
        config_schema=_SCHEMA,
        check_config=_check_config,
    )
)

register(
    Architecture(
        name="nafnet-local",
        build=NAFNetLocal,
        size_rule=_size_rule,
        precisions=("fp32", "bf16", "fp16"),
        min_tile=512,
        default_config={**_GOPRO_WIDTH32, "train_size": 256, "fast_imp": False},
        summary="NAFNetLocal: NAFNet with TLC local channel attention (train size 256), same weights",
        pixel_loss="psnr",
        channels_last=True,
        config_schema=_LOCAL_SCHEMA,
        check_config=_check_local_config,
    )
)
