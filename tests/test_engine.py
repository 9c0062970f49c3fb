"""The engine: precision choice and fp32 fallback, OOM back-off, auto tiling, jobs, sharding, the API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deblurkit.archs import Architecture, SizeRule, get_architecture
from deblurkit.errors import DeblurkitError, UsageError
from deblurkit.inference.batch import collect_jobs, deblur_files, distributed_env, shard
from deblurkit.inference.deblurrer import Deblurrer, deblur_image, resolve_precision
from deblurkit.zoo.models import build_network
from deblurkit.zoo.restorer import Restorer

TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


def tiny_nafnet(seed: int = 0) -> Restorer:
    torch.manual_seed(seed)
    network = build_network("nafnet", TINY)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return Restorer(network, get_architecture("nafnet"), TINY).eval().requires_grad_(False)


def _restorer(network: nn.Module, precisions=("fp32", "bf16"), min_tile: int = 16) -> Restorer:
    arch = Architecture(
        name="test-net", build=type(network), size_rule=SizeRule(4), precisions=precisions, min_tile=min_tile
    )
    return Restorer(network, arch, {}).eval()


class NanInHalf(nn.Module):
    """Finite in fp32, NaN under bf16 autocast."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * float("nan") if y.dtype != torch.float32 else y


class Greedy(nn.Module):
    """Runs out of memory on batches of more than ``limit`` pixels in all, like a real allocator would."""

    def __init__(self, limit: int = 40 * 40) -> None:
        super().__init__()
        self.limit = limit
        self.scale = nn.Parameter(torch.ones(()))
        self.sizes: list[tuple[int, int]] = []
        self.batches: list[int] = []
        self.failures = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        self.batches.append(x.shape[0])
        if x.shape[0] * x.shape[-1] * x.shape[-2] > self.limit:
            self.failures += 1
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB")
        return x * self.scale


def _image(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_precision_resolution():
    model = tiny_nafnet()
    cpu = torch.device("cpu")
    assert resolve_precision("auto", model, cpu) == "fp32"
    assert resolve_precision("bf16", model, cpu) == "bf16"
    with pytest.raises(UsageError, match="fp16 is not supported on CPU") as err:
        resolve_precision("fp16", model, cpu)
    assert err.value.exit_code == 2
    with pytest.raises(UsageError, match="not verified safe in bf16"):
        resolve_precision("bf16", _restorer(nn.Conv2d(3, 3, 1), precisions=("fp32",)), cpu)


def test_bf16_on_cpu_is_close_to_fp32():
    model, image = tiny_nafnet(), _image(24, 40, 3)
    fp32 = deblur_image(model, image, tile=0)
    bf16 = Deblurrer(model, tile=0, precision="bf16")(image)
    assert bf16.precision == "bf16" and np.abs(bf16.pixels.astype(int) - fp32).max() <= 8


def test_non_finite_output_is_redone_in_fp32():
    result = Deblurrer(_restorer(NanInHalf()), tile=0, precision="bf16")(_image(12, 12, 3))
    assert result.precision == "fp32" and np.isfinite(result.pixels).all()
    assert result.notes == ["non-finite values in the bf16 output: redone in fp32"]


def test_out_of_memory_halves_the_tile_and_retries():
    network = Greedy()
    deblurrer = Deblurrer(_restorer(network), tile=0, overlap=8)
    image = _image(64, 64, 3)
    result = deblurrer(image)
    assert np.array_equal(result.pixels, image)  # the identity network, tiled, gives the image back
    assert max(result.tile) <= 32 and "out of memory with 64×64 tiles" in result.notes[0]
    assert network.sizes[0] == (64, 64) and max(max(size) for size in network.sizes[1:]) <= 32
    assert deblurrer(image).notes == []  # the smaller tile is kept for the next images


def test_tiles_go_through_the_network_in_batches_that_fit():
    network = Greedy(limit=3 * 32 * 32)
    deblurrer = Deblurrer(_restorer(network), tile=32, overlap=8, batch_tiles=True)
    image = _image(64, 64, 3)
    result = deblurrer(image)
    assert np.array_equal(result.pixels, image) and result.notes == []
    # The first tile alone (measured), then batches; one too large for memory is split, not the tiles.
    assert network.batches[0] == 1 and max(network.batches) > 3 and network.failures > 0
    assert len(set(network.sizes)) == 1  # every pass at the planned tile size
    network.batches.clear()
    network.failures = 0
    assert np.array_equal(deblurrer(image).pixels, image)
    assert network.failures == 0 and max(network.batches) in (2, 3)  # the split size is kept


def test_batched_tiles_give_the_same_image_as_one_tile_per_pass():
    model, image = tiny_nafnet(), np.random.default_rng(1).random((96, 130, 3), dtype=np.float32)
    calls: list[int] = []

    def run(memory_budget: int) -> np.ndarray:
        deblurrer = Deblurrer(model, tile=64, overlap=16, memory_budget=memory_budget, batch_tiles=True)
        forward = deblurrer._forward
        deblurrer._forward = lambda x: calls.append(len(x)) or forward(x)
        return deblurrer(image).pixels

    one_by_one = run(memory_budget=1)
    assert set(calls) == {1}
    tiles = len(calls)
    calls.clear()
    batched = run(memory_budget=2**30)
    assert max(calls) > 1 and sum(calls) == tiles
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-5)


