"""The full-width ViT-B/16 against the official MAE loss computation (tests/official_mae.py).

The golden file covers a tiny encoder; this checks the real geometry the paper trains with: a
ViT-B/16 (width 768, 12 heads, 12 blocks; random weights with non-trivial position embedding, CLS
token and biases), batch 2, 256² crops with half the tokens kept (the 14×14 position grid resized to
16×16) and 128² crops with all of them, the losses' values and their gradients with respect to the
restored batch.
"""

from __future__ import annotations

import pytest
import timm
import torch
from official_mae import OfficialLoss, OfficialMAEEncoder

from deblurkit.losses import build_loss
from deblurkit.losses.encoders import ViTEncoder, load_encoder


@pytest.fixture(scope="module")
def vit_b16_state() -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        for name, param in vit.named_parameters():
            if name in ("pos_embed", "cls_token") or name.endswith("bias"):
                param.data.normal_(0, 0.1)
    return {k: v.contiguous() for k, v in vit.state_dict().items()}


@pytest.fixture(scope="module")
def encoders(vit_b16_state) -> dict[torch.dtype, tuple[ViTEncoder, dict[int, OfficialMAEEncoder]]]:
    """deblurkit's encoder and the official one (per crop size), in fp32 and fp64."""
    built = {}
    for dtype in (torch.float32, torch.float64):
        state = {k: v.to(dtype) for k, v in vit_b16_state.items()}
        ours = load_encoder("vit_base_patch16_224", weights=state).to(dtype)
        official = {size: OfficialMAEEncoder(state, size, heads=12, dtype=dtype) for size in (128, 256)}
        built[dtype] = (ours, official)
    return built


def _batch(size: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(2, 3, size, size, generator=gen, dtype=torch.float64)
    restored = (target + 0.05 * torch.randn(2, 3, size, size, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return restored.to(dtype), target.to(dtype)


def _value_and_grad(loss, restored: torch.Tensor, target: torch.Tensor, ids: torch.Tensor):
    x = restored.clone().requires_grad_(True)
    value = loss(x, target, ids=ids)
    (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad


KINDS = [("local", "l1 + 0.1*mae_local"), ("global", "l1 + 1e-4*mae_global")]
# r = 0.5 on the paper's 256² crops; r = 0 (every token, in a per-sample random order) on 128² crops
GEOMETRIES = [(0.5, 256), (0.0, 128)]


@pytest.mark.slow
@pytest.mark.parametrize(("ratio", "size"), GEOMETRIES)
@pytest.mark.parametrize(("kind", "spec"), KINDS)
def test_vit_b16_matches_official_in_fp64(encoders, ratio: float, size: int, kind: str, spec: str) -> None:
    """In fp64 rounding is out of the way: values and gradients agree to 1e-10 (seen: ~5e-14)."""
    ours, official = encoders[torch.float64]
    restored, target = _batch(size, torch.float64, seed=size + len(kind))
    ids = ours.sample_ids(restored, ratio)
    assert ids.shape == (2, (size // 16) ** 2 // (2 if ratio else 1))
    expected, expected_grad = _value_and_grad(OfficialLoss(official[size], kind), restored, target, ids)
    value, grad = _value_and_grad(build_loss(f"{spec}(ratio={ratio})", encoder=ours), restored, target, ids)
    assert value == pytest.approx(expected, rel=1e-10)
    assert float((grad - expected_grad).abs().max() / expected_grad.abs().max()) <= 1e-10


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "spec"), KINDS)
def test_vit_b16_matches_official_in_fp32(encoders, kind: str, spec: str) -> None:
    """fp32 values to 1e-5 (gradients are left to fp64: the local loss's |φ(Î) − φ(I)| has kinks, and
    fp32 rounding moves a few of the ~10⁶ feature differences across zero)."""
    ours, official = encoders[torch.float32]
    restored, target = _batch(256, torch.float32, seed=7)
    ids = ours.sample_ids(restored, 0.5)
    with torch.no_grad():
        expected = float(OfficialLoss(official[256], kind)(restored, target, ids=ids))
        value = float(build_loss(spec, encoder=ours)(restored, target, ids=ids))
    assert value == pytest.approx(expected, rel=1e-5)
