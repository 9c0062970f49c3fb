"""Uformer: parity with the official code (golden data), official state-dict shapes, sizes, precisions."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from golden_files import golden_file
from safetensors import safe_open

from deblurkit.archs import get_architecture
from deblurkit.archs.uformer import LeWinTransformerBlock, Uformer
from deblurkit.zoo.restorer import Restorer

ARCH = get_architecture("uformer")
# The configuration of the golden data: every stage one block deep, so no block shifts its windows.
SMALL = {"img_size": 128, "embed_dim": 8, "depths": (1,) * 9, "modulator": True}


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    with safe_open(golden_file("uformer.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
        names = [k for k in f.keys() if k.startswith("weights/")]  # noqa: SIM118 (not a dict)
        weights = {k.removeprefix("weights/"): f.get_tensor(k) for k in names}
        return {
            "meta": meta,
            "weights": weights,
            "input": f.get_tensor("input"),
            "output": f.get_tensor("output"),
        }


@pytest.fixture(scope="module")
def golden_restorer(golden: dict[str, Any]) -> Restorer:
    config = golden["meta"]["config"]
    network = ARCH.build(**config).eval()
    network.load_state_dict(golden["weights"], strict=True)
    return Restorer(network, ARCH, config)


def test_matches_official_output(golden: dict[str, Any], golden_restorer: Restorer) -> None:
    # 120×200 pads to 256×256 although img_size is 128: the bottleneck keeps the img_size geometry.
    assert golden["input"].shape[-2:] == (120, 200)
    with torch.no_grad():
        out = golden_restorer(golden["input"])
    assert (out - golden["output"]).abs().max().item() <= 1e-5


def _expand2square(x: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official test's padding: zeros to a centred square of side a multiple of ``factor``, and a mask."""
    height, width = x.shape[-2:]
    side = math.ceil(max(height, width) / factor) * factor
    top, left = (side - height) // 2, (side - width) // 2
    image = torch.zeros(1, 3, side, side)
    mask = torch.zeros(1, 1, side, side)
    image[:, :, top : top + height, left : left + width] = x
    mask[:, :, top : top + height, left : left + width] = 1
    return image, mask


