"""Real-blur synthesis: GoPro-style frame averaging, spatially varying shake, clipped highlights,
measured kernel banks, and the mixed training sources. Tiny frame sequences are made in the tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from deblurkit.errors import DeblurkitError
from deblurkit.synthesis.blur import Degradation, blur_image, degrade, gaussian_kernel
from deblurkit.synthesis.frames import (
    FrameAveraging,
    FrameCrops,
    average_frames,
    draw_window,
    frame_sequences,
    synthesize_from_frames,
)
from deblurkit.training.data import MixedCrops


def _moving_sequence(folder, count=15, size=(40, 48)):
    """A bright square sliding 2 px a frame over a textured background: real motion blur when averaged."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 120, (*size, 3), dtype=np.uint8)
    for i in range(count):
        frame = background.copy()
        frame[10:22, 4 + 2 * i : 16 + 2 * i] = 250
        Image.fromarray(frame).save(folder / f"{i + 1:06d}.png")
    return folder


def test_average_is_taken_in_linear_light():
    dark, bright = np.zeros((2, 2, 3), np.float32), np.ones((2, 2, 3), np.float32)
    mean = average_frames([dark, bright], gamma=2.2)
    assert np.allclose(mean, 0.5 ** (1 / 2.2))  # not 0.5: light adds up linearly
    assert np.allclose(average_frames([dark, bright], gamma=1.0), 0.5)


