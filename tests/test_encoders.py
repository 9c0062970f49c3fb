"""Frozen ViT encoders: loading from a local file, position-embedding resizing, token sampling, blocks."""

from __future__ import annotations

import functools

import pytest
import timm
import torch
from safetensors.torch import save_file
from tinymodels import TINY_VIT as TINY
from torch.nn import functional as F

from deblurkit.errors import DeblurkitError, WeightsError
from deblurkit.losses.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViTEncoder,
    keep_count,
    load_encoder,
    resize_pos_embed,
    sample_token_ids,
)


def _tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return dict(_tiny_state_cached(seed))


@functools.cache
def _tiny_state_cached(seed: int) -> dict[str, torch.Tensor]:
    kwargs = {k: v for k, v in TINY.items() if k != "timm_model"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, **kwargs)
        # non-trivial position embedding, cls token and norms
        for name, param in vit.named_parameters():
            if name in ("pos_embed", "cls_token") or name.endswith("bias"):
                param.data.normal_(0, 0.1)
    return {k: v.contiguous() for k, v in vit.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("enc") / "tiny_vit.safetensors"
    save_file(_tiny_state(), str(path))
    return path


@pytest.fixture(scope="module")
def encoder(tiny_file) -> ViTEncoder:
    return load_encoder(TINY, weights=tiny_file)


def _images(batch: int = 2, height: int = 64, width: int = 64, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=gen)


def test_frozen_and_eval(encoder: ViTEncoder) -> None:
    assert all(not p.requires_grad for p in encoder.parameters())
    assert not encoder.training
    encoder.train()
    assert not encoder.training
    assert not any(m.training for m in encoder.modules())


def test_gradient_flows_to_the_input_only(encoder: ViTEncoder) -> None:
    x = _images().requires_grad_(True)
    feats = encoder(x)
    sum(f.square().mean() for f in feats).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_matches_timm_forward_at_native_size(encoder: ViTEncoder) -> None:
    x = _images()
    feats = encoder(x, blocks=range(1, 7))
    vit = encoder.vit
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = vit._pos_embed(vit.patch_embed((x - mean) / std))
        for block, feat in zip(vit.blocks, feats, strict=True):
            ref = block(ref)
            torch.testing.assert_close(feat, ref, rtol=1e-5, atol=1e-5)
    assert feats[0].shape == (2, 17, 48)  # CLS + 16 patches


def test_default_blocks_are_one_to_six_without_final_norm(encoder: ViTEncoder) -> None:
    x = _images()
    feats = encoder(x)
    assert len(feats) == 6
    direct = encoder(x, blocks=[6])[0]
    torch.testing.assert_close(feats[-1], direct)
    normed = encoder.vit.norm(direct)
    assert not torch.allclose(direct, normed)


def test_runs_only_the_blocks_needed(encoder: ViTEncoder) -> None:
    calls: list[int] = []
    hooks = [
        block.register_forward_hook(lambda *_, i=i: calls.append(i))
        for i, block in enumerate(encoder.vit.blocks)
    ]
    try:
        feats = encoder(_images(), blocks=(3, 1))
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == [0, 1, 2]
    assert len(feats) == 2
    torch.testing.assert_close(feats[1], encoder(_images(), blocks=1)[0])


def test_any_multiple_of_the_patch_size(encoder: ViTEncoder) -> None:
    x = _images(1, 96, 128)
    feats = encoder(x, blocks=2)
    assert feats[0].shape == (1, 1 + 6 * 8, 48)
    with pytest.raises(DeblurkitError, match="multiple of the patch size"):
        encoder(_images(1, 70, 64))


def test_position_embedding_resized_bicubically_cls_kept(encoder: ViTEncoder) -> None:
    pos = encoder.vit.pos_embed.detach()
    resized = encoder.pos_embed_for((6, 8))
    assert resized.shape == (1, 1 + 48, 48)
    torch.testing.assert_close(resized[:, :1], pos[:, :1])
    grid = pos[:, 1:].reshape(1, 4, 4, 48).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(6, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(resized[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 48, 48))
    assert encoder.pos_embed_for((4, 4)) is not None
    torch.testing.assert_close(resize_pos_embed(pos, (4, 4), (4, 4), 1), pos)


def test_token_sampling_counts_and_freshness(encoder: ViTEncoder) -> None:
    assert keep_count(256, 0.5) == 128
    assert keep_count(16, 0.0) == 16
    assert keep_count(196, 0.75) == 49
    with pytest.raises(DeblurkitError):
        keep_count(16, 1.0)
    ids = sample_token_ids(3, 16, 0.5)
    assert ids.shape == (3, 8)
    assert all(len(set(row.tolist())) == 8 for row in ids)
    x = _images()
    draws = [encoder.sample_ids(x, 0.5) for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    feats_r, feats_t, used = encoder.features_pair(x, x.flip(-1), ratio=0.5)
    assert used.shape == (2, 8)
    assert feats_r[0].shape == feats_t[0].shape == (2, 9, 48)


def test_explicit_ids_select_and_order_tokens(encoder: ViTEncoder) -> None:
    x = _images()
    full = encoder(x, blocks=[1, 4])
    perm = torch.stack([torch.randperm(16, generator=torch.Generator().manual_seed(s)) for s in (0, 1)])
    shuffled = encoder(x, blocks=[1, 4], ids=perm)
    for f, s in zip(full, shuffled, strict=True):
        torch.testing.assert_close(s[:, 0], f[:, 0], rtol=1e-5, atol=1e-5)  # CLS first, unchanged
        gathered = f[:, 1:].gather(1, perm.unsqueeze(-1).expand(-1, -1, f.shape[-1]))
        torch.testing.assert_close(s[:, 1:], gathered, rtol=1e-5, atol=1e-5)
    kept = encoder(x, blocks=1, ids=perm[:, :5])[0]
    assert kept.shape == (2, 6, 48)
    with pytest.raises(DeblurkitError):
        encoder(x, ids=torch.full((2, 3), 16))


def test_same_ids_for_restored_and_target(encoder: ViTEncoder) -> None:
    x = _images()
    feats_r, feats_t, ids = encoder.features_pair(x, x.clone(), ratio=0.5)
    assert ids.shape == (2, 8)
    for r, t in zip(feats_r, feats_t, strict=True):
        torch.testing.assert_close(r, t)
    assert not feats_t[0].requires_grad


def test_normalisation_inside_and_configurable(tiny_file) -> None:
    plain = load_encoder(TINY, weights=tiny_file)
    custom = load_encoder({**TINY, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}, weights=tiny_file)
    x = _images()
    # an image shifted/scaled so that the two normalisations agree
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    y = (x - mean) / std * 0.5 + 0.5
    torch.testing.assert_close(plain(x)[2], custom(y)[2], rtol=1e-4, atol=1e-4)
    with pytest.raises(DeblurkitError, match="needs 3 means and stds"):
        load_encoder({**TINY, "mean": [0.5], "std": [0.5]}, weights=tiny_file)


def test_fp64_input_stays_fp64(tiny_file) -> None:
    """Normalisation statistics and the resized position embedding are made in the input's dtype:
    an fp64 encoder agrees with a step-by-step fp64 computation to rounding."""
    encoder = load_encoder(TINY, weights=tiny_file).to(torch.float64)
    x = _images(height=80, width=48).double()
    (features,) = encoder(x, blocks=[1])
    assert features.dtype == torch.float64
    vit = encoder.vit
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    tokens = vit.patch_embed.proj((x - mean) / std).flatten(2).transpose(1, 2)
    grid = vit.pos_embed[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(5, 3), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    cls = vit.cls_token + vit.pos_embed[:, :1]
    expected = vit.blocks[0](torch.cat([cls.expand(2, -1, -1), tokens + grid], dim=1))
    torch.testing.assert_close(features, expected, rtol=1e-12, atol=1e-12)


def test_timm_model_name_and_depth(tmp_path) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path / "vit_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    enc = load_encoder("vit_tiny_patch16_224", weights=path, depth=3)
    assert enc.depth == 3
    x = torch.rand(1, 3, 160, 160)
    assert len(enc(x, blocks=[1, 2, 3])) == 3
    with pytest.raises(DeblurkitError, match="blocks must be in"):
        enc(x, blocks=[4])


def test_official_pth_checkpoint(tmp_path) -> None:
    state = _tiny_state()
    state["head.weight"] = torch.zeros(10, 48)  # extra tensors are ignored
    path = tmp_path / "mae_pretrain.pth"
    torch.save({"model": state}, path)
    enc = load_encoder(TINY, weights=path)
    ref = load_encoder(TINY, weights=_tiny_state())
    torch.testing.assert_close(enc(_images())[0], ref(_images())[0])


def test_checkpoint_with_another_grid_is_adopted() -> None:
    state = _tiny_state()
    enc = load_encoder({**TINY, "img_size": 32}, weights=state)  # model grid 2×2, checkpoint 4×4
    assert enc.pos_grid == (4, 4)
    ref = load_encoder(TINY, weights=state)
    torch.testing.assert_close(enc(_images())[1], ref(_images())[1])


def test_weights_that_do_not_fit() -> None:
    state = _tiny_state()
    with pytest.raises(WeightsError, match="missing"):
        load_encoder(TINY, weights={k: v for k, v in state.items() if not k.startswith("blocks.5.")})
    with pytest.raises(WeightsError, match="shape"):
        load_encoder({**TINY, "embed_dim": 96}, weights=state)
    with pytest.raises(WeightsError):
        load_encoder(TINY, weights="/nonexistent/file.safetensors")


def test_autocast_bf16(encoder: ViTEncoder) -> None:
    x = _images().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = encoder(x, blocks=[1, 2])
    assert feats[0].dtype == torch.bfloat16
    sum(f.float().mean() for f in feats).backward()
    assert torch.isfinite(x.grad).all()
