"""NAFNet and NAFNetLocal (TLC): parity with the official outputs, checkpoint layout, sizes, precisions."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from golden_files import GOLDEN
from torch.nn import functional as F

from deblurkit.archs import ARCHITECTURES, Architecture
from deblurkit.archs import nafnet as nafnet_module
from deblurkit.archs.nafnet import LayerNorm2d, NAFNet, NAFNetLocal, tlc_kernel_sizes
from deblurkit.zoo.restorer import Restorer

GOPRO = {"middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 28], "dec_blk_nums": [1, 1, 1, 1]}
TINY = {"img_channel": 3, "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}

needs_golden = pytest.mark.usefixtures("golden")  # skips without the files (fails under DEBLURKIT_CI=1)


def _load_golden(filename: str, name: str) -> tuple[Restorer, dict[str, torch.Tensor], dict[str, Any]]:
    """The golden network (official weights, strict) wrapped in a Restorer, its tensors and meta."""
    from safetensors import safe_open

    with safe_open(str(GOLDEN / filename), "pt") as golden:
        meta = json.loads(golden.metadata()["meta"])
        tensors = {key: golden.get_tensor(key) for key in golden.keys()}  # noqa: SIM118
    architecture = ARCHITECTURES[name]
    network = architecture.build(**meta["config"]).eval()
    weights = {key.removeprefix("weights/"): t for key, t in tensors.items() if key.startswith("weights/")}
    network.load_state_dict(weights, strict=True)
    return Restorer(network, architecture, meta["config"]), tensors, meta


def _tiny(name: str, seed: int = 0) -> Restorer:
    """A small network with random weights (non-zero residual scales) wrapped in a Restorer."""
    torch.manual_seed(seed)
    architecture = ARCHITECTURES[name]
    config = {**TINY, "train_size": 16} if name == "nafnet-local" else TINY
    network = architecture.build(**config).eval()
    with torch.no_grad():
        for key, param in network.named_parameters():
            if key.endswith(("beta", "gamma")):
                param.normal_(1.0, 0.2)
    return Restorer(network, architecture, config)


# --- parity with the official outputs ------------------------------------------------------------


@needs_golden
@pytest.mark.parametrize(
    ("filename", "name", "case"),
    [
        ("nafnet.safetensors", "nafnet", "a"),
        ("nafnet.safetensors", "nafnet", "b"),
        ("nafnet_local.safetensors", "nafnet-local", "a"),
        ("nafnet_local.safetensors", "nafnet-local", "c"),
    ],
)
def test_matches_official_outputs(filename: str, name: str, case: str) -> None:
    restorer, tensors, _ = _load_golden(filename, name)
    with torch.inference_mode():
        out = restorer(tensors[f"input_{case}"])
    expected = tensors[f"output_{case}"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() <= 1e-5


@needs_golden
def test_tlc_golden_exercises_local_windows() -> None:
    """On input_c the plain output is further from the TLC golden than the parity tolerance.

    (The golden weights have small residual scales, so the difference is small but well resolved.)
    """
    plain, _, _ = _load_golden("nafnet.safetensors", "nafnet")
    _, tensors, meta = _load_golden("nafnet_local.safetensors", "nafnet-local")
    assert meta["config"]["train_size"][-2:] == [256, 256]
    with torch.inference_mode():
        out = plain(tensors["input_c"])
    assert (out - tensors["output_c"]).abs().max().item() > 4e-5


def test_autograd_path_equals_inference_path() -> None:
    """The in-place shortcuts taken without autograd do not change the result; backward works."""
    restorer = _tiny("nafnet-local")
    image = torch.rand(2, 3, 40, 52)
    with torch.inference_mode():
        expected = restorer(image)
    out = restorer(image)
    out.square().mean().backward()
    assert torch.allclose(out.detach(), expected, atol=1e-6)
    assert all(p.grad is not None for p in restorer.network.parameters())


def test_box_sum_variants_agree() -> None:
    x = torch.randn(2, 5, 37, 29, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for dim, k in [(2, 1), (2, 13), (3, 28), (3, 29)]:
        expected = x.unfold(dim, k, 1).sum(-1)
        sliding = nafnet_module._box_sum_sliding(x, dim, k) if k < x.shape[dim] else x.sum(dim, True)
        cumsum = nafnet_module._box_sum_cumsum(x, dim, k) if k < x.shape[dim] else x.sum(dim, True)
        torch.testing.assert_close(sliding, expected)
        torch.testing.assert_close(cumsum, expected)


def test_local_mean_equals_avg_pool_with_replicate_padding() -> None:
    """Independent check of the TLC pool: avg_pool2d (stride 1), then replicate padding, centred."""
    x = torch.randn(1, 3, 21, 30)
    pool = nafnet_module.LocalMean((8, 11))
    pooled = F.avg_pool2d(x, (8, 11), stride=1)
    expected = F.pad(pooled, (5, 5, 3, 4), mode="replicate") * x
    torch.testing.assert_close(nafnet_module._multiply_replicated(x.clone(), pool(x)), expected)
    with torch.inference_mode():
        torch.testing.assert_close(nafnet_module._multiply_replicated(x.clone(), pool(x)), expected)


# --- configuration and checkpoint layout ---------------------------------------------------------


def test_tlc_kernel_sizes_match_official_dummy_forward() -> None:
    expected = [(384, 384), (192, 192), (96, 96), (48, 48), (24, 24)]
    assert tlc_kernel_sizes(256, 4) == expected
    assert tlc_kernel_sizes((1, 3, 256, 256), 4) == expected
    # 200 is padded to 208 by the official forward before the feature sizes are measured
    assert tlc_kernel_sizes(200, 4)[0] == (208 * 300 // 200,) * 2


def test_registry_entries() -> None:
    plain, local = ARCHITECTURES["nafnet"], ARCHITECTURES["nafnet-local"]
    assert isinstance(plain, Architecture)
    assert plain.size_rule_for(plain.default_config).multiple == 16
    assert plain.size_rule_for({"enc_blk_nums": [1, 1]}).multiple == 4
    assert local.default_config["train_size"] == 256
    assert local.min_tile > tlc_kernel_sizes(256, 4)[0][0]
    assert plain.min_tile == 64
    with pytest.raises(ValueError, match="fast_imp"):
        NAFNetLocal(**TINY, fast_imp=True)


@needs_golden
@pytest.mark.parametrize(("key", "width"), [("nafnet-gopro-width32", 32), ("nafnet-gopro-width64", 64)])
@pytest.mark.parametrize("network_class", [NAFNet, NAFNetLocal])
def test_official_state_dict_layout(key: str, width: int, network_class: type[NAFNet]) -> None:
    official = json.loads((GOLDEN / "official_state_dict_shapes.json").read_text())[key]
    with torch.device("meta"):
        network = network_class(img_channel=3, width=width, **GOPRO)
    ours = {name: list(t.shape) for name, t in network.state_dict().items()}
    assert ours == {name: list(shape) for name, shape in official.items()}
    network.load_state_dict({k: torch.empty(s, device="meta") for k, s in official.items()}, strict=True)


# --- any input size ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nafnet", "nafnet-local"])
@pytest.mark.parametrize("size", [(1, 1), (1, 17), (33, 5), (16, 16), (23, 41)])
def test_any_size_keeps_shape(name: str, size: tuple[int, int]) -> None:
    restorer = _tiny(name)
    with torch.inference_mode():
        out = restorer(torch.rand(1, 3, *size))
    assert out.shape == (1, 3, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["nafnet", "nafnet-local"])
def test_batch_equals_single_images(name: str) -> None:
    restorer = _tiny(name)
    images = torch.rand(3, 3, 29, 37)
    with torch.inference_mode():
        batch = restorer(images)
        singles = torch.cat([restorer(image[None]) for image in images])
    torch.testing.assert_close(batch, singles, atol=1e-6, rtol=0)


def test_bare_network_rejects_unpadded_sizes() -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        NAFNet(**TINY)(torch.rand(1, 3, 10, 12))


# --- precisions ----------------------------------------------------------------------------------


def _official_layer_norm(x: torch.Tensor, norm: LayerNorm2d) -> torch.Tensor:
    """The official LayerNormFunction arithmetic, in the input's dtype."""
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    y = (x - mu) / (var + norm.eps).sqrt()
    return norm.weight.view(1, -1, 1, 1).to(x.dtype) * y + norm.bias.view(1, -1, 1, 1).to(x.dtype)


