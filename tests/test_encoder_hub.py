"""An encoder zoo card, end to end offline: Hub cache → ``load_encoder(name)`` → the official losses.

The golden tiny MAE encoder is published into a Hub cache layout under a card of our own
(``$DEBLURKIT_ZOO_PATH``); loading it by name must go through ``hf_hub_download`` and the checksum
check, and the losses built on it must reproduce the official values.
"""

import pytest
import torch
from hubcache import add_to_hub_cache, blob_path
from safetensors import safe_open
from safetensors.torch import save

from deblurkit.errors import WeightsError
from deblurkit.losses import build_loss
from deblurkit.losses.encoders import load_encoder

CARD = """name = "tiny-mae"
kind = "encoder"
summary = "the golden tiny MAE encoder"
architecture = "timm"
license = "CC-BY-NC-4.0"
paper = "test"

[config]
timm_model = "vit_base_patch16_224"
num_classes = 0
img_size = 64
embed_dim = 48
depth = 6
num_heads = 3

[weights]
repo_id = "test/tiny-mae"
filename = "model.safetensors"
"""


@pytest.fixture
def golden_mae(golden):
    with safe_open(str(golden / "mae_losses.safetensors"), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


@pytest.fixture
def tiny_mae_card(tmp_path, monkeypatch, golden_mae):
    weights = {k.removeprefix("weights/"): v for k, v in golden_mae.items() if k.startswith("weights/")}
    data = save(weights)
    add_to_hub_cache("test/tiny-mae", {"model.safetensors": data})
    (tmp_path / "tiny-mae.toml").write_text(CARD)
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(tmp_path))
    return data


@pytest.mark.parametrize("tag", ["r00", "r50"])
def test_encoder_by_name_reproduces_the_official_losses(tiny_mae_card, golden_mae, tag):
    encoder = load_encoder("tiny-mae")
    assert not any(p.requires_grad for p in encoder.parameters())
    for kind, spec in (("local", "mae_local"), ("global", "mae_global")):
        loss = build_loss(spec, encoder=encoder)
        restored = golden_mae["restored"].clone().requires_grad_(True)
        value = loss(restored, golden_mae["target"], ids=golden_mae[f"kept_ids_{tag}"])
        value.backward()
        expected = golden_mae[f"{kind}_{tag}"].reshape(())
        assert abs(float(value) / float(expected) - 1) <= 1e-5
        grad_ref = golden_mae[f"grad_{kind}_{tag}"]
        assert float((restored.grad - grad_ref).abs().max() / grad_ref.abs().max()) <= 1e-5


def test_tampered_encoder_weights_are_refused(tiny_mae_card):
    blob = blob_path("test/tiny-mae", tiny_mae_card)
    blob.write_bytes(tiny_mae_card[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_encoder("tiny-mae")


def test_real_encoder_offline_is_one_clear_line():
    with pytest.raises(WeightsError, match="mae-vit-base is not in the local Hub cache") as err:
        load_encoder("mae-vit-base")
    assert "\n" not in str(err.value)


def test_losses_differentiate_through_the_hub_encoder(tiny_mae_card):
    loss = build_loss("l1 + 0.1*mae_local(ratio=0.5)", encoder=load_encoder("tiny-mae"))
    restored = torch.rand(1, 3, 64, 64, requires_grad=True)
    loss(restored, torch.rand(1, 3, 64, 64)).backward()
    assert restored.grad is not None
    assert set(loss.terms) == {"l1", "mae_local"}
