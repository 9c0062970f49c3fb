"""Real blur from consecutive sharp video frames, made the way the GoPro dataset makes it.

Nah, Kim & Lee (CVPR 2017) average N consecutive frames of a 240-fps video in linear light (the
camera response approximated by gamma 2.2) and take the middle frame as the sharp target: camera
shake and moving objects blur the average just as a longer exposure would, non-uniformly and with
occlusions, which a single convolution kernel cannot reproduce.

:class:`FrameAveraging` holds the settings; :func:`average_frames` makes one blurry image;
:func:`frame_sequences` finds the sequences (folders of consecutive frames) under a root;
:func:`draw_window` picks a random window of one; :class:`FrameCrops` makes training pairs on the
fly; :func:`synthesize_from_frames` writes a paired set.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DeblurkitError, UsageError
from ..imaging.atomic import check_writable
from ..imaging.compare import is_comparison
from ..imaging.discovery import outside
from .blur import add_camera_noise, checked_range, quantise_and_compress

__all__ = [
    "MAX_FRAMES",
    "FrameAveraging",
    "FrameCrops",
    "average_frames",
    "blur_from_frames",
    "draw_window",
    "frame_sequences",
    "synthesize_from_frames",
]

_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MAX_FRAMES = 10_000
"""The most frames one blurry image may average."""


@dataclass(frozen=True)
class FrameAveraging:
    """How frames become a blurry image.

    ``frames``: how many consecutive frames to average, drawn uniformly from (low, high) inclusive
    (the GoPro dataset uses 7–13). ``gamma``: the camera response undone before averaging and redone
    after (2.2 as in the GoPro dataset; 1 averages the stored values). ``noise``/``shot_noise``:
    largest read noise and shot-noise gain added in linear light after averaging (0: none);
    ``jpeg``: probability of JPEG compression at a quality from ``jpeg_quality``.
    """

    frames: tuple[int, int] = (7, 13)
    gamma: float = 2.2
    noise: float = 0.0
    shot_noise: float = 0.0
    jpeg: float = 0.0
    jpeg_quality: tuple[float, float] = (60.0, 95.0)

    def __post_init__(self) -> None:
        low, high = (int(v) for v in checked_range(self, "frames"))
        if not 1 <= low <= high <= MAX_FRAMES:
            raise UsageError(
                f"frames per blurry image must be 1 ≤ low ≤ high ≤ {MAX_FRAMES}, got {low}, {high}"
            )
        object.__setattr__(self, "frames", (low, high))
        object.__setattr__(self, "jpeg_quality", checked_range(self, "jpeg_quality", 100))
        if not self.gamma > 0:
            raise UsageError(f"the frame-averaging gamma must be > 0, got {self.gamma}")
        if not (0 <= self.noise < math.inf and 0 <= self.shot_noise < math.inf and 0 <= self.jpeg <= 1):
            raise UsageError("frame noise must be ≥ 0 and the JPEG probability in [0, 1]")


def average_frames(frames: Sequence[np.ndarray], gamma: float = 2.2, *, linear: bool = False) -> np.ndarray:
    """The mean of H×W×C float frames in [0, 1], taken in linear light (``x ** gamma``) and
    returned display-referred (``** (1 / gamma)``), or still linear with ``linear=True``."""
    if not frames:
        raise DeblurkitError("no frames to average")
    total = np.zeros(frames[0].shape, np.float64)
    for frame in frames:
        if frame.shape != total.shape:
            raise DeblurkitError(f"frames differ in size: {frame.shape} and {total.shape}")
        total += np.power(np.clip(frame, 0, 1).astype(np.float64), gamma)
    mean = total / len(frames)
    return (mean if linear else np.power(mean, 1 / gamma)).astype(np.float32)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def frame_sequences(
    root: str | Path, min_length: int = 1, *, exclude: Sequence[Path] = ()
) -> list[list[Path]]:
    """Every folder at or below ``root`` that directly holds at least ``min_length`` image frames,
    as a list of its frames in natural order (``2.png`` before ``10.png``); folders in or below
    ``exclude`` (a run's own outputs) are left out."""
    root = Path(root)
    if not root.is_dir():
        raise DeblurkitError(f"{root} is not a folder of video frames")
    sequences = []
    folders = {p.parent for p in root.rglob("*") if p.suffix.lower() in _FRAME_SUFFIXES} | {root}
    for folder in sorted(outside(folders, exclude)):
        frames = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _FRAME_SUFFIXES),
            key=_natural_key,
        )
        frames = [p for p in frames if not is_comparison(p)]
        if len(frames) >= min_length:
            sequences.append(frames)
    if not sequences:
        raise DeblurkitError(f"{root} holds no sequence of at least {min_length} frames")
    return sequences


def draw_window(rng: np.random.Generator, length: int, settings: FrameAveraging) -> tuple[int, int]:
    """A random (start, count) window of a sequence of ``length`` frames; the target is frame
    ``start + count // 2`` (the middle one; for an even count, the later of the two)."""
    low, high = settings.frames
    high = min(high, length)
    if low > high:
        raise DeblurkitError(f"a sequence of {length} frames is shorter than {low} frames to average")
    count = int(rng.integers(low, high + 1))
    return int(rng.integers(length - count + 1)), count


