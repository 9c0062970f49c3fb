"""Uformer (Wang et al., CVPR 2022), numerically matching the official ``ZhendongWang6/Uformer`` code.

Module and parameter names follow the official ``model.py`` (including its ``dowsample_*`` spelling), so
official checkpoints load with ``strict=True``. The official release stores them as
``{"state_dict": {"module.<name>": tensor, ...}}``; strip ``module.`` before loading.

Tokens travel between blocks as B×H×W×C tensors instead of the official B×(H·W)×C, which lets the
network run on any H and W that are multiples of ``16 * win_size``. The official test code only feeds
squares (its blocks recover the side as ``sqrt(H·W)``), so the registered size rule pads to a square.

``img_size`` is not stored in the weights but still matters: each stage is built for the resolution
``img_size / 2**k`` it would see at training size, and a stage whose resolution is not larger than the
window gets no shifted windows and a window as big as that resolution. The official test scripts build
Uformer-B with ``img_size=128``, so its bottleneck (8×8 at that size) never shifts its windows, whatever
the size of the image actually fed in.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from timm.layers import DropPath, trunc_normal_
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from . import Architecture, ConfigField, SizeRule, register
from .checks import check_heads, check_hidden

__all__ = ["Uformer"]

# Masked attention logits get this (finite) offset in the official code, not -inf.
_MASK_VALUE = -100.0


def window_partition(x: torch.Tensor, win: int) -> torch.Tensor:
    """Split B×H×W×C into non-overlapping windows: (B·nW)×(win·win)×C, windows in row-major order."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // win, win, width // win, win, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, win * win, channels)


def window_reverse(windows: torch.Tensor, win: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B·nW)×(win·win)×C back to B×H×W×C."""
    channels = windows.shape[-1]
    x = windows.view(-1, height // win, width // win, win, win, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def relative_position_index(win: int) -> torch.Tensor:
    """For each pair of positions in a win×win window, the row of the relative-position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(win), torch.arange(win), indexing="ij")).flatten(1)
    delta = coords[:, :, None] - coords[:, None, :] + (win - 1)
    return delta[0] * (2 * win - 1) + delta[1]


@functools.lru_cache(maxsize=32)
def shift_attention_mask(height: int, width: int, win: int, shift: int, device: torch.device) -> torch.Tensor:
    """Additive mask (nW×N×N) that keeps shifted windows from mixing regions the roll made adjacent.

    Pixels are labelled by the band they fall in along each axis (before the last window, in its first
    ``win - shift`` rows/columns, in the last ``shift``); pairs with different labels get ``-100``.
    Cached per resolution: every shifted block of a stage reuses the same tensor, so never modify it.
    """
    with torch.inference_mode(False), torch.no_grad():

        def bands(size: int) -> torch.Tensor:
            pos = torch.arange(size, device=device)
            return (pos >= size - win).long() + (pos >= size - shift).long()

        labels = (bands(height)[:, None] * 3 + bands(width)[None, :]).float()
        labels = window_partition(labels[None, :, :, None], win).squeeze(-1)  # nW×N
        differs = labels[:, None, :] != labels[:, :, None]
        return torch.zeros(differs.shape, device=device).masked_fill_(differs, _MASK_VALUE)


