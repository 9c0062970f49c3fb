"""Losses: golden parity with the official MAE loss code, variants, pixel losses, VGG, composition."""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import pytest
import torch
from golden_files import GOLDEN as SHARED_GOLDEN
from golden_files import missing
from tinymodels import TINY_VIT as TINY
from torch import nn
from torch.nn import functional as F

from deblurkit.errors import DeblurkitError, WeightsError
from deblurkit.losses import (
    CharbonnierLoss,
    L1Loss,
    MAEGlobalLoss,
    MAELocalLoss,
    PSNRLoss,
    VGGFeatures,
    VGGPerceptualLoss,
    build_loss,
    global_distance,
    load_vgg,
)
from deblurkit.losses.encoders import ViTEncoder, load_encoder
from deblurkit.losses.vgg import VGG19_LAYERS

GOLDEN = Path(os.environ.get("DEBLURKIT_GOLDEN", SHARED_GOLDEN))
MAE_GOLDEN = GOLDEN / "mae_losses.safetensors"


@functools.cache
def _golden() -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(MAE_GOLDEN), "pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
        assert "depth 6" in meta["encoder"]
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


@pytest.fixture(scope="module")
def mae_golden() -> dict[str, torch.Tensor]:
    if not MAE_GOLDEN.is_file():
        missing(f"golden file {MAE_GOLDEN} not available")
    return _golden()


@pytest.fixture(scope="module")
def golden_encoder(mae_golden) -> ViTEncoder:
    state = {k[len("weights/") :]: v for k, v in mae_golden.items() if k.startswith("weights/")}
    return load_encoder(TINY, weights=state)


@pytest.fixture(scope="module")
def tiny_encoder() -> ViTEncoder:
    import timm

    kwargs = {k: v for k, v in TINY.items() if k != "timm_model"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, **kwargs)
    return load_encoder(TINY, weights=vit.state_dict())


def _pair(batch: int = 2, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, 3, size, size, generator=gen)
    restored = (target + 0.1 * torch.randn(batch, 3, size, size, generator=gen)).clamp(0, 1)
    return restored, target


def _max_rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


# -- golden parity ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["r00", "r50"])
@pytest.mark.parametrize(("kind", "spec"), [("local", "0.1*mae_local"), ("global", "1e-4*mae_global")])
def test_golden_parity(mae_golden, golden_encoder, tag: str, kind: str, spec: str) -> None:
    ratio = "0" if tag == "r00" else "0.5"
    loss = build_loss(f"{spec}(ratio={ratio})", encoder=golden_encoder)
    restored = mae_golden["restored"].clone().requires_grad_(True)
    value = loss(restored, mae_golden["target"], ids=mae_golden[f"kept_ids_{tag}"])
    (grad,) = torch.autograd.grad(value, restored)
    expected = mae_golden[f"{kind}_{tag}"].reshape(())
    assert abs(float(value.detach()) / float(expected) - 1) <= 1e-5
    assert _max_rel(grad, mae_golden[f"grad_{kind}_{tag}"]) <= 1e-5


def test_golden_parity_shared_features(mae_golden, golden_encoder) -> None:
    """Local and global in one spec share one encoder pass and still match the golden values."""
    loss = build_loss("l1 + 0.1*mae_local + 1e-4*mae_global", encoder=golden_encoder)
    value = loss(mae_golden["restored"], mae_golden["target"], ids=mae_golden["kept_ids_r50"])
    assert abs(float(loss.terms["mae_local"]) / float(mae_golden["local_r50"]) - 1) <= 1e-5
    assert abs(float(loss.terms["mae_global"]) / float(mae_golden["global_r50"]) - 1) <= 1e-5
    l1 = F.l1_loss(mae_golden["restored"], mae_golden["target"])
    torch.testing.assert_close(value, l1 + loss.terms["mae_local"] + loss.terms["mae_global"])


# -- MAE losses -------------------------------------------------------------------------------------
def test_local_matches_definition(tiny_encoder: ViTEncoder) -> None:
    restored, target = _pair()
    ids = tiny_encoder.sample_ids(restored, 0.5)
    for p in (1, 2):
        term = MAELocalLoss(tiny_encoder, blocks=(2, 5), ratio=0.5, p=p)
        value = term(restored, target, ids=ids)
        fr = tiny_encoder(restored, blocks=(2, 5), ids=ids)
        ft = tiny_encoder(target, blocks=(2, 5), ids=ids)
        dist = F.l1_loss if p == 1 else F.mse_loss
        expected = sum(dist(a, b) for a, b in zip(fr, ft, strict=True))
        torch.testing.assert_close(value, expected)