def blur_from_frames(
    frames: Sequence[np.ndarray], rng: np.random.Generator, settings: FrameAveraging
) -> tuple[np.ndarray, np.ndarray]:
    """(blurry, sharp) from one window of frames: their average (with the optional noise and JPEG),
    and the middle frame. No randomness is drawn when noise and JPEG are off."""
    sharp = frames[len(frames) // 2].astype(np.float32)
    if not (settings.noise or settings.shot_noise or settings.jpeg):
        return average_frames(frames, settings.gamma), sharp
    light = average_frames(frames, settings.gamma, linear=True)
    light, _ = add_camera_noise(light, rng, settings.noise, settings.shot_noise)
    blurred = np.power(light, 1 / settings.gamma).astype(np.float32)
    blurred, _ = quantise_and_compress(blurred, rng, 0, settings.jpeg, settings.jpeg_quality)
    return blurred, sharp


def synthesize_from_frames(
    source: str | Path, output: str | Path, settings: FrameAveraging, *, stride: int = 0, seed: int = 0
) -> Iterator[dict]:
    """Write ``output/blur`` and ``output/sharp`` from the frame sequences under ``source``: windows
    every ``stride`` frames (0: back to back, no frame used twice), each of a random length. A record
    per pair goes to ``output/synth.jsonl`` and is yielded."""
    from ..imaging.reading import read_image
    from ..imaging.writing import write_image
    from ..training.data import load_rgb

    output = Path(output)
    check_writable(output)
    manifest = output / "synth.jsonl"
    manifest.write_text(json.dumps({"seed": seed, "frames": asdict(settings)}) + "\n", encoding="utf-8")
    root = Path(source)
    written = (output / "blur", output / "sharp")  # never read back as frames
    for number, sequence in enumerate(frame_sequences(root, settings.frames[0], exclude=written)):
        rng = np.random.default_rng([seed, number])
        start = 0
        while True:
            count = int(rng.integers(settings.frames[0], settings.frames[1] + 1))
            if start + count > len(sequence):
                break
            window = sequence[start : start + count]
            blurred, sharp = blur_from_frames([load_rgb(p) for p in window], rng, settings)
            middle = window[len(window) // 2]
            scene = middle.parent.relative_to(root).as_posix().replace("/", "_")
            name = f"{scene}_{middle.stem}_n{count}" if scene != "." else f"{middle.stem}_n{count}"
            like = read_image(middle)
            write_image(output / "blur" / f"{name}.png", np.rint(blurred * 255).astype(np.uint8), like=like)
            write_image(output / "sharp" / f"{name}.png", np.rint(sharp * 255).astype(np.uint8), like=like)
            record = {"name": name, "frames": [p.name for p in window]}
            with manifest.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            yield record
            start += stride or count


class FrameCrops(Dataset):
    """Training pairs made on the fly from frame sequences: each sample a fresh random window of
    consecutive frames (of a random length), averaged the GoPro way, then one random crop of the
    average and of its middle frame, flipped/rotated. Indexed by ``(epoch, index)`` like the other
    crop datasets; decoded frames are kept in memory (``cache_frames``) since windows overlap."""

    def __init__(
        self,
        sequences: Sequence[Sequence[Path]],
        crop: int,
        seed: int,
        settings: FrameAveraging,
        *,
        flips: bool = True,
        cache_frames: int = 512,
    ) -> None:
        self.sequences = [list(s) for s in sequences if len(s) >= settings.frames[0]]
        if not self.sequences:
            raise DeblurkitError(
                f"no frame sequence has the {settings.frames[0]} frames one blurry image needs"
            )
        self.crop, self.seed, self.settings, self.flips = crop, seed, settings, flips
        self._load = functools.lru_cache(maxsize=cache_frames)(_load_frame)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sequences)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        from ..training.data import augment, sample_rng

        epoch, index = item
        rng = sample_rng(self.seed, epoch, index)
        sequence = self.sequences[int(rng.integers(len(self.sequences)))]
        start, count = draw_window(rng, len(sequence), self.settings)
        first = self._load(sequence[start])
        height, width = first.shape[:2]
        if min(height, width) < self.crop:
            raise DeblurkitError(f"frames of {width}×{height} are smaller than the {self.crop}px crop")
        y, x = int(rng.integers(height - self.crop + 1)), int(rng.integers(width - self.crop + 1))
        window = (slice(y, y + self.crop), slice(x, x + self.crop))
        frames = [self._load(p)[window].astype(np.float32) / 255 for p in sequence[start : start + count]]
        blurred, sharp = blur_from_frames(frames, rng, self.settings)
        if self.flips:
            blurred, sharp = augment([blurred, sharp], int(rng.integers(8)))
        return tuple(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in (blurred, sharp))


def _load_frame(path: Path) -> np.ndarray:
    """A frame as H×W×3 uint8 (8-bit sequences are what videos give; kept compact in the cache)."""
    from ..training.data import load_rgb

    return np.rint(load_rgb(path) * 255).astype(np.uint8)
