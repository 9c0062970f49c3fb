"""Tile plans, feathered merging and the OOM helpers; tiled inference equals whole-image inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from deblurkit.archs import Architecture, SizeRule
from deblurkit.inference.deblurrer import Deblurrer
from deblurkit.inference.tiling import auto_tile, halve_tile, is_out_of_memory, plan_tiles
from deblurkit.zoo.restorer import Restorer

RULES = [SizeRule(1), SizeRule(4), SizeRule(8), SizeRule(16), SizeRule(128, square=True, centred=True)]


class LocalNet(nn.Module):
    """A small U-Net-like network (one 2× down/up) whose receptive field is a few pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 2, stride=2)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(8, 32, 1), nn.PixelShuffle(2))
        self.c = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.a(x))
        return x + 0.1 * self.c(self.up(F.relu(self.b(self.down(h)))) + h)


def local_model() -> Restorer:
    torch.manual_seed(0)
    arch = Architecture(name="local-test", build=LocalNet, size_rule=SizeRule(4), min_tile=16)
    return Restorer(LocalNet(), arch, {}).eval().requires_grad_(False)


MODEL = local_model()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    height=st.integers(1, 700),
    width=st.integers(1, 700),
    tile=st.integers(0, 300),
    overlap=st.integers(0, 80),
    rule=st.sampled_from(RULES),
)
def test_plan_covers_the_image_with_weights_summing_to_one(height, width, tile, overlap, rule):
    plan = plan_tiles(height, width, tile, overlap, rule)
    total = np.zeros((height, width), np.float64)
    for part in plan:
        assert 0 <= part.top < part.bottom <= height and 0 <= part.left < part.right <= width
        if len(plan) > 1 and not rule.square:
            assert part.top % rule.multiple == 0 and part.left % rule.multiple == 0
        total[part.slices] += part.weights()
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    tile_h, tile_w = plan.tile_size
    if tile > 0:
        side = max(rule.multiple, tile // rule.multiple * rule.multiple)
        assert tile_h <= max(side, height) and tile_w <= max(side, width)
        if rule.square and len(plan) > 1:
            assert side % 128 == 0


def test_border_tiles_are_not_feathered_at_the_border():
    plan = plan_tiles(100, 100, 48, 16, SizeRule(1))
    first, *_, last = list(plan)
    assert first.weight_y[0] == 1 and first.weight_x[0] == 1
    assert last.weight_y[-1] == 1 and last.weight_x[-1] == 1
    assert first.weight_x[-1] == 0  # the outer quarter of an overlap, where the tile's edge is, is dropped


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 220),
    width=st.integers(1, 220),
    tile=st.integers(96, 160),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_whole_image_when_the_overlap_holds_the_receptive_field(
    height, width, tile, dtype, channels, seed
):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        image = rng.random((height, width, channels), dtype=np.float32)
    else:
        image = rng.integers(0, np.iinfo(dtype).max + 1, (height, width, channels)).astype(dtype)
    whole = Deblurrer(MODEL, tile=0)(image)
    tiled = Deblurrer(MODEL, tile=tile, overlap=40)(image)
    assert tiled.pixels.shape == image.shape and tiled.pixels.dtype == image.dtype
    assert whole.pixels.shape == image.shape and whole.pixels.dtype == image.dtype
    tolerance = 1e-5 if dtype == np.float32 else 1  # integers may round the other way
    assert np.abs(tiled.pixels.astype(np.float64) - whole.pixels).max() <= tolerance


def test_tiled_float_output_is_exact_for_many_tiles():
    image = np.random.default_rng(1).random((250, 301, 3), dtype=np.float32)
    whole = Deblurrer(MODEL, tile=0)(image).pixels
    tiled = Deblurrer(MODEL, tile=96, overlap=40)(image)
    assert tiled.tile is not None and max(tiled.tile) <= 96
    np.testing.assert_allclose(tiled.pixels, whole, atol=2e-6)
    seams = Deblurrer(MODEL, tile=96, overlap=0)(image).pixels  # without overlap the seams show
    assert np.abs(seams - whole).max() > 1e-3


@pytest.mark.parametrize("rule", RULES)
def test_auto_tile_fits_the_budget(rule):
    assert auto_tile(100, 120, 100 * 128 * 128, 32, rule, 64) == 0
    tile = auto_tile(2160, 3840, 700_000, 64, rule, 64)
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    assert tile_h * tile_w <= 700_000 and min(tile_h, tile_w) >= 64
    assert tile_h % rule.multiple == 0 and tile_w % rule.multiple == 0
    if rule.square:
        assert tile_h == tile_w


def test_auto_tile_prefers_few_wasted_pixels():
    tile_h, tile_w = auto_tile(2160, 3840, 1_000_000, 64, SizeRule(16), 512)
    plan = plan_tiles(2160, 3840, (tile_h, tile_w), 64, SizeRule(16))
    processed = sum(b - t for t, b, _ in plan.rows) * sum(r - left for left, r, _ in plan.cols)
    assert processed / (2160 * 3840) < 1.15


def test_halve_tile_respects_rule_and_minimum():
    assert halve_tile(1024, SizeRule(16), 64) == 512
    assert halve_tile(600, SizeRule(16), 64) == 288
    assert halve_tile(100, SizeRule(16), 64) is None
    assert halve_tile(512, SizeRule(128, square=True), 128) == 256


def test_out_of_memory_detection():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(
        RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: not enough memory")
    )
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_host_memory_comes_from_a_portable_source():
    import psutil

    from deblurkit.inference.memory import CPU_TILE_MEMORY, host_available_memory, tile_memory_budget

    available = host_available_memory()
    assert 0 < available <= psutil.virtual_memory().total
    assert 0 < tile_memory_budget(torch.device("cpu")) <= CPU_TILE_MEMORY
