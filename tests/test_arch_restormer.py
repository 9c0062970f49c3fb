"""Restormer: parity with the official implementation, official key names, any size, precisions."""

from __future__ import annotations

import json

import pytest
import torch
from golden_files import golden_file
from torch.nn import functional as F

from deblurkit.archs import ARCHITECTURES
from deblurkit.archs.restormer import Attention, LayerNorm, Restormer
from deblurkit.zoo.restorer import Restorer

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Max abs error against the fp32 golden output of the tiny golden network (observed: 4e-3, 5e-4).
AUTOCAST_TOLERANCE = {"bf16": 2e-2, "fp16": 3e-3}
SMALL_CONFIG = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1}
FP16_MAX = torch.finfo(torch.float16).max

# Importing the module registers the architecture.
ARCH = ARCHITECTURES["restormer"]


@pytest.fixture(scope="module")
def golden() -> dict:
    """The golden Restorer (official weights, strict load), its input and the official output."""
    from safetensors import safe_open

    with safe_open(str(golden_file("restormer.safetensors")), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
        prefix, names = "weights/", f.keys()  # safe_open is not iterable
        weights = {k[len(prefix) :]: f.get_tensor(k) for k in names if k.startswith(prefix)}
        x, expected = f.get_tensor("input"), f.get_tensor("output")
    network = ARCH.build(**meta["config"]).eval()
    network.load_state_dict(weights, strict=True)
    restorer = Restorer(network, ARCH, meta["config"]).eval()
    return {"restorer": restorer, "input": x, "output": expected}


def test_golden_parity_fp32(golden: dict) -> None:
    with torch.no_grad():
        out = golden["restorer"](golden["input"])
    assert out.shape == golden["output"].shape
    assert (out - golden["output"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("precision", ARCH.precisions)
def test_claimed_precisions_match_fp32(golden: dict, precision: str) -> None:
    with torch.no_grad():
        if precision == "fp32":
            out = golden["restorer"](golden["input"])
        else:
            with torch.autocast("cpu", dtype=AUTOCAST_DTYPES[precision]):
                out = golden["restorer"](golden["input"])
    assert torch.isfinite(out).all()
    error = (out.float() - golden["output"]).abs().max().item()
    assert error <= AUTOCAST_TOLERANCE.get(precision, 1e-5), f"{precision}: max abs error {error}"


def test_official_state_dict_shapes_load_strictly() -> None:
    shapes = json.loads(golden_file("official_state_dict_shapes.json").read_text())["restormer"]
    with torch.device("meta"):
        network = ARCH.build(**ARCH.default_config)
    ours = {name: list(t.shape) for name, t in network.state_dict().items()}
    assert ours == shapes


def test_default_config_is_the_official_signature() -> None:
    assert dict(ARCH.default_config) == {
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
    }


@pytest.mark.parametrize(
    ("batch", "height", "width"), [(1, 1, 1), (1, 3, 5), (2, 17, 9), (2, 8, 24), (1, 1, 30)]
)
def test_any_size_keeps_shape(batch: int, height: int, width: int) -> None:
    torch.manual_seed(0)
    restorer = Restorer(Restormer(**SMALL_CONFIG), ARCH, SMALL_CONFIG).eval()
    x = torch.rand(batch, 3, height, width)
    with torch.no_grad():
        out = restorer(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_size_rule_is_the_official_reflect_pad() -> None:
    x = torch.rand(1, 3, 13, 22)
    padded, offset = ARCH.size_rule_for(ARCH.default_config).pad(x)
    assert offset == (0, 0)
    assert torch.equal(padded, F.pad(x, (0, 2, 0, 3), mode="reflect"))


def test_dual_pixel_variant() -> None:
    config = {**SMALL_CONFIG, "inp_channels": 6, "dual_pixel_task": True}
    network = Restormer(**config).eval()
    assert network.skip_conv.weight.shape == (16, 8, 1, 1)
    with torch.no_grad():
        out = network(torch.rand(2, 6, 16, 24))
    assert out.shape == (2, 3, 16, 24)


def _reference_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Layer norm over the channels written as the official (B, H·W, C) formula."""
    b, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    variance = tokens.var(-1, keepdim=True, unbiased=False)
    centred = tokens if bias is None else tokens - tokens.mean(-1, keepdim=True)
    normed = centred / torch.sqrt(variance + 1e-5) * weight
    if bias is not None:
        normed = normed + bias
    return normed.transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("kind", ["WithBias", "BiasFree"])
def test_layer_norm_equals_official_formula(kind: str) -> None:
    torch.manual_seed(0)
    norm = LayerNorm(24, kind)
    with torch.no_grad():
        norm.body.weight.uniform_(0.5, 1.5)
        if norm.body.bias is not None:
            norm.body.bias.normal_()
    assert (norm.body.bias is None) == (kind == "BiasFree")
    x = torch.randn(2, 24, 7, 9) * 3 + 1
    with torch.no_grad():
        out = norm(x)
        expected = _reference_layer_norm(x, norm.body.weight, norm.body.bias)
    assert (out - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("kind", ["WithBias", "BiasFree"])
def test_layer_norm_fp16_does_not_overflow(kind: str) -> None:
    """Activations whose square exceeds the fp16 range still normalise correctly under fp16 autocast."""
    torch.manual_seed(0)
    norm = LayerNorm(16, kind)
    x = torch.randn(1, 16, 8, 8) * 2000 + 300
    assert (x.var(dim=1) > FP16_MAX).any()
    with torch.no_grad():
        expected = norm(x)
        with torch.autocast("cpu", dtype=torch.float16):
            out = norm(x.half())
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, atol=1e-2, rtol=1e-2)


def test_attention_fp16_normalises_in_fp32() -> None:
    """Query/key norms over H·W pixels exceed the fp16 range; fp16 autocast must still match fp32."""
    torch.manual_seed(0)
    attention = Attention(8, num_heads=2, bias=False).eval()
    x = torch.randn(1, 8, 64, 64) * 6000
    with torch.no_grad():
        q_norm = attention.qkv_dwconv(attention.qkv(x))[:, :8].flatten(2).norm(dim=-1)
        assert (q_norm > FP16_MAX).any()
        expected = attention(x)
        with torch.autocast("cpu", dtype=torch.float16):
            out = attention(x.half())
    assert torch.isfinite(out).all()
    scale = expected.abs().max().item()
    torch.testing.assert_close(out.float(), expected, atol=5e-3 * scale, rtol=1e-2)
