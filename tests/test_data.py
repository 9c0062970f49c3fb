"""Pair discovery, up-front checks with one-line reports, seeded crops and the resumable sampler."""

import numpy as np
import pytest
import torch
from PIL import Image

from deblurkit.imaging.discovery import DataError, Pair, find_pairs, has_pairs
from deblurkit.synthesis.blur import Degradation
from deblurkit.synthesis.pairs import synthesize_pairs, write_sample_photos
from deblurkit.training.data import (
    EpochBatches,
    PairCrops,
    SynthCrops,
    ValidationSet,
    augment,
    check_pairs,
    sharp_images,
    split,
)


def _image(path, size=(40, 32), seed=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def _layout(root, names, blurry="blur", sharp="sharp", size=(40, 32)):
    for i, name in enumerate(names):
        _image(root / blurry / name, size, seed=i)
        _image(root / sharp / name, size, seed=100 + i)
    return root


@pytest.mark.parametrize(("blurry", "sharp"), [("blur", "sharp"), ("input", "target"), ("lq", "gt")])
def test_layouts_match_by_relative_path_and_stem(tmp_path, blurry, sharp):
    _image(tmp_path / blurry / "a.png")
    _image(tmp_path / sharp / "a.jpg")
    _image(tmp_path / blurry / "sub" / "b.png")
    _image(tmp_path / sharp / "sub" / "b.png")
    scan = find_pairs(tmp_path)
    assert [p.name for p in scan.pairs] == ["a", "sub/b"] and not scan.problems
    assert scan.pairs[0].target.suffix == ".jpg"


def test_gopro_layout_at_depth(tmp_path):
    for scene in ("GOPR0372_07_00", "GOPR0374_11_00"):
        _layout(tmp_path / "train" / scene, ["000047.png", "000048.png"])
        _image(tmp_path / "train" / scene / "blur_gamma" / "000047.png")  # ignored
    scan = find_pairs(tmp_path)
    assert len(scan.pairs) == 4 and scan.pairs[0].name == "train/GOPR0372_07_00/000047"
    assert has_pairs(tmp_path) and not has_pairs(tmp_path / "train" / "GOPR0372_07_00" / "blur")


def test_csv_list_with_header_relative_to_the_list(tmp_path):
    _layout(tmp_path / "d", ["x.png", "y.png"])
    listing = tmp_path / "pairs.csv"
    listing.write_text("input,target\nd/blur/x.png,d/sharp/x.png\nd/blur/y.png, d/sharp/y.png\n")
    scan = find_pairs(listing)
    assert [p.input.name for p in scan.pairs] == ["x.png", "y.png"] and not scan.problems
    spaced = tmp_path / "pairs.txt"
    spaced.write_text("d/blur/x.png d/sharp/x.png\nd/blur/missing.png d/sharp/x.png\nonly-one.png\n")
    scan = find_pairs(spaced)
    assert len(scan.pairs) == 1
    assert set(scan.problems) == {"listed files that do not exist", "list rows without exactly two paths"}


def test_every_problem_is_reported_with_counts_and_examples(tmp_path):
    root = _layout(tmp_path, ["ok1.png", "ok2.png"])
    _image(root / "blur" / "lonely.png")
    _image(root / "sharp" / "orphan.png")
    _image(root / "blur" / "mismatch.png", (40, 32))
    _image(root / "sharp" / "mismatch.png", (20, 16))
    _image(root / "blur" / "small.png", (10, 10))
    _image(root / "sharp" / "small.png", (10, 10))
    (root / "blur" / "broken.png").write_bytes(b"not a png")
    _image(root / "sharp" / "broken.png")
    scan = check_pairs(find_pairs(root), crop=16)
    assert [p.name for p in scan.pairs] == ["ok1", "ok2"]
    assert scan.bad == 5
    summary = scan.summary()
    assert "1 inputs without a target (blur/lonely)" in summary
    assert "1 targets without an input (sharp/orphan)" in summary
    assert "1 size mismatches (mismatch: 40×32 vs 20×16)" in summary
    assert "1 images smaller than the 16px crop (small: 10×10)" in summary
    assert "1 unreadable images" in summary and "broken.png" in summary
    assert "\n" not in summary and len(scan.report().splitlines()) == 5


def test_full_check_decodes_truncated_files(tmp_path):
    root = _layout(tmp_path, ["a.png"], size=(64, 64))
    data = (root / "blur" / "a.png").read_bytes()
    (root / "blur" / "a.png").write_bytes(data[: len(data) // 2])
    assert check_pairs(find_pairs(root), crop=8, full=True).bad == 1


def test_no_pairs_and_missing_source(tmp_path):
    _image(tmp_path / "photos" / "a.png")
    with pytest.raises(DataError, match=r"no pairs found.*--synthesize"):
        find_pairs(tmp_path / "photos")
    with pytest.raises(DataError, match="no such folder"):
        find_pairs(tmp_path / "nope")


def test_split_is_seeded_and_disjoint(tmp_path):
    pairs = find_pairs(_layout(tmp_path, [f"{i}.png" for i in range(10)])).pairs
    train, val = split(pairs, 0.2, seed=3)
    assert len(val) == 2 and not {p.name for p in train} & {p.name for p in val}
    assert split(pairs, 0.2, seed=3) == (train, val) and len(split(pairs, 3, seed=0)[1]) == 3
    with pytest.raises(DataError, match="leaves no training pairs"):
        split(pairs, 10, seed=0)


def test_crops_are_a_function_of_seed_epoch_and_index(tmp_path):
    pairs = find_pairs(_layout(tmp_path, ["a.png", "b.png"])).pairs
    data = PairCrops(pairs, 16, seed=0)
    a1, b1 = data[(0, 1)]
    a2, b2 = data[(0, 1)]
    assert a1.shape == (3, 16, 16) and a1.dtype == torch.float32
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(data[(1, 1)][0], a1)


def test_crop_and_flip_are_the_same_for_input_and_target(tmp_path):
    _image(tmp_path / "blur" / "a.png")
    (tmp_path / "sharp").mkdir()
    (tmp_path / "sharp" / "a.png").write_bytes((tmp_path / "blur" / "a.png").read_bytes())
    data = PairCrops(find_pairs(tmp_path).pairs, 16, seed=0)
    for epoch in range(6):
        blurry, sharp = data[(epoch, 0)]
        assert torch.equal(blurry, sharp)


def test_augment_covers_the_eight_symmetries():
    image = np.arange(6).reshape(2, 3, 1)
    variants = {augment([image], k)[0].tobytes() + bytes(augment([image], k)[0].shape) for k in range(8)}
    assert len(variants) == 8


def test_synthetic_crops_are_seeded_and_blurred(tmp_path):
    photos = write_sample_photos(tmp_path, ["camera", "astronaut"])
    data = SynthCrops(
        photos, 32, seed=1, degradation=Degradation(kernels=("defocus",), noise=0, shot_noise=0)
    )
    blurry, sharp = data[(0, 0)]
    again = data[(0, 0)]
    assert torch.equal(blurry, again[0]) and torch.equal(sharp, again[1])
    assert blurry.shape == sharp.shape == (3, 32, 32)
    grad = lambda x: (x[:, 1:] - x[:, :-1]).abs().mean()  # noqa: E731
    assert grad(blurry) < grad(sharp)


def test_validation_set_synthesises_once_and_deterministically(tmp_path):
    photos = write_sample_photos(tmp_path, ["camera"])
    val = ValidationSet([Pair(photos[0], photos[0], "camera")], seed=0, degradation=Degradation())
    name, blurry, sharp = val[0]
    other = ValidationSet([Pair(photos[0], photos[0], "camera")], seed=0, degradation=Degradation())
    assert name == "camera" and blurry.shape == sharp.shape == (512, 512, 3)
    assert np.array_equal(other[0][1], blurry) and not np.array_equal(blurry, sharp)


def test_epoch_batches_resume_and_shard():
    full = EpochBatches(10, 3, seed=0)
    stream = iter(full)
    first = [next(stream) for _ in range(7)]  # 3 batches per epoch: crosses two epochs
    assert [b[0][0] for b in first] == [0, 0, 0, 1, 1, 1, 2]
    assert sorted(i for b in first[:3] for _, i in b) == sorted(full.order(0)[:9].tolist())
    resumed = iter(EpochBatches(10, 3, seed=0, start=4))
    assert [next(resumed) for _ in range(3)] == first[4:7]
    ranks = [iter(EpochBatches(10, 1, seed=0, rank=r, world=3)) for r in range(3)]
    assert [next(r)[0] for r in ranks] == first[0]  # three ranks of batch 1 = one global batch of 3
    with pytest.raises(DataError, match="fewer than one batch of 12"):
        EpochBatches(10, 4, seed=0, world=3)


def test_find_images_and_synthesized_pair_folders(tmp_path):
    photos = tmp_path / "photos"
    write_sample_photos(photos, ["camera", "coffee"])
    assert [p.name for p in sharp_images(photos)] == ["camera.png", "coffee.png"]
    records = list(synthesize_pairs(photos, tmp_path / "pairs", Degradation(), seed=5))
    assert [r["name"] for r in records] == ["camera", "coffee"]
    scan = check_pairs(find_pairs(tmp_path / "pairs"), crop=64)
    assert len(scan.pairs) == 2 and not scan.problems
    gray = np.asarray(Image.open(tmp_path / "pairs" / "blur" / "camera.png"))
    assert gray.ndim == 2 and gray.dtype == np.uint8  # the source's mode and depth are kept
    list(synthesize_pairs(photos, tmp_path / "again", Degradation(), seed=5))
    assert (tmp_path / "again" / "blur" / "coffee.png").read_bytes() == (
        tmp_path / "pairs" / "blur" / "coffee.png"
    ).read_bytes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        sharp_images(tmp_path / "empty")
