"""``mae-local`` / ``mae-global`` through the user's path: zoo card → Hub cache → encoder → score.

A randomly initialised ViT-B/16 stands in for the MAE weights (the numbers are meaningless, the
path is real), published as ``mae-vit-base`` in a Hub cache of its own.
"""

import numpy as np
import pytest
import timm
import torch
from click.testing import CliRunner
from hubcache import add_to_hub_cache
from huggingface_hub import constants
from PIL import Image
from safetensors.torch import save
from skimage import data
from skimage.filters import gaussian

from deblurkit.cli import cli
from deblurkit.losses.mae import global_distance, local_distance
from deblurkit.metrics import MetricUnavailableError, get_metric
from deblurkit.metrics import mae as mae_metrics
from deblurkit.zoo.cards import get_entry


@pytest.fixture
def isolated_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("DEBLURKIT_CACHE", str(tmp_path / "deblurkit"))
    mae_metrics._encoder.cache_clear()
    yield
    mae_metrics._encoder.cache_clear()


@pytest.fixture
def random_mae(isolated_hub):
    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    weights = get_entry("mae-vit-base").weights
    add_to_hub_cache(weights.repo_id, {weights.filename: save(vit.state_dict())}, commit=weights.revision)
    return vit


def _images(tmp_path):
    sharp = data.astronaut()[::4, ::4]  # 128×128
    blurred = (gaussian(sharp, sigma=2, channel_axis=-1) * 255).round().astype(np.uint8)
    Image.fromarray(sharp).save(tmp_path / "sharp.png")
    Image.fromarray(blurred).save(tmp_path / "blurred.png")
    return sharp, blurred


def test_unavailable_encoder_is_one_clear_line(isolated_hub):
    with pytest.raises(
        MetricUnavailableError, match="need the mae-vit-base encoder.*not in the local Hub cache"
    ):
        get_metric("mae-local").check()


def test_mae_metrics_match_the_loss_definitions(tmp_path, random_mae):
    sharp, blurred = _images(tmp_path)
    result = CliRunner().invoke(
        cli,
        [
            "score",
            str(tmp_path / "blurred.png"),
            str(tmp_path / "sharp.png"),
            "-m",
            "mae-local,mae-global",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    row = json.loads(result.output)["pairs"][0]
    encoder = mae_metrics._encoder("cpu")
    a = torch.from_numpy(blurred).permute(2, 0, 1)[None].float() / 255
    b = torch.from_numpy(sharp).permute(2, 0, 1)[None].float() / 255
    ids = torch.arange(64)[None]
    with torch.no_grad():
        fa, fb = encoder(a, ids=ids), encoder(b, ids=ids)
    assert row["mae-local"] == pytest.approx(float(local_distance(fa, fb)), rel=1e-6)
    assert row["mae-global"] == pytest.approx(float(global_distance(fa, fb, variant="per_image")), rel=1e-6)
    assert row["mae-local"] > 0


def test_identical_images_score_zero_and_are_deterministic(tmp_path, random_mae):
    sharp, _ = _images(tmp_path)
    x = torch.from_numpy(sharp).permute(2, 0, 1)[None].to(torch.float64)
    metric = get_metric("mae-local")
    assert float(metric.compute(x, x, 255.0)[0]) == 0.0
    y = x.flip(-1)
    assert torch.equal(metric.compute(x, y, 255.0), metric.compute(x, y, 255.0))