@pytest.mark.parametrize("size", [(7, 13), (100, 3)])
def test_padding_and_crop_follow_official_procedure(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    network = Uformer(**SMALL).eval()
    x = torch.rand(1, 3, *size)
    image, mask = _expand2square(x, factor=128)
    with torch.no_grad():
        official = torch.masked_select(network(image), mask.bool()).reshape(1, 3, *size)
        ours = Restorer(network, ARCH, SMALL)(x)
    assert torch.equal(ours, official)


def test_official_state_dict_names_and_shapes() -> None:
    with golden_file("official_state_dict_shapes.json").open() as f:
        official = json.load(f)["uformer-b"]
    with torch.device("meta"):
        network = ARCH.build(**ARCH.default_config)
    assert {name: list(t.shape) for name, t in network.state_dict().items()} == official


def test_img_size_sets_window_shifts() -> None:
    with torch.device("meta"):
        trained_size = Uformer(**ARCH.default_config)
        larger = Uformer(**{**ARCH.default_config, "img_size": 256})
    # Official rule: a stage whose training-size resolution fits in one window never shifts.
    assert [(b.win, b.shift) for b in trained_size.conv.blocks] == [(8, 0), (8, 0)]
    assert [(b.win, b.shift) for b in larger.conv.blocks] == [(8, 0), (8, 4)]
    assert [b.shift for b in trained_size.decoderlayer_0.blocks] == [0, 4] * 4


def _official_block(block: LeWinTransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """The official LeWin block computation, step by step with an explicit softmax (B×H×W×C)."""
    batch, height, width, channels = x.shape
    win, shift, attn = block.win, block.shift, block.attn
    heads, tokens = attn.num_heads, win * win

    def windows_of(t: torch.Tensor) -> torch.Tensor:
        t = t.view(t.shape[0], height // win, win, width // win, win, t.shape[-1])
        return t.permute(0, 1, 3, 2, 4, 5).reshape(-1, tokens, t.shape[-1])

    y = block.norm1(x)
    if shift:
        regions = torch.zeros(1, height, width, 1)
        bands = (slice(0, -win), slice(-win, -shift), slice(-shift, None))
        for label, (rows, cols) in enumerate((r, c) for r in bands for c in bands):
            regions[:, rows, cols, :] = label
        labels = windows_of(regions).squeeze(-1)
        mask = labels[:, None, :] - labels[:, :, None]
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
    w = windows_of(y) + block.modulator.weight
    q = attn.qkv.to_q(w).view(-1, tokens, heads, channels // heads).transpose(1, 2)
    k, v = attn.qkv.to_kv(w).view(-1, tokens, 2, heads, channels // heads).permute(2, 0, 3, 1, 4)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)]
    logits = logits + bias.view(tokens, tokens, heads).permute(2, 0, 1)[None]
    if shift:
        logits = (logits.view(batch, -1, heads, tokens, tokens) + mask[None, :, None]).flatten(0, 1)
    out = attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(-1, tokens, channels))
    out = out.view(batch, height // win, width // win, win, win, channels)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, channels)
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
    x = x + out
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize(("shift", "size"), [(0, (32, 32)), (4, (32, 32)), (4, (24, 40))])
def test_window_attention_equals_explicit_softmax(shift: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    block = LeWinTransformerBlock(16, 64, num_heads=2, win_size=8, shift_size=shift, modulator=True)
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()  # large enough that a wrong index shows
    x = torch.randn(2, *size, 16, requires_grad=True)
    ours, official = block(x), _official_block(block, x)
    assert (ours - official).abs().max().item() <= 1e-5
    table = block.attn.relative_position_bias_table
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), table)
    (grad_official,) = torch.autograd.grad(official.square().sum(), table)
    torch.testing.assert_close(grad_ours, grad_official, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (2, 3, 7, 13), (1, 3, 128, 128), (1, 3, 5, 129)])
def test_any_size_and_batch(shape: tuple[int, ...]) -> None:
    restorer = Restorer(Uformer(**SMALL).eval(), ARCH, SMALL)
    x = torch.rand(shape)
    with torch.no_grad():
        assert restorer(x).shape == x.shape


def test_network_rejects_sizes_off_the_grid() -> None:
    with pytest.raises(ValueError, match="multiples of 128"):
        Uformer(**SMALL)(torch.zeros(1, 3, 128, 96))


def test_optional_official_variants_run() -> None:
    network = Uformer(**SMALL, token_mlp="ffn", cross_modulator=True, shift_flag=False).eval()
    assert "decoderlayer_0.blocks.0.norm_cross.weight" in network.state_dict()
    with torch.no_grad():
        assert network(torch.rand(1, 3, 128, 128)).shape == (1, 3, 128, 128)


# Measured on the golden weights (max / mean abs error vs fp32): bf16 3.8e-3 / 5.2e-4,
# fp16 3.8e-4 / 7.2e-5; random-init Uformer-B at 256×256 behaves the same.
TOLERANCES = {"bf16": (1e-2, 1e-3), "fp16": (2e-3, 2e-4)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def test_claimed_precisions() -> None:
    assert ARCH.precisions == ("fp32", "bf16", "fp16")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_stays_close_to_fp32(
    precision: str, golden: dict[str, Any], golden_restorer: Restorer
) -> None:
    with torch.no_grad(), torch.autocast("cpu", dtype=DTYPES[precision]):
        out = golden_restorer(golden["input"]).float()
    error = (out - golden["output"]).abs()
    max_tol, mean_tol = TOLERANCES[precision]
    assert torch.isfinite(out).all()
    assert error.max().item() <= max_tol
    assert error.mean().item() <= mean_tol
