"""Tiled NAFNet-TLC inference stays close to whole-image inference (the issue's bar: > 45 dB)."""

import numpy as np
import torch
from skimage import data

from deblurkit.archs import get_architecture
from deblurkit.inference.deblurrer import deblur_image
from deblurkit.zoo.models import build_network
from deblurkit.zoo.restorer import Restorer

CONFIG = {
    "img_channel": 3,
    "width": 8,
    "middle_blk_num": 1,
    "enc_blk_nums": [1, 1, 1, 1],
    "dec_blk_nums": [1, 1, 1, 1],
    "train_size": 256,
}


def test_tiled_tlc_is_close_to_whole_image():
    torch.manual_seed(0)
    network = build_network("nafnet-local", CONFIG).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model = Restorer(network, get_architecture("nafnet-local"), CONFIG).eval()
    image = data.astronaut()[:512, :].astype(np.float32) / 255  # 512×512; side by side: 512×1024
    whole = deblur_image(model, np.ascontiguousarray(np.concatenate([image, image], axis=1)), tile=0)
    tiled = deblur_image(model, np.ascontiguousarray(np.concatenate([image, image], axis=1)), tile=640)
    psnr = 10 * np.log10(1 / np.mean((tiled.astype(np.float64) - whole) ** 2))
    assert psnr > 45
    assert not np.array_equal(tiled, whole)  # it really was tiled
