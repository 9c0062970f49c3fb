"""MAXIM (Tu et al., CVPR 2022): multi-axis gated-MLP U-Nets in stages, as in google-research/maxim.

The network is a stack of ``num_stages`` U-Nets. Each level mixes tokens with a multi-axis gated MLP
(a *block* branch inside non-overlapping windows and a *grid* branch across a dilated grid), refines
channels with residual channel attention, and exchanges information between the skip connections and
the stages through cross-gating blocks; supervised attention modules (SAM) hand each stage's restored
image to the next. Every stage is supervised at ``num_supervision_scales`` scales, so the first stage
alone is already a complete deblurring network (``keep_stages=1`` builds just that).

Module names are the official Flax scope names (``stage_0_encoder_block_1``, ``UpSampleRatio_7``,
``SplitHeadMultiAxisGmlpLayer_0``, ...) so that the converted official weights map onto the PyTorch
modules one to one. Tensors flow channels-last (B×H×W×C, as in the official JAX code); convolutions
run on channels-last memory. Numerics follow Flax: layer norm ε = 1e-6, tanh-approximated GELU,
``jax.image.resize`` semantics (bilinear with antialiasing when shrinking, nearest with half-pixel
centres for the multi-scale inputs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import Architecture, ConfigField, SizeRule, register

__all__ = ["MAXIM", "maxim_size_multiple"]

_LN_EPS = 1e-6


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


class Conv(nn.Module):
    """A Flax ``nn.Conv`` with 'SAME' padding on a channels-last B×H×W×C tensor."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        total = kernel - stride if kernel >= stride else 0
        if total % 2:
            raise ValueError(f"asymmetric SAME padding (kernel {kernel}, stride {stride}) is not supported")
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ConvTransposeUp(nn.Module):
    """The official ``ConvT_up``: a 2×2 transposed convolution of stride 2, channels-last."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _layer_norm(channels: int) -> nn.LayerNorm:
    return nn.LayerNorm(channels, eps=_LN_EPS)


def block_images(x: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """B×H×W×C → B×(gh·gw)×(fh·fw)×C: non-overlapping ``patch``-sized windows, row-major."""
    b, h, w, c = x.shape
    fh, fw = patch
    gh, gw = h // fh, w // fw
    x = x.reshape(b, gh, fh, gw, fw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * gw, fh * fw, c)


def unblock_images(x: torch.Tensor, grid: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`block_images`."""
    b, _, _, c = x.shape
    (gh, gw), (fh, fw) = grid, patch
    x = x.reshape(b, gh, gw, fh, fw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, gh * fh, gw * fw, c)


def _mix(x: torch.Tensor, dense: nn.Linear, axis: int) -> torch.Tensor:
    """Apply ``dense`` along ``axis`` (−3: across windows, −2: within a window) of B×G×P×C."""
    return dense(x.transpose(-1, axis)).transpose(-1, axis)


class MlpBlock(nn.Module):
    """Dense → GELU → Dense over channels (the bottleneck's channel mixing)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.Dense_0 = nn.Linear(channels, hidden)
        self.Dense_1 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Dense_1(_gelu(self.Dense_0(x)))


class CALayer(nn.Module):
    """Squeeze-and-excitation channel attention."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.Conv_0 = Conv(channels, channels // reduction)
        self.Conv_1 = Conv(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=(1, 2), keepdim=True)
        y = torch.sigmoid(self.Conv_1(F.relu(self.Conv_0(y))))
        return x * y


class RCAB(nn.Module):
    """Residual channel attention block: LN, conv 3×3, leaky ReLU, conv 3×3, channel attention."""

    def __init__(self, channels: int, reduction: int, lrelu_slope: float) -> None:
        super().__init__()
        self.LayerNorm = _layer_norm(channels)
        self.conv1 = Conv(channels, channels, 3)
        self.conv2 = Conv(channels, channels, 3)
        self.channel_attention = CALayer(channels, reduction)
        self.lrelu_slope = lrelu_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(self.LayerNorm(x)), self.lrelu_slope)
        return x + self.channel_attention(self.conv2(y))