def test_global_matches_definition() -> None:
    gen = torch.Generator().manual_seed(3)
    fr = [torch.randn(3, 5, 16, generator=gen) for _ in range(2)]
    ft = [torch.randn(3, 5, 16, generator=gen) for _ in range(2)]
    expected = sum(
        math.sqrt(F.mse_loss(a[:, t].sort(dim=1).values, b[:, t].sort(dim=1).values))
        for a, b in zip(fr, ft, strict=True)
        for t in range(5)
    )
    assert float(global_distance(fr, ft)) == pytest.approx(expected, rel=1e-6)
    per_image = sum(
        math.sqrt(F.mse_loss(a[i, t].sort().values, b[i, t].sort().values)) / 3
        for a, b in zip(fr, ft, strict=True)
        for t in range(5)
        for i in range(3)
    )
    assert float(global_distance(fr, ft, variant="per_image")) == pytest.approx(per_image, rel=1e-6)
    channels = sum(
        math.sqrt(F.mse_loss(a[:, :, c].sort(dim=1).values, b[:, :, c].sort(dim=1).values))
        for a, b in zip(fr, ft, strict=True)
        for c in range(16)
    )
    assert float(global_distance(fr, ft, variant="channels")) == pytest.approx(channels, rel=1e-6)
    p1 = sum(
        F.l1_loss(a[:, t].sort(dim=1).values, b[:, t].sort(dim=1).values).item()
        for a, b in zip(fr, ft, strict=True)
        for t in range(5)
    )
    assert float(global_distance(fr, ft, p=1)) == pytest.approx(p1, rel=1e-6)


def test_global_per_image_equals_official_for_batch_one() -> None:
    gen = torch.Generator().manual_seed(4)
    fr, ft = [torch.randn(1, 7, 12, generator=gen)], [torch.randn(1, 7, 12, generator=gen)]
    torch.testing.assert_close(global_distance(fr, ft), global_distance(fr, ft, variant="per_image"))


def test_global_is_invariant_to_channel_permutation() -> None:
    gen = torch.Generator().manual_seed(5)
    fr, ft = [torch.randn(2, 4, 10, generator=gen)], [torch.randn(2, 4, 10, generator=gen)]
    perm = torch.randperm(10, generator=gen)
    torch.testing.assert_close(global_distance(fr, ft), global_distance([fr[0][..., perm]], ft))


