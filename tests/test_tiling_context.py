"""Tiled NAFNet-TLC inference matches whole-image inference: tile edges get no weight within the
TLC window's reach (``Architecture.tile_context``)."""

import numpy as np
import pytest
import torch
from skimage import data

from deblurkit.archs import get_architecture
from deblurkit.engine import deblur_image
from deblurkit.models import build_network
from deblurkit.restorer import Restorer
from deblurkit.tiling import plan_tiles

CONFIG = {
    "img_channel": 3,
    "width": 8,
    "middle_blk_num": 1,
    "enc_blk_nums": [1, 1, 1, 1],
    "dec_blk_nums": [1, 1, 1, 1],
    "train_size": 64,
}


@pytest.fixture(scope="module")
def tlc_model() -> Restorer:
    torch.manual_seed(0)
    network = build_network("nafnet-local", CONFIG).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return Restorer(network, get_architecture("nafnet-local"), CONFIG).eval()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_tlc_context_is_half_the_window():
    arch = get_architecture("nafnet-local")
    assert arch.tile_context_for({"train_size": 256}) == 192
    assert arch.tile_context_for(CONFIG) == 48
    assert get_architecture("nafnet").tile_context_for({}) == 0


def test_tiled_tlc_matches_whole_image(tlc_model):
    image = data.astronaut()[:320, :480].astype(np.float32) / 255
    whole = deblur_image(tlc_model, image, tile=0)
    tiled = deblur_image(tlc_model, image, tile=320, overlap=32)
    assert _psnr(tiled, whole) > 55


def test_context_band_gets_no_weight():
    rule = get_architecture("nafnet-local").size_rule_for(CONFIG)
    plan = plan_tiles(320, 900, 320, 32, rule, context=48)
    first, second = list(plan)[:2]
    overlap = first.right - second.left
    assert overlap >= 32 + 2 * 48
    # Within 48 px of a tile's inner edge its weight is zero.
    assert np.all(first.weight_x[-48:] == 0)
    assert np.all(second.weight_x[:48] == 0)