class RDCAB(nn.Module):
    """Residual dense channel attention block (the bottleneck's)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.LayerNorm = _layer_norm(channels)
        self.channel_mixing = MlpBlock(channels, channels)
        self.channel_attention = CALayer(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.channel_attention(self.channel_mixing(self.LayerNorm(x)))


class GatingUnit(nn.Module):
    """gMLP spatial gating along one token axis (``axis`` −3: grid, −2: block)."""

    def __init__(self, channels: int, tokens: int, axis: int) -> None:
        super().__init__()
        self.intermediate_layernorm = _layer_norm(channels // 2)
        self.Dense_0 = nn.Linear(tokens, tokens)
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, dim=-1)
        v = _mix(self.intermediate_layernorm(v), self.Dense_0, self.axis)
        return u * (v + 1.0)


class GmlpLayer(nn.Module):
    """Grid gMLP (global mixing across a fixed ``grid``) or block gMLP (local mixing in ``block``s)."""

    def __init__(self, channels: int, size: tuple[int, int], factor: int, grid: bool) -> None:
        super().__init__()
        self.size, self.grid = size, grid
        self.LayerNorm = _layer_norm(channels)
        self.in_project = nn.Linear(channels, channels * factor)
        unit = GatingUnit(channels * factor, size[0] * size[1], -3 if grid else -2)
        self.add_module("GridGatingUnit" if grid else "BlockGatingUnit", unit)
        self.out_project = nn.Linear(channels * factor // 2, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        if self.grid:
            grid = self.size
            patch = (h // grid[0], w // grid[1])
        else:
            patch = self.size
            grid = (h // patch[0], w // patch[1])
        x = block_images(x, patch)
        unit = self.GridGatingUnit if self.grid else self.BlockGatingUnit
        y = self.out_project(unit(_gelu(self.in_project(self.LayerNorm(x)))))
        return unblock_images(x + y, grid, patch)


class MultiAxisGmlp(nn.Module):
    """``ResidualSplitHeadMultiAxisGmlpLayer``: half the channels to a grid gMLP, half to a block gMLP."""

    def __init__(
        self, channels: int, block: tuple[int, int], grid: tuple[int, int], cfg: MaximConfig
    ) -> None:
        super().__init__()
        hidden = channels * cfg.input_proj_factor
        self.LayerNorm_in = _layer_norm(channels)
        self.in_project = nn.Linear(channels, hidden)
        self.GridGmlpLayer = GmlpLayer(hidden // 2, grid, cfg.grid_gmlp_factor, grid=True)
        self.BlockGmlpLayer = GmlpLayer(hidden // 2, block, cfg.block_gmlp_factor, grid=False)
        self.out_project = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = _gelu(self.in_project(self.LayerNorm_in(x))).chunk(2, dim=-1)
        y = torch.cat([self.GridGmlpLayer(u), self.BlockGmlpLayer(v)], dim=-1)
        return x + self.out_project(y)


class SpatialGatingWeights(nn.Module):
    """``GetSpatialGatingWeights``: the gates a cross-gating block multiplies the other branch with."""

    def __init__(
        self, channels: int, block: tuple[int, int], grid: tuple[int, int], proj_factor: int
    ) -> None:
        super().__init__()
        self.block, self.grid = block, grid
        self.LayerNorm_in = _layer_norm(channels)
        self.in_project = nn.Linear(channels, channels * proj_factor)
        self.Dense_0 = nn.Linear(grid[0] * grid[1], grid[0] * grid[1])
        self.Dense_1 = nn.Linear(block[0] * block[1], block[0] * block[1])
        self.out_project = nn.Linear(channels * proj_factor, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        u, v = _gelu(self.in_project(self.LayerNorm_in(x))).chunk(2, dim=-1)
        patch = (h // self.grid[0], w // self.grid[1])
        u = unblock_images(_mix(block_images(u, patch), self.Dense_0, -3), self.grid, patch)
        grid = (h // self.block[0], w // self.block[1])
        v = unblock_images(_mix(block_images(v, self.block), self.Dense_1, -2), grid, self.block)
        return self.out_project(torch.cat([u, v], dim=-1))


class CrossGatingBlock(nn.Module):
    """Two signals gate each other; returns (x gated and fused, y gated)."""

    def __init__(
        self,
        cin_x: int,
        cin_y: int,
        channels: int,
        block: tuple[int, int],
        grid: tuple[int, int],
        proj_factor: int,
        upsample_y: bool,
    ) -> None:
        super().__init__()
        if upsample_y:
            self.ConvTranspose_0 = ConvTransposeUp(cin_y, channels)
            cin_y = channels
        self.upsample_y = upsample_y
        self.Conv_0 = Conv(cin_x, channels)
        self.Conv_1 = Conv(cin_y, channels)
        self.LayerNorm_x = _layer_norm(channels)
        self.in_project_x = nn.Linear(channels, channels)
        self.SplitHeadMultiAxisGating_x = SpatialGatingWeights(channels, block, grid, proj_factor)
        self.LayerNorm_y = _layer_norm(channels)
        self.in_project_y = nn.Linear(channels, channels)
        self.SplitHeadMultiAxisGating_y = SpatialGatingWeights(channels, block, grid, proj_factor)
        self.out_project_y = nn.Linear(channels, channels)
        self.out_project_x = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.upsample_y:
            y = self.ConvTranspose_0(y)
        x = self.Conv_0(x)
        y = self.Conv_1(y)
        shortcut_x, shortcut_y = x, y
        x = _gelu(self.in_project_x(self.LayerNorm_x(x)))
        gx = self.SplitHeadMultiAxisGating_x(x)
        y = _gelu(self.in_project_y(self.LayerNorm_y(y)))
        gy = self.SplitHeadMultiAxisGating_y(y)
        y = self.out_project_y(y * gx) + shortcut_y
        x = self.out_project_x(x * gy) + y + shortcut_x
        return x, y


class EncoderBlock(nn.Module):
    """``UNetEncoderBlock``: 1×1 conv in, groups of (multi-axis gMLP, RCAB), optional cross-gating with
    the previous stage, optional 4×4 stride-2 downsampling (returns (down, skip) then)."""

    def __init__(
        self,
        cin: int,
        channels: int,
        block: tuple[int, int],
        grid: tuple[int, int],
        cfg: MaximConfig,
        *,
        downsample: bool,
        cross_gating: bool,
    ) -> None:
        super().__init__()
        self.Conv_0 = Conv(cin, channels)
        self.num_groups = cfg.num_groups
        for i in range(cfg.num_groups):
            self.add_module(f"SplitHeadMultiAxisGmlpLayer_{i}", MultiAxisGmlp(channels, block, grid, cfg))
            self.add_module(
                f"channel_attention_block_1{i}", RCAB(channels, cfg.channels_reduction, cfg.lrelu_slope)
            )
        if cross_gating:
            self.cross_gating_block = CrossGatingBlock(
                channels, channels, channels, block, grid, cfg.input_proj_factor, upsample_y=False
            )
        self.cross_gating = cross_gating
        if downsample:
            self.Conv_1 = Conv(channels, channels, kernel=4, stride=2)
        self.downsample = downsample

    def forward(
        self,
        x: torch.Tensor,
        skip: torch.Tensor | None = None,
        enc: torch.Tensor | None = None,
        dec: torch.Tensor | None = None,
    ) -> Any:
        if skip is not None:
            x = torch.cat([x, skip], dim=-1)
        x = self.Conv_0(x)
        shortcut = x
        for i in range(self.num_groups):
            x = getattr(self, f"SplitHeadMultiAxisGmlpLayer_{i}")(x)
            x = getattr(self, f"channel_attention_block_1{i}")(x)
        x = x + shortcut
        if self.cross_gating:
            x, _ = self.cross_gating_block(x, enc + dec)
        if self.downsample:
            return self.Conv_1(x), x
        return x


class DecoderBlock(nn.Module):
    """``UNetDecoderBlock``: 2× transposed-conv upsampling, then an encoder block fed the skip."""

    def __init__(
        self,
        cin: int,
        skip: int,
        channels: int,
        block: tuple[int, int],
        grid: tuple[int, int],
        cfg: MaximConfig,
    ) -> None:
        super().__init__()
        self.ConvTranspose_0 = ConvTransposeUp(cin, channels)
        self.UNetEncoderBlock_0 = EncoderBlock(
            channels + skip, channels, block, grid, cfg, downsample=False, cross_gating=False
        )

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.UNetEncoderBlock_0(self.ConvTranspose_0(x), skip=bridge)


class BottleneckBlock(nn.Module):
    """The global bottleneck: 1×1 conv in, groups of (multi-axis gMLP, RDCAB), long skip."""

    def __init__(self, channels: int, size: tuple[int, int], cfg: MaximConfig) -> None:
        super().__init__()
        self.input_proj = Conv(channels, channels)
        self.num_groups = cfg.num_groups
        for i in range(cfg.num_groups):
            self.add_module(f"SplitHeadMultiAxisGmlpLayer_{i}", MultiAxisGmlp(channels, size, size, cfg))
            self.add_module(f"channel_attention_block_1_{i}", RDCAB(channels, cfg.channels_reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(x)
        shortcut = x
        for i in range(self.num_groups):
            x = getattr(self, f"SplitHeadMultiAxisGmlpLayer_{i}")(x)
            x = getattr(self, f"channel_attention_block_1_{i}")(x)
        return x + shortcut


class UpSampleRatio(nn.Module):
    """Resize by a power-of-two ratio (``jax.image.resize`` bilinear), then a 1×1 conv."""

    def __init__(self, cin: int, channels: int, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.Conv_0 = Conv(cin, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ratio != 1:
            _, h, w, _ = x.shape
            if self.ratio < 1:
                step = round(1 / self.ratio)
                size = (h // step, w // step)
            else:
                size = (int(h * self.ratio), int(w * self.ratio))
            x = x.permute(0, 3, 1, 2)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.ratio < 1)
            x = x.permute(0, 2, 3, 1)
        return self.Conv_0(x)


class SAM(nn.Module):
    """Supervised attention module: the stage's restored image, and features attended by it.

    ``image_only`` (the last kept stage of a truncated network) builds just the image head.
    """

    def __init__(self, channels: int, outputs: int, image_only: bool = False) -> None:
        super().__init__()
        self.image_only = image_only
        if not image_only:
            self.Conv_0 = Conv(channels, channels, 3)
            self.Conv_2 = Conv(outputs, channels, 3)
        self.Conv_1 = Conv(channels, outputs, 3)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        restored = self.Conv_1(x) + image
        if self.image_only:
            return None, restored
        return self.Conv_0(x) * torch.sigmoid(self.Conv_2(restored)) + x, restored


@dataclass(frozen=True)
class MaximConfig:
    """The hyper-parameters of :class:`MAXIM`: the official Flax module's fields, plus ``keep_stages``."""

    features: int = 32
    depth: int = 3
    num_stages: int = 3
    num_groups: int = 2
    num_supervision_scales: int = 3
    lrelu_slope: float = 0.2
    high_res_stages: int = 2
    block_size_hr: tuple[int, int] = (16, 16)
    block_size_lr: tuple[int, int] = (8, 8)
    grid_size_hr: tuple[int, int] = (16, 16)
    num_bottleneck_blocks: int = 2
    block_gmlp_factor: int = 2
    grid_gmlp_factor: int = 2
    input_proj_factor: int = 2
    channels_reduction: int = 4
    num_outputs: int = 3
    keep_stages: int = 0
    multiscale_outputs: bool = True

    def __post_init__(self) -> None:
        for name in (
            "features",
            "depth",
            "num_stages",
            "num_groups",
            "num_supervision_scales",
            "num_bottleneck_blocks",
            "block_gmlp_factor",
            "grid_gmlp_factor",
            "input_proj_factor",
            "channels_reduction",
            "num_outputs",
        ):
            _positive(name, getattr(self, name))
        for name in ("block_size_hr", "block_size_lr", "grid_size_hr"):
            object.__setattr__(self, name, _pair(name, getattr(self, name)))
        if self.num_supervision_scales > self.depth:
            raise ValueError("num_supervision_scales must not exceed depth")
        if self.input_proj_factor % 2 or self.block_gmlp_factor % 2 or self.grid_gmlp_factor % 2:
            raise ValueError("the projection factors must be even (the gating units split channels in two)")
        keep = self.keep_stages or self.num_stages
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= self.num_stages:
            raise ValueError(
                f"keep_stages must be between 1 and num_stages ({self.num_stages}), or 0 for all"
            )
        object.__setattr__(self, "keep_stages", keep)

    def sizes(self, level: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(block size, grid size) at a level. As in the official code, low-resolution levels use the
        low-resolution *block* size for the grid too."""
        if level < self.high_res_stages:
            return self.block_size_hr, self.grid_size_hr
        return self.block_size_lr, self.block_size_lr


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _pair(name: str, value: Any) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair of positive integers, got {value!r}")
    return _positive(name, value[0]), _positive(name, value[1])


class MAXIM(nn.Module):
    """The MAXIM network. ``forward`` returns the final restored image (B×C×H×W, NCHW in and out);
    :meth:`forward_all` returns every stage's outputs at every supervision scale, coarsest first.

    Sizes must be multiples of :func:`maxim_size_multiple` (64 for the published models).
    ``keep_stages`` < ``num_stages`` builds only the first stages; the last kept stage's SAM image
    head then gives the output (every stage is supervised in the official training).
    ``multiscale_outputs=False`` builds only the full-resolution head of the last kept stage (the
    published TF.js graph of MAXIM-3S keeps nothing else: the coarser heads feed no output).
    """

    def __init__(self, **config: Any) -> None:
        super().__init__()
        cfg = self.cfg = MaximConfig(**config)
        f = cfg.features
        scales = cfg.num_supervision_scales
        upsample_index = 0
        for s in range(cfg.keep_stages):
            last_kept = s == cfg.keep_stages - 1
            for i in range(scales):
                self.add_module(f"stage_{s}_input_conv_{i}", Conv(cfg.num_outputs, f * 2**i, 3))
                if s > 0:
                    block, grid = cfg.sizes(i)
                    fuse = CrossGatingBlock(
                        f * 2**i, f * 2**i, f * 2**i, block, grid, cfg.input_proj_factor, upsample_y=False
                    )
                    self.add_module(f"stage_{s}_input_fuse_sam_{i}", fuse)
            for i in range(cfg.depth):
                block, grid = cfg.sizes(i)
                cin = (f * 2 ** (i - 1) if i else f) + (f * 2**i if i < scales else 0)
                encoder = EncoderBlock(cin, f * 2**i, block, grid, cfg, downsample=True, cross_gating=s > 0)
                self.add_module(f"stage_{s}_encoder_block_{i}", encoder)
            deepest = f * 2 ** (cfg.depth - 1)
            for i in range(cfg.num_bottleneck_blocks):
                block = BottleneckBlock(deepest, cfg.block_size_lr, cfg)
                self.add_module(f"stage_{s}_global_block_{i}", block)
            for i in reversed(range(cfg.depth)):
                for j in range(cfg.depth):
                    up = UpSampleRatio(f * 2**j, f * 2**i, 2.0 ** (j - i))
                    self.add_module(f"UpSampleRatio_{upsample_index}", up)
                    upsample_index += 1
                block, grid = cfg.sizes(i)
                cin_y = deepest if i == cfg.depth - 1 else f * 2 ** (i + 1)
                gate = CrossGatingBlock(
                    f * 2**i * cfg.depth, cin_y, f * 2**i, block, grid, cfg.input_proj_factor, upsample_y=True
                )
                self.add_module(f"stage_{s}_cross_gating_block_{i}", gate)
            for i in reversed(range(cfg.depth)):
                for j in range(cfg.depth):
                    scale = cfg.depth - 1 - j
                    up = UpSampleRatio(f * 2**scale, f * 2**i, 2.0 ** (scale - i))
                    self.add_module(f"UpSampleRatio_{upsample_index}", up)
                    upsample_index += 1
                block, grid = cfg.sizes(i)
                cin = deepest if i == cfg.depth - 1 else f * 2 ** (i + 1)
                decoder = DecoderBlock(cin, f * 2**i * cfg.depth, f * 2**i, block, grid, cfg)
                self.add_module(f"stage_{s}_decoder_block_{i}", decoder)
                if i < scales and (i == 0 or not last_kept or cfg.multiscale_outputs):
                    if s < cfg.num_stages - 1:
                        sam = SAM(f * 2**i, cfg.num_outputs, image_only=last_kept)
                        self.add_module(f"stage_{s}_supervised_attention_module_{i}", sam)
                    else:
                        self.add_module(f"stage_{s}_output_conv_{i}", Conv(f * 2**i, cfg.num_outputs, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[-1][-1]

    def forward_all(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Every kept stage's restored images, each stage from the coarsest scale to the finest."""
        cfg = self.cfg
        x = x.permute(0, 2, 3, 1)
        # jax.image.resize "nearest" samples half-pixel centres: pixel 2^i·j + 2^(i-1).
        shortcuts = [x] + [
            x[:, 2 ** (i - 1) :: 2**i, 2 ** (i - 1) :: 2**i] for i in range(1, cfg.num_supervision_scales)
        ]
        outputs_all: list[list[torch.Tensor]] = []
        sam_features: list[torch.Tensor] = []
        encs_prev: list[torch.Tensor] = []
        decs_prev: list[torch.Tensor] = []
        upsample_index = 0
        last = cfg.keep_stages - 1
        for s in range(cfg.keep_stages):
            x_scales = []
            for i in range(cfg.num_supervision_scales):
                feature = getattr(self, f"stage_{s}_input_conv_{i}")(shortcuts[i])
                if s > 0:
                    feature, _ = getattr(self, f"stage_{s}_input_fuse_sam_{i}")(feature, sam_features.pop())
                x_scales.append(feature)
            encs = []
            h = x_scales[0]
            for i in range(cfg.depth):
                skip = x_scales[i] if i < cfg.num_supervision_scales else None
                enc_prev = encs_prev.pop() if s > 0 else None
                dec_prev = decs_prev.pop() if s > 0 else None
                h, bridge = getattr(self, f"stage_{s}_encoder_block_{i}")(h, skip, enc_prev, dec_prev)
                encs.append(bridge)
            for i in range(cfg.num_bottleneck_blocks):
                h = getattr(self, f"stage_{s}_global_block_{i}")(h)
            global_feature = h
            skip_features = []
            for i in reversed(range(cfg.depth)):
                signal = []
                for enc in encs:
                    signal.append(getattr(self, f"UpSampleRatio_{upsample_index}")(enc))
                    upsample_index += 1
                gate = getattr(self, f"stage_{s}_cross_gating_block_{i}")
                skips, global_feature = gate(torch.cat(signal, dim=-1), global_feature)
                skip_features.append(skips)
            outputs, decs, sam_features = [], [], []
            for i in reversed(range(cfg.depth)):
                signal = []
                for skip in skip_features:
                    signal.append(getattr(self, f"UpSampleRatio_{upsample_index}")(skip))
                    upsample_index += 1
                h = getattr(self, f"stage_{s}_decoder_block_{i}")(h, torch.cat(signal, dim=-1))
                decs.append(h)
                if i < cfg.num_supervision_scales and (i == 0 or s < last or cfg.multiscale_outputs):
                    if s < cfg.num_stages - 1:
                        sam, output = getattr(self, f"stage_{s}_supervised_attention_module_{i}")(
                            h, shortcuts[i]
                        )
                        if sam is not None:
                            sam_features.append(sam)
                    else:
                        output = getattr(self, f"stage_{s}_output_conv_{i}")(h) + shortcuts[i]
                    outputs.append(output.permute(0, 3, 1, 2))
            encs_prev, decs_prev = encs[::-1], decs
            outputs_all.append(outputs)
        return outputs_all


def maxim_size_multiple(config: Mapping[str, Any]) -> int:
    """The multiple that input sides must be: every level's windows and grid must tile its map."""
    cfg = MaximConfig(**config)
    multiple = 1
    for level in range(cfg.depth):
        block, grid = cfg.sizes(level)
        for n in (*block, *grid):
            multiple = math.lcm(multiple, n * 2**level)
    for n in cfg.block_size_lr:
        multiple = math.lcm(multiple, n * 2**cfg.depth)
    return multiple


def _size_rule(config: Mapping[str, Any]) -> SizeRule:
    return SizeRule(multiple=maxim_size_multiple(config), pad_mode="reflect", centred=True, even_first=True)


# MAXIM-3S (the "S-3" variant), as trained for GoPro motion deblurring.
_S3: dict[str, Any] = {
    "features": 32,
    "depth": 3,
    "num_stages": 3,
    "num_groups": 2,
    "num_bottleneck_blocks": 2,
    "num_supervision_scales": 3,
}

# Every setting of MaximConfig and its default (MAXIM-3S: 32 features, depth 3, 3 stages).
_SCHEMA = {
    "features": ConfigField("int", 32, 1, 1024),
    "depth": ConfigField("int", 3, 1, 8),
    "num_stages": ConfigField("int", 3, 1, 8),
    "num_groups": ConfigField("int", 2, 1, 64),
    "num_supervision_scales": ConfigField("int", 3, 1, 8),
    "lrelu_slope": ConfigField("float", 0.2, 0, 1),
    "high_res_stages": ConfigField("int", 2, 0, 8),
    "block_size_hr": ConfigField("ints", (16, 16), 1, 64, length=(2, 2)),
    "block_size_lr": ConfigField("ints", (8, 8), 1, 64, length=(2, 2)),
    "grid_size_hr": ConfigField("ints", (16, 16), 1, 64, length=(2, 2)),
    "num_bottleneck_blocks": ConfigField("int", 2, 1, 64),
    "block_gmlp_factor": ConfigField("int", 2, 2, 16),
    "grid_gmlp_factor": ConfigField("int", 2, 2, 16),
    "input_proj_factor": ConfigField("int", 2, 2, 16),
    "channels_reduction": ConfigField("int", 4, 1, 1024),
    "num_outputs": ConfigField("int", 3, 1, 64),
    "keep_stages": ConfigField("int", 0, 0, 8),
    "multiscale_outputs": ConfigField("bool", True),
}


def _check_config(config: Mapping[str, Any]) -> str | None:
    """What :class:`MaximConfig` requires across settings, plus a channel left by channel attention."""
    problems = {
        "num_supervision_scales": (
            config["num_supervision_scales"] > config["depth"],
            f'must not exceed "depth" ({config["depth"]})',
        ),
        "keep_stages": (
            config["keep_stages"] > config["num_stages"],
            f'must be between 1 and "num_stages" ({config["num_stages"]}), or 0 for all',
        ),
        "channels_reduction": (
            config["channels_reduction"] > config["features"],
            f'must not exceed "features" ({config["features"]})',
        ),
        **{
            name: (config[name] % 2 == 1, "must be even (the gating units split channels in two)")
            for name in ("block_gmlp_factor", "grid_gmlp_factor", "input_proj_factor")
        },
    }
    for name, (wrong, rule) in problems.items():
        if wrong:
            return f'"{name}" {rule}, got {config[name]}'
    return None


register(
    Architecture(
        name="maxim",
        build=MAXIM,
        size_rule=_size_rule,
        precisions=("fp32",),
        min_tile=256,
        default_config=_S3,
        summary="MAXIM (Tu et al. 2022), google-research/maxim; multi-axis gated MLP, multi-stage",
        pixel_loss="charbonnier",
        config_schema=_SCHEMA,
        check_config=_check_config,
    )
)