def test_tiles_are_batched_on_cuda_only_by_default():
    network = Greedy(limit=10**9)
    image = _image(64, 64, 3)
    deblurrer = Deblurrer(_restorer(network), tile=32, overlap=8)
    assert deblurrer.batch_tiles is False
    assert np.array_equal(deblurrer(image).pixels, image) and set(network.batches) == {1}


def test_out_of_memory_at_the_smallest_tile_fails_the_image():
    deblurrer = Deblurrer(_restorer(Greedy(limit=10), min_tile=16), tile=16)
    with pytest.raises(DeblurkitError, match="out of memory even with 16×16 tiles"):
        deblurrer(_image(40, 40, 3))


def test_auto_tiling_bounds_the_tile_by_the_memory_budget():
    image = _image(200, 300, 3)
    deblurrer = Deblurrer(tiny_nafnet())
    deblurrer.prepare()
    per_pixel = deblurrer._bytes_per_pixel
    assert per_pixel is not None and per_pixel > 0
    deblurrer.memory_budget = int(per_pixel * 128 * 128)
    small = deblurrer(image)
    assert small.tile is not None and small.tile[0] * small.tile[1] <= 128 * 128
    deblurrer.memory_budget = int(per_pixel * 1e6)
    assert deblurrer(image).tile is None


def test_explicit_tiles_below_the_minimum_are_raised():
    deblurrer = Deblurrer(tiny_nafnet(), tile=20)
    assert deblurrer.notes and "raised from 20 to 64" in deblurrer.notes[0]
    with pytest.raises(UsageError):
        Deblurrer(tiny_nafnet(), tile=-1)


def test_grayscale_is_the_mean_of_the_rgb_outputs():
    model, gray = tiny_nafnet(), np.random.default_rng(0).random((20, 28), dtype=np.float32)
    out = deblur_image(model, gray, tile=0)
    rgb = deblur_image(model, np.repeat(gray[:, :, None], 3, axis=2), tile=0)
    assert out.shape == gray.shape
    np.testing.assert_allclose(out, rgb.mean(axis=2), atol=1e-6)


def _folder(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(9, 11, 3, seed=i)).save(path)
    return root


def test_collect_jobs_names_and_refusals(tmp_path):
    photos = _folder(tmp_path / "photos", ["a.png", "b.jpg", "sub/c.png", ".hidden.png"])
    (photos / "notes.txt").write_text("not an image")
    jobs, folder = collect_jobs([photos])
    assert folder == tmp_path / "photos-deblurred"
    assert [j.output.name for j in jobs] == ["a.png", "b.jpg"]
    jobs, _ = collect_jobs([photos], tmp_path / "out", recursive=True, suffix="_sharp", ext="tif")
    assert [j.output.relative_to(tmp_path / "out").as_posix() for j in jobs] == [
        "a_sharp.tif",
        "b_sharp.tif",
        "sub/c_sharp.tif",
    ]
    jobs, _ = collect_jobs([photos / "a.png", photos / "sub" / "c.png"], photos)
    assert "would overwrite an input" in jobs[0].error and jobs[1].error is None
    jobs, _ = collect_jobs([photos / "sub" / "c.png", tmp_path / "o" / "c.png"], tmp_path / "o")
    assert all("would overwrite an input" in j.error for j in jobs)  # o/c.png is an input, and c.png's output
    jobs, _ = collect_jobs([photos / "a.png", photos / "sub" / "a.png", photos / "a.png"], tmp_path / "o")
    assert len(jobs) == 2 and jobs[1].error and "writes the same output" in jobs[1].error
    jobs, folder = collect_jobs([str(photos / "*.png")])
    assert folder == photos / "deblurred" and [j.input.name for j in jobs] == ["a.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images found"):
        collect_jobs([tmp_path / "empty"])
    assert collect_jobs([photos / "missing.png"])[0][0].input.name == "missing.png"  # fails when read
    with pytest.raises(UsageError, match="no files match"):
        collect_jobs([str(photos / "*.gif")])


def test_output_folder_inside_an_input_folder_is_not_read_back(tmp_path):
    photos = _folder(tmp_path / "photos", ["a.png", "out/a.png"])
    jobs, _ = collect_jobs([photos], photos / "out", recursive=True)
    assert [j.input.relative_to(photos).as_posix() for j in jobs] == ["a.png"]


def test_sharding_splits_the_sorted_list(monkeypatch):
    jobs, _ = collect_jobs([f"img{i}.png" for i in range(7)], "out")
    parts = [shard(jobs, rank, 3) for rank in range(3)]
    assert sorted(j.input.name for part in parts for j in part) == sorted(j.input.name for j in jobs)
    assert [len(p) for p in parts] == [3, 2, 2]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert distributed_env() == (1, 2, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(UsageError):
        distributed_env()


def test_deblur_files_api(tmp_path):
    photos = _folder(tmp_path / "photos", ["a.png", "b.png", "c.png"])
    (photos / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    model = tiny_nafnet()
    results = list(deblur_files([photos], tmp_path / "out", model=model, tile=0, rank=0, world_size=1))
    assert [(r.input.name, r.status) for r in results] == [
        ("a.png", "done"),
        ("b.png", "done"),
        ("c.png", "done"),
        ("d.png", "failed"),
    ]
    expected = deblur_image(model, np.asarray(Image.open(photos / "a.png")), tile=0)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), expected)
    again = list(deblur_files([photos], tmp_path / "out", model=model, tile=0, rank=1, world_size=2))
    assert [(r.input.name, r.status) for r in again] == [("b.png", "skipped"), ("d.png", "failed")]