class LinearProjection(nn.Module):
    """Queries from the tokens; keys and values from the tokens or from a shared set of ``kv`` rows."""

    def __init__(self, dim: int, heads: int, bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=bias)

    def forward(
        self, x: torch.Tensor, kv: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """B×N×C (and M×C) to per-head q (B×h×N×d), k and v (B×h×M×d)."""
        batch, tokens, channels = x.shape
        source = x if kv is None else kv.expand(batch, -1, -1)
        head_dim = channels // self.heads
        q = self.to_q(x).view(batch, tokens, self.heads, head_dim).transpose(1, 2)
        k, v = self.to_kv(source).view(batch, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative-position bias.

    ``softmax(q·kᵀ·scale + bias + mask)·v`` runs as one ``scaled_dot_product_attention`` call with the
    bias and mask as its additive ``attn_mask`` (equal to the explicit computation to float rounding).
    """

    def __init__(
        self,
        dim: int,
        win: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.win = win
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * win - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(win))
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = LinearProjection(dim, num_heads, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self) -> torch.Tensor:
        """The relative-position bias of one window, heads×N×N."""
        tokens = self.win * self.win
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(tokens, tokens, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend within each window of x ((B·nW)×N×C); ``mask`` (nW×N×N) is added to the logits."""
        windows, tokens = x.shape[:2]
        q, k, v = self.qkv(x)
        bias = self.position_bias()
        if mask is not None:
            # Windows are grouped per image, so fold them into the head axis to broadcast the mask.
            num_windows = mask.shape[0]
            bias = (bias[None] + mask[:, None]).flatten(0, 1)
            q, k, v = (t.reshape(windows // num_windows, -1, tokens, t.shape[-1]) for t in (q, k, v))
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias.to(q.dtype)[None],  # 4-D: lets CPU use its fused kernel
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        out = out.reshape(windows, self.num_heads, tokens, -1).transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(out))


class CrossAttention(nn.Module):
    """Attention of every token to a shared set of learned rows (the official ``Attention``)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.qkv = LinearProjection(dim, num_heads, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """x: B×L×C tokens; kv: M×C rows shared by the batch."""
        q, k, v = self.qkv(x, kv)
        dropout = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))


class LeFF(nn.Module):
    """Locally-enhanced feed-forward: linear, GELU, 3×3 depthwise conv, GELU, linear (on B×H×W×C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU())
        self.dwconv = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size=3, padding=1, groups=hidden_dim), nn.GELU()
        )
        self.linear2 = nn.Sequential(nn.Linear(hidden_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear1(x)
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.linear2(x)


class Mlp(nn.Module):
    """Plain two-layer feed-forward (``token_mlp="ffn"``); dropout after each linear layer."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LeWinTransformerBlock(nn.Module):
    """(Shifted-)window attention with an optional learned modulator, then a feed-forward; B×H×W×C."""

    def __init__(
        self,
        dim: int,
        input_resolution: int,
        num_heads: int,
        win_size: int = 8,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        token_mlp: str = "leff",
        modulator: bool = False,
        cross_modulator: bool = False,
    ) -> None:
        super().__init__()
        # A stage no larger than a window (at training size) uses one window and no shift.
        if input_resolution <= win_size:
            shift_size, self.win = 0, input_resolution
        else:
            self.win = win_size
        self.shift = shift_size
        # The official modulators are sized by the configured window, not the one in use.
        self.modulator = nn.Embedding(win_size * win_size, dim) if modulator else None
        if cross_modulator:
            self.cross_modulator = nn.Embedding(win_size * win_size, dim)
            self.cross_attn = CrossAttention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
            # Created (and stored in checkpoints) by the official code, which never applies it.
            self.norm_cross = nn.LayerNorm(dim)
        else:
            self.cross_modulator = None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, self.win, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _token_mlp(token_mlp, dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cross_modulator is not None:
            batch, height, width, channels = x.shape
            tokens = x.reshape(batch, height * width, channels)
            x = x + self.cross_attn(tokens, self.cross_modulator.weight).view_as(x)
        x = x + self.drop_path(self._window_attention(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise, shift, attend within windows (plus modulator), and shift back."""
        height, width = x.shape[1:3]
        x = self.norm1(x)
        mask = None
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shift_attention_mask(height, width, self.win, self.shift, x.device)
        windows = window_partition(x, self.win)
        if self.modulator is not None:
            windows = windows + self.modulator.weight
        x = window_reverse(self.attn(windows, mask), self.win, height, width)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        return x


def _token_mlp(kind: str, dim: int, hidden_dim: int, drop: float) -> nn.Module:
    if kind == "leff":
        return LeFF(dim, hidden_dim)
    if kind in ("ffn", "mlp"):
        return Mlp(dim, hidden_dim, drop)
    raise ValueError(f"unsupported token_mlp {kind!r}; expected 'leff', 'ffn' or 'mlp'")


class BasicUformerLayer(nn.Module):
    """A stage: ``depth`` blocks at one resolution, every second one shifted when ``shift_flag``."""

    def __init__(
        self,
        dim: int,
        input_resolution: int,
        depth: int,
        num_heads: int,
        win_size: int,
        drop_path: Sequence[float],
        shift_flag: bool = True,
        use_checkpoint: bool = False,
        **block_kwargs: object,
    ) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            LeWinTransformerBlock(
                dim,
                input_resolution,
                num_heads,
                win_size=win_size,
                shift_size=win_size // 2 if shift_flag and i % 2 else 0,
                drop_path=drop_path[i],
                **block_kwargs,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.use_checkpoint else block(x)
        return x


class Downsample(nn.Module):
    """Halve the resolution with a 4×4 stride-2 convolution; B×H×W×C in and out."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channel, out_channel, kernel_size=4, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A channels-last view in gives a channels-last result, so neither permute copies.
        return self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Upsample(nn.Module):
    """Double the resolution with a 2×2 stride-2 transposed convolution; B×H×W×C in and out."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.deconv = nn.Sequential(nn.ConvTranspose2d(in_channel, out_channel, kernel_size=2, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class InputProj(nn.Module):
    """3×3 convolution and LeakyReLU from the B×C×H×W image to B×H×W×C tokens."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(in_channel, out_channel, 3, padding=1), nn.LeakyReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class OutputProj(nn.Module):
    """3×3 convolution from B×H×W×C tokens to a B×C×H×W image."""

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_channel, out_channel, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.permute(0, 3, 1, 2))


class Uformer(nn.Module):
    """The official Uformer: a 4-level U-Net of LeWin stages, predicting a residual when ``dd_in == 3``.

    Keyword names and defaults follow the official constructor, except ``img_size``, which defaults to the
    128 that every official training and test script passes (the official class default is 256).
    Only ``token_projection="linear"`` (that of all released models) is implemented.
    """

    def __init__(
        self,
        img_size: int = 128,
        in_chans: int = 3,
        dd_in: int = 3,
        embed_dim: int = 32,
        depths: Sequence[int] = (2, 2, 2, 2, 2, 2, 2, 2, 2),
        num_heads: Sequence[int] = (1, 2, 4, 8, 16, 16, 8, 4, 2),
        win_size: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        use_checkpoint: bool = False,
        token_projection: str = "linear",
        token_mlp: str = "leff",
        shift_flag: bool = True,
        modulator: bool = False,
        cross_modulator: bool = False,
    ) -> None:
        super().__init__()
        if token_projection != "linear":
            raise ValueError(f"unsupported token_projection {token_projection!r}; only 'linear' is")
        if len(depths) != 9 or len(num_heads) != 9:
            raise ValueError("depths and num_heads need 9 entries (4 encoder, bottleneck, 4 decoder stages)")
        self.dd_in = dd_in
        self.size_multiple = 16 * win_size
        enc_dpr = torch.linspace(0, drop_path_rate, sum(depths[:4]), device="cpu").tolist()
        dec_dpr = enc_dpr[::-1]

        def stage(
            level: int, dim: int, resolution: int, drop_path: Sequence[float], **extra: bool
        ) -> nn.Module:
            return BasicUformerLayer(
                dim,
                resolution,
                depths[level],
                num_heads[level],
                win_size,
                drop_path,
                shift_flag=shift_flag,
                use_checkpoint=use_checkpoint,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                token_mlp=token_mlp,
                **extra,
            )

        self.input_proj = InputProj(dd_in, embed_dim)
        self.output_proj = OutputProj(2 * embed_dim, in_chans)
        self.pos_drop = nn.Dropout(drop_rate)
        for i in range(4):
            dim = embed_dim * 2**i
            drop_path = enc_dpr[sum(depths[:i]) : sum(depths[: i + 1])]
            self.add_module(f"encoderlayer_{i}", stage(i, dim, img_size // 2**i, drop_path))
            self.add_module(f"dowsample_{i}", Downsample(dim, 2 * dim))
        self.conv = stage(4, embed_dim * 16, img_size // 16, [drop_path_rate] * depths[4])
        for i in range(4):
            dim = embed_dim * 2 ** (4 - i)  # after concatenating the skip connection
            in_channel = embed_dim * 16 if i == 0 else 2 * dim
            drop_path = dec_dpr[sum(depths[5 : 5 + i]) : sum(depths[5 : 6 + i])]
            self.add_module(f"upsample_{i}", Upsample(in_channel, dim // 2))
            self.add_module(
                f"decoderlayer_{i}",
                stage(
                    5 + i,
                    dim,
                    img_size // 2 ** (3 - i),
                    drop_path,
                    modulator=modulator,
                    cross_modulator=cross_modulator,
                ),
            )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×dd_in×H×W (H, W multiples of ``16 * win_size``) to B×in_chans×H×W."""
        height, width = x.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"Uformer needs sides that are multiples of {self.size_multiple}, got {height}×{width}"
            )
        y = self.pos_drop(self.input_proj(x))
        skips = []
        for i in range(4):
            y = self.get_submodule(f"encoderlayer_{i}")(y)
            skips.append(y)
            y = self.get_submodule(f"dowsample_{i}")(y)
        y = self.conv(y)
        for i in range(4):
            y = torch.cat([self.get_submodule(f"upsample_{i}")(y), skips.pop()], dim=-1)
            y = self.get_submodule(f"decoderlayer_{i}")(y)
        y = self.output_proj(y)
        return x + y if self.dd_in == 3 else y


def _init_weights(module: nn.Module) -> None:
    """The official initialisation (linear layers truncated-normal, layer norms identity)."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# Uformer-B as the official GoPro/HIDE test script builds it.
UFORMER_B_GOPRO = {
    "img_size": 128,
    "embed_dim": 32,
    "win_size": 8,
    "token_projection": "linear",
    "token_mlp": "leff",
    "depths": (1, 2, 8, 8, 2, 8, 8, 2, 1),
    "modulator": True,
    "dd_in": 3,
}

# Every setting of Uformer(...) and its constructor default (Uformer-B: embed_dim 32, depths up to 8).
_SCHEMA = {
    "img_size": ConfigField("int", 128, 16, 8192),
    "in_chans": ConfigField("int", 3, 1, 64),
    "dd_in": ConfigField("int", 3, 1, 64),
    "embed_dim": ConfigField("int", 32, 1, 1024),
    "depths": ConfigField("ints", (2,) * 9, 0, 64, length=(9, 9)),
    "num_heads": ConfigField("ints", (1, 2, 4, 8, 16, 16, 8, 4, 2), 1, 256, length=(9, 9)),
    "win_size": ConfigField("int", 8, 1, 64),
    "mlp_ratio": ConfigField("float", 4.0, 0.1, 16),
    "qkv_bias": ConfigField("bool", True),
    "qk_scale": ConfigField("float", None, 0, 100, nullable=True),
    "drop_rate": ConfigField("float", 0.0, 0, 1),
    "attn_drop_rate": ConfigField("float", 0.0, 0, 1),
    "drop_path_rate": ConfigField("float", 0.1, 0, 1),
    "use_checkpoint": ConfigField("bool", False),
    "token_projection": ConfigField("str", "linear", choices=("linear",)),
    "token_mlp": ConfigField("str", "leff", choices=("leff", "ffn", "mlp")),
    "shift_flag": ConfigField("bool", True),
    "modulator": ConfigField("bool", False),
    "cross_modulator": ConfigField("bool", False),
}


def _check_config(config: Mapping[str, Any]) -> str | None:
    """Each of the nine stages splits its channels evenly into heads; the token MLP keeps a hidden channel."""
    # Encoders 1..8×, bottleneck 16×, decoders 16..2× (after concatenating the skip).
    heads = check_heads(config, "num_heads", "embed_dim", "stage", lambda stage: 2 ** min(stage, 9 - stage))
    return heads or check_hidden(config, "mlp_ratio", "embed_dim")


register(
    Architecture(
        name="uformer",
        build=Uformer,
        # The official test pads centred with zeros to a square whose side is a multiple of 128.
        size_rule=SizeRule(multiple=128, square=True, pad_mode="constant", centred=True),
        precisions=("fp32", "bf16", "fp16"),  # verified in tests/test_arch_uformer.py
        # Tiles must be squares of side 128·k, the inputs the official procedure feeds the network.
        min_tile=128,
        default_config=UFORMER_B_GOPRO,
        summary="Uformer-B (CVPR 2022): U-shaped LeWin transformer with shifted windows and modulators.",
        pixel_loss="charbonnier",
        config_schema=_SCHEMA,
        check_config=_check_config,
    )
)