def test_naive_fp16_variance_overflows_but_ours_does_not() -> None:
    """Deep NAFNet features reach hundreds; their squares exceed fp16's 65504."""
    torch.manual_seed(0)
    norm = LayerNorm2d(64)
    features = 400 * torch.randn(1, 64, 8, 8)
    expected = norm(features)
    naive = _official_layer_norm(features.half(), norm)
    assert torch.isinf((features.half() - features.half().mean(1, keepdim=True)).pow(2)).any()
    assert (naive.float() - expected).abs().max().item() > 0.5  # inf variance: normalised to ~0
    ours = norm(features.half())
    assert ours.dtype == torch.float16
    assert (ours.float() - expected).abs().max().item() < 1e-2


@needs_golden
@pytest.mark.parametrize(
    ("filename", "name", "case"),
    [("nafnet.safetensors", "nafnet", "a"), ("nafnet_local.safetensors", "nafnet-local", "c")],
)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float16, 2e-3), (torch.bfloat16, 1.5e-2)])
def test_autocast_close_to_fp32(
    filename: str, name: str, case: str, dtype: torch.dtype, tolerance: float
) -> None:
    """fp16/bf16 autocast stays close to fp32 with features in the hundreds.

    ``feature_scale`` multiplies every feature of the network without changing its function: the
    intro conv, the residual scales and the down-sampling biases are scaled up (each block's layer
    norm is scale-invariant, the up-sampling convs have no bias) and the ending conv scaled down.
    """
    feature_scale = 300.0
    restorer, tensors, _ = _load_golden(filename, name)
    with torch.no_grad():
        for key, param in restorer.network.named_parameters():
            if (
                key.startswith("intro.")
                or key.endswith(("beta", "gamma"))
                or (key.startswith("downs.") and key.endswith("bias"))
            ):
                param.mul_(feature_scale)
        restorer.network.ending.weight.div_(feature_scale)
    image = tensors[f"input_{case}"]
    with torch.inference_mode():
        expected = restorer(image)
        with torch.autocast("cpu", dtype=dtype):
            out = restorer(image)
    assert (expected - tensors[f"output_{case}"]).abs().max().item() < 1e-4
    assert out.dtype == torch.float32
    assert (out - expected).abs().max().item() < tolerance