def test_sliced_variant_properties() -> None:
    gen = torch.Generator().manual_seed(6)
    fr, ft = [torch.randn(2, 9, 8, generator=gen)], [torch.randn(2, 9, 8, generator=gen)]
    value = global_distance(
        fr, ft, variant="sliced", projections=32, generator=torch.Generator().manual_seed(0)
    )
    assert value > 0
    # a permutation of the tokens is the same distribution
    perm = torch.randperm(9, generator=gen)
    again = global_distance(
        [fr[0][:, perm]], ft, variant="sliced", projections=32, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(value, again)


@pytest.mark.parametrize(
    "spec",
    [
        "mae_local",
        "mae_local(p=2)",
        "mae_global",
        "mae_global(p=1)",
        "mae_global_per_image",
        "mae_global_channels",
        "mae_global_sliced(projections=16)",
    ],
)
def test_zero_for_identical_images_and_finite_gradient(tiny_encoder: ViTEncoder, spec: str) -> None:
    _, target = _pair()
    restored = target.clone().requires_grad_(True)
    loss = build_loss(spec, encoder=tiny_encoder)
    value = loss(restored, target)
    assert float(value.detach()) == pytest.approx(0.0, abs=1e-7)
    value.backward()
    assert torch.isfinite(restored.grad).all()


@pytest.mark.parametrize(
    "spec", ["mae_global_per_image", "mae_global_channels", "mae_global_sliced", "mae_local(p=2)"]
)
def test_variants_positive_with_gradient(tiny_encoder: ViTEncoder, spec: str) -> None:
    restored, target = _pair()
    restored.requires_grad_(True)
    value = build_loss(spec, encoder=tiny_encoder)(restored, target)
    assert float(value.detach()) > 0
    value.backward()
    assert restored.grad.abs().sum() > 0


def test_target_branch_has_no_graph(tiny_encoder: ViTEncoder) -> None:
    restored, target = _pair()
    restored.requires_grad_(True)
    target.requires_grad_(True)
    loss = build_loss("0.1*mae_local + 1e-4*mae_global", encoder=tiny_encoder)
    loss(restored, target).backward()
    assert restored.grad is not None and restored.grad.abs().sum() > 0
    assert target.grad is None
    assert all(p.grad is None for p in tiny_encoder.parameters())


def test_one_encoder_pass_per_image_for_shared_terms(tiny_encoder: ViTEncoder) -> None:
    calls: list[int] = []
    hook = tiny_encoder.vit.patch_embed.proj.register_forward_hook(lambda *_: calls.append(1))
    try:
        loss = build_loss("l1 + mae_local + mae_global(blocks=2-4)", encoder=tiny_encoder)
        loss(*_pair())
        assert len(calls) == 2  # restored once, target once
        calls.clear()
        build_loss("mae_local(ratio=0) + mae_global(ratio=0.5)", encoder=tiny_encoder)(*_pair())
        assert len(calls) == 4  # two sampling ratios, two groups
    finally:
        hook.remove()


def test_fresh_tokens_each_call_unless_ids_given(tiny_encoder: ViTEncoder) -> None:
    restored, target = _pair()
    loss = build_loss("mae_local(ratio=0.5)", encoder=tiny_encoder)
    values = {float(loss(restored, target)) for _ in range(4)}
    assert len(values) > 1
    ids = tiny_encoder.sample_ids(restored, 0.5)
    fixed = {float(loss(restored, target, ids=ids)) for _ in range(3)}
    assert len(fixed) == 1


def test_local_does_not_depend_on_token_order(tiny_encoder: ViTEncoder) -> None:
    restored, target = _pair()
    loss = build_loss("mae_local(ratio=0)", encoder=tiny_encoder)
    ids = torch.arange(16).expand(2, 16)
    torch.testing.assert_close(loss(restored, target), loss(restored, target, ids=ids), rtol=1e-5, atol=1e-7)


def test_autocast_bf16_accumulates_in_fp32(tiny_encoder: ViTEncoder) -> None:
    restored, target = _pair()
    loss = build_loss("l1 + 0.1*mae_local + 1e-4*mae_global", encoder=tiny_encoder)
    ids = tiny_encoder.sample_ids(restored, 0.5)
    reference = loss(restored, target, ids=ids)
    x = restored.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x, target, ids=ids)
    assert value.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in loss.terms.values())
    assert float(value.detach()) == pytest.approx(float(reference), rel=5e-2)
    value.backward()
    assert torch.isfinite(x.grad).all()


def test_terms_dict_sums_to_total(tiny_encoder: ViTEncoder) -> None:
    restored, target = _pair()
    loss = build_loss("l1 + 2*charbonnier + psnr*0.01 + mae_local", encoder=tiny_encoder)
    total = loss(restored, target)
    assert list(loss.terms) == ["l1", "charbonnier", "psnr", "mae_local"]
    assert all(not v.requires_grad for v in loss.terms.values())
    torch.testing.assert_close(total.detach(), sum(loss.terms.values()))
    torch.testing.assert_close(loss.terms["charbonnier"], 2 * CharbonnierLoss()(restored, target))
    assert loss.weights == {"l1": 1.0, "charbonnier": 2.0, "psnr": 0.01, "mae_local": 0.1}


def test_mae_term_modules_directly(tiny_encoder: ViTEncoder) -> None:
    restored, target = _pair()
    ids = tiny_encoder.sample_ids(restored, 0.5)
    composite = build_loss("mae_global(blocks=[1,3])", encoder=tiny_encoder)
    direct = MAEGlobalLoss(tiny_encoder, blocks=[1, 3])
    torch.testing.assert_close(composite(restored, target, ids=ids), 1e-4 * direct(restored, target, ids=ids))
    with pytest.raises(DeblurkitError):
        MAEGlobalLoss(tiny_encoder, variant="nope")
    with pytest.raises(DeblurkitError):
        MAELocalLoss(tiny_encoder, blocks=[7])


def test_shape_mismatch_is_a_clear_error(tiny_encoder: ViTEncoder) -> None:
    loss = build_loss("l1 + mae_local", encoder=tiny_encoder)
    with pytest.raises(DeblurkitError, match="differ in shape"):
        loss(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 48))