def test_sequences_are_found_in_natural_order(tmp_path):
    _moving_sequence(tmp_path / "scene_a", count=3)
    folder = tmp_path / "scene_b"
    folder.mkdir()
    for name in ("2.png", "10.png", "1.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / name)
    sequences = frame_sequences(tmp_path)
    assert [[p.name for p in s] for s in sequences][1] == ["1.png", "2.png", "10.png"]
    with pytest.raises(DeblurkitError):
        frame_sequences(tmp_path, min_length=20)


def test_windows_respect_the_count_range():
    settings = FrameAveraging(frames=(7, 13))
    rng = np.random.default_rng(1)
    for _ in range(50):
        start, count = draw_window(rng, 20, settings)
        assert 7 <= count <= 13 and start >= 0 and start + count <= 20
    with pytest.raises(DeblurkitError):
        draw_window(rng, 5, settings)


def test_synthesized_frame_pairs_blur_the_motion_and_keep_the_middle_frame(tmp_path):
    frames = _moving_sequence(tmp_path / "frames" / "scene")
    records = list(
        synthesize_from_frames(tmp_path / "frames", tmp_path / "out", FrameAveraging(frames=(5, 5)))
    )
    assert len(records) == 3  # 15 frames, windows of 5 back to back
    first = records[0]
    assert first["frames"] == [f"{i:06d}.png" for i in range(1, 6)]
    sharp = np.asarray(Image.open(tmp_path / "out" / "sharp" / f"{first['name']}.png"))
    assert np.array_equal(sharp, np.asarray(Image.open(frames / "000003.png")))
    blurry = np.asarray(Image.open(tmp_path / "out" / "blur" / f"{first['name']}.png")).astype(float)
    # The square moved 8 px during the window: its leading edge is smeared, the static background is not.
    assert blurry[15, 20:30].std() > 40  # inside the streak: partial coverage
    assert np.abs(blurry[35, :] - sharp[35, :]).max() <= 1  # static row untouched
    manifest = (tmp_path / "out" / "synth.jsonl").read_text().splitlines()
    assert json.loads(manifest[0])["frames"]["frames"] == [5, 5]


def test_frame_crops_are_seeded_and_paired(tmp_path):
    sequences = frame_sequences(_moving_sequence(tmp_path / "frames"))
    crops = FrameCrops(sequences, 16, seed=3, settings=FrameAveraging(frames=(5, 9)))
    a, b = crops[(0, 4)], crops[(0, 4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape == a[1].shape == (3, 16, 16)
    assert not torch.equal(crops[(0, 4)][0], crops[(0, 5)][0])


def test_spatially_varying_blur_differs_across_the_image():
    """A point grid blurred with a 3×3 grid of different kernels: the spread of the points differs
    from one corner to the other; with a single kernel it is the same everywhere."""
    image = np.zeros((96, 96, 3), np.float32)
    image[8::16, 8::16] = 1.0
    settings = Degradation(
        kernels=("gaussian",),
        gaussian_sigma=(0.5, 3.0),
        spatially_varying=1.0,
        noise=0,
        shot_noise=0,
        bits=0,
        linear_light=False,
    )
    blurred, info = degrade(image, np.random.default_rng(4), settings)
    assert info["kind"] == "spatially varying"

    def spread(y, x):
        patch = blurred[y - 6 : y + 7, x - 6 : x + 7, 0]
        return patch.max()

    peaks = [spread(y, x) for y in (8, 88) for x in (8, 88)]
    assert max(peaks) - min(peaks) > 0.05
    uniform = blur_image(image, gaussian_kernel(1.5))
    same = [uniform[y - 6 : y + 7, x - 6 : x + 7, 0].max() for y in (24, 72) for x in (24, 72)]
    assert max(same) - min(same) < 1e-5


def test_boosted_highlights_streak_and_clip():
    image = np.full((40, 40, 3), 0.2, np.float32)
    image[20, 20] = 1.0  # one saturated light
    base = {"kernels": ("gaussian",), "gaussian_sigma": (1.5, 1.5), "noise": 0, "shot_noise": 0, "bits": 0}
    plain, _ = degrade(image, np.random.default_rng(0), Degradation(**base))
    boosted, info = degrade(
        image, np.random.default_rng(0), Degradation(**base, highlights=1.0, highlight_gain=(4, 4))
    )
    assert info["highlight_gain"] == 4
    assert boosted[20, 21].mean() > plain[20, 21].mean() + 0.05  # a brighter streak around the light
    assert boosted.max() <= 1.0  # clipped like a sensor


def test_kernel_bank_kernels_are_used(tmp_path):
    box = np.zeros((9, 9))
    box[4, :] = 1  # a horizontal 9-px streak
    bank = tmp_path / "bank.npz"
    np.savez(bank, k0=box)
    settings = Degradation(
        kernels=("bank",), kernel_bank=str(bank), noise=0, shot_noise=0, bits=0, linear_light=False
    )
    image = np.zeros((21, 21, 3), np.float32)
    image[10, 10] = 1
    blurred, info = degrade(image, np.random.default_rng(0), settings)
    assert info["kind"] == "bank" and info["index"] == 0
    rows, cols = np.nonzero(blurred[..., 0] > 1e-4)
    assert (np.ptp(rows), np.ptp(cols)) in ((0, 8), (8, 0))  # a 9-px line, horizontal or rotated 90°
    with pytest.raises(DeblurkitError, match="kernel bank"):
        Degradation(kernels=("bank",))


def test_mixed_sources_follow_their_shares(tmp_path):
    class Constant(torch.utils.data.Dataset):
        def __init__(self, value):
            self.value = value

        def __len__(self):
            return 10

        def __getitem__(self, item):
            return (torch.full((1,), float(self.value)),)

    mixed = MixedCrops([Constant(0), Constant(1)], [0.25, 0.75], seed=0)
    drawn = [mixed[(0, i)][0].item() for i in range(400)]
    assert 0.65 < np.mean(drawn) < 0.85
    assert [mixed[(0, i)][0].item() for i in range(20)] == drawn[:20]  # seeded


def test_train_cli_takes_frames_without_pairs(tmp_path):
    from click.testing import CliRunner
    from test_training import TINY_NAFNET

    from deblurkit.cli.train import train_command

    _moving_sequence(tmp_path / "frames" / "scene", count=12, size=(48, 48))
    result = CliRunner().invoke(
        train_command,
        [
            "--architecture", "nafnet", "--arch-config", json.dumps(TINY_NAFNET),
            "--frames", str(tmp_path / "frames"),
            "--frames-count", "3,5", "--crop", "32", "--batch-size", "2", "--steps", "2", "--workers", "0",
            "--loss", "l1", "--val-every", "0", "-o", str(tmp_path / "run"), "-q",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "run").rglob("*.safetensors"))
    bad = CliRunner().invoke(
        train_command, ["--architecture", "nafnet", "--frames-share", "2", "-o", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "Invalid value for '--frames-share'" in bad.output


def test_synth_cli_from_frames(tmp_path):
    from click.testing import CliRunner

    from deblurkit.cli.train import synth

    _moving_sequence(tmp_path / "frames" / "scene", count=10, size=(24, 24))
    result = CliRunner().invoke(
        synth,
        [
            str(tmp_path / "frames"),
            "-o",
            str(tmp_path / "pairs"),
            "--from-frames",
            "--frames-count",
            "5,5",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 pairs" in result.output
    assert len(list((tmp_path / "pairs" / "blur").glob("*.png"))) == 2
    bad = CliRunner().invoke(
        synth, [str(tmp_path / "frames"), "-o", str(tmp_path / "x"), "--from-frames", "--frames-count", "9,3"]
    )
    assert bad.exit_code != 0 and "low ≤ high" in str(bad.exception or bad.output)
    nan = CliRunner().invoke(
        synth, [str(tmp_path / "frames"), "-o", str(tmp_path / "y"), "--from-frames", "--frames-gamma", "nan"]
    )
    assert nan.exit_code == 2 and "not a finite number" in nan.output