# -- pixel losses -----------------------------------------------------------------------------------
def test_pixel_losses() -> None:
    restored, target = _pair(seed=2)
    torch.testing.assert_close(L1Loss()(restored, target), F.l1_loss(restored, target))
    diff = restored - target
    torch.testing.assert_close(CharbonnierLoss(1e-3)(restored, target), torch.sqrt(diff**2 + 1e-6).mean())
    mse = diff.pow(2).mean(dim=(1, 2, 3))
    psnr = 10 * torch.log10(1 / mse)
    torch.testing.assert_close(PSNRLoss()(restored, target), -psnr.mean(), rtol=1e-5, atol=1e-5)
    coef = torch.tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    y_r = ((restored * coef).sum(1, keepdim=True) + 16) / 255
    y_t = ((target * coef).sum(1, keepdim=True) + 16) / 255
    expected = 10 / math.log(10) * torch.log((y_r - y_t).pow(2).mean(dim=(1, 2, 3)) + 1e-8).mean()
    torch.testing.assert_close(PSNRLoss(to_y=True)(restored, target), expected)
    with pytest.raises(DeblurkitError):
        CharbonnierLoss(0)


def test_pixel_losses_under_autocast() -> None:
    restored, target = _pair(seed=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = build_loss("l1 + psnr + charbonnier")(restored.bfloat16(), target.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value)


# -- VGG --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_vgg() -> VGGFeatures:
    return VGGFeatures.random(seed=0, widths=(4, 4, 8, 8, 8))


def test_vgg_layer_names() -> None:
    assert len(VGG19_LAYERS) == 37
    assert VGG19_LAYERS[3] == "relu1_2"
    assert VGG19_LAYERS[35] == "relu5_4"
    assert VGG19_LAYERS[36] == "pool5"
    assert VGG19_LAYERS[4] == "pool1"


def test_vgg_losses(small_vgg: VGGFeatures) -> None:
    restored, target = _pair(size=32)
    restored.requires_grad_(True)
    loss = build_loss("l1 + vgg + vgg_pool5", vgg=small_vgg)
    value = loss(restored, target)
    value.backward()
    assert restored.grad.abs().sum() > 0
    assert set(loss.terms) == {"l1", "vgg", "vgg_pool5"}
    assert loss.weights["vgg_pool5"] == 1e-4
    feats_r = small_vgg(restored.detach(), ["pool5"])["pool5"]
    feats_t = small_vgg(target, ["pool5"])["pool5"]
    torch.testing.assert_close(loss.terms["vgg_pool5"], 1e-4 * F.mse_loss(feats_r, feats_t))
    assert all(p.grad is None for p in small_vgg.parameters())


def test_vgg_conv_outputs_are_not_clobbered(small_vgg: VGGFeatures) -> None:
    x = torch.rand(1, 3, 16, 16) * 4 - 2
    feats = small_vgg(x, ["conv1_1", "relu1_1"])
    assert (feats["conv1_1"] < 0).any()
    torch.testing.assert_close(feats["relu1_1"], feats["conv1_1"].clamp(min=0))
    with pytest.raises(DeblurkitError):
        small_vgg(x, ["relu6_1"])
    with pytest.raises(DeblurkitError):
        VGGPerceptualLoss(small_vgg, layers=("relu1_2",), layer_weights=(1.0, 2.0))


def test_load_vgg_from_state_dict() -> None:
    from deblurkit.losses.vgg import make_vgg19_features

    features = make_vgg19_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["pre_logits.fc1.weight"] = torch.zeros(1)  # the classifier is ignored
    vgg = load_vgg(weights=state)
    x = torch.rand(1, 3, 32, 32)
    expected = features((x - vgg.mean) / vgg.std)
    torch.testing.assert_close(vgg(x, ["pool5"])["pool5"], expected)
    with pytest.raises(WeightsError):
        load_vgg(weights={k: v for k, v in state.items() if k != "features.0.weight"})


def test_frozen_modules_stay_in_eval(tiny_encoder: ViTEncoder, small_vgg: VGGFeatures) -> None:
    loss = build_loss("l1 + mae_local + vgg", encoder=tiny_encoder, vgg=small_vgg)
    loss.train()
    assert not tiny_encoder.training and not small_vgg.training
    assert not any(isinstance(m, nn.Dropout) and m.training for m in tiny_encoder.modules())
