"""Training data: pairs found and checked up front, seeded random crops, synthetic pairs on the fly.

* Pairs are found by :func:`~deblurkit.imaging.discovery.find_pairs` (any of the usual layouts at
  any depth, or a list of pairs). :func:`check_pairs` then
  reads every image header (or decodes every image) and collects unmatched files, unreadable images,
  size mismatches and images smaller than the crop; :class:`DataError` reports them in one line.
* :class:`PairCrops` and :class:`SynthCrops` are map-style datasets indexed by ``(epoch, index)``:
  every random choice (crop, flip/rotation, blur kernel, noise) comes from a generator seeded with
  ``(seed, epoch, index)``, so a sample is the same whichever worker loads it and whenever.
* :class:`EpochBatches` is the batch sampler: a seeded permutation per epoch, split into global
  batches and then among the ranks; it starts at any position, which is how a run resumes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import ImageReadError
from ..imaging.discovery import DataError, DataScan, Pair, image_files, read_list
from ..imaging.reading import read_image, read_size, to_float
from ..synthesis.blur import Degradation, degrade

__all__ = [
    "EpochBatches",
    "MixedCrops",
    "PairCrops",
    "SynthCrops",
    "ValidationSet",
    "augment",
    "check_pairs",
    "load_rgb",
    "sample_rng",
    "sharp_images",
    "split",
]

# Tags that keep the seeded streams of samples, epoch orders and validation pairs apart.
_SAMPLE, _ORDER, _VALIDATION, _MIX = 0, 1, 2, 3


def sharp_images(source: str | Path) -> list[Path]:
    """Every image file below a folder (sorted, hidden files skipped), or the images a list names."""
    source = Path(source)
    if source.is_file():
        return [row[0] for row in read_list(source)]
    if not source.is_dir():
        raise DataError(f"{source}: no such folder")
    images = image_files(source)
    if not images:
        raise DataError(f"{source}: no images found")
    return images


# -- checking -----------------------------------------------------------------------------------------
def _size(path: Path, full: bool) -> tuple[int, int]:
    """(height, width) of an image as :func:`read_image` would return it; decodes all when ``full``."""
    if full:
        loaded = read_image(path)
        return loaded.height, loaded.width
    return read_size(path)


def _check(item: tuple[Sequence[Path], bool]) -> list[tuple[int, int] | str]:
    paths, full = item
    sizes: list[tuple[int, int] | str] = []
    for path in paths:
        try:
            sizes.append(_size(path, full))
        except ImageReadError as err:
            sizes.append(str(err))
    return sizes


def check_pairs(
    scan: DataScan, crop: int, *, full: bool = False, workers: int = 4, paired: bool = True
) -> DataScan:
    """Read every image's size (``full``: decode every image) and record unreadable images, size
    mismatches and images smaller than ``crop`` in ``scan.problems``. Returns the usable part."""
    items = [((p.input, p.target) if paired else (p.target,), full) for p in scan.pairs]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(_check, items))
    good = []
    for pair, sizes in zip(scan.pairs, results, strict=True):
        errors = [s for s in sizes if isinstance(s, str)]
        if errors:
            scan.add("unreadable images", errors[0])
        elif len(set(sizes)) > 1:
            (h1, w1), (h2, w2) = sizes
            scan.add("size mismatches", f"{pair.name}: {w1}×{h1} vs {w2}×{h2}")
        elif min(sizes[0]) < crop:
            h, w = sizes[0]
            scan.add(f"images smaller than the {crop}px crop", f"{pair.name}: {w}×{h}")
        else:
            good.append(pair)
    return DataScan(scan.source, good, scan.problems)


def split(pairs: Sequence[Pair], val: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, validation): ``val`` < 1 holds out that share, ``val`` ≥ 1 that many pairs (seeded)."""
    if val <= 0:
        return list(pairs), []
    count = int(val) if val >= 1 else max(1, round(len(pairs) * val))
    if count >= len(pairs):
        raise DataError(f"a validation split of {val:g} leaves no training pairs (there are {len(pairs)})")
    chosen = set(np.random.default_rng([seed, _VALIDATION]).permutation(len(pairs))[:count].tolist())
    train = [p for i, p in enumerate(pairs) if i not in chosen]
    return train, [p for i, p in enumerate(pairs) if i in chosen]


# -- samples ------------------------------------------------------------------------------------------
def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one training sample: the same (seed, epoch, index), the same sample."""
    return np.random.default_rng([seed, _SAMPLE, epoch, index])


def load_rgb(path: Path) -> np.ndarray:
    """An image as H×W×3 float32 in [0, 1] (grayscale replicated, alpha dropped)."""
    pixels = to_float(read_image(path).pixels)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def augment(images: Sequence[np.ndarray], choice: int) -> list[np.ndarray]:
    """One of the 8 flips/90° rotations (``choice`` in 0..7), the same for every image."""
    out = []
    for image in images:
        image = np.rot90(image, choice % 4)
        out.append(np.ascontiguousarray(image[:, ::-1] if choice >= 4 else image))
    return out


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


class PairCrops(Dataset):
    """Random ``crop``×``crop`` patches of pairs (and flips/rotations), indexed by (epoch, index).
    The last ``cache_images`` decoded images are kept (per worker): small sets of large photos are
    decoded once instead of once per crop."""

    def __init__(
        self, pairs: Sequence[Pair], crop: int, seed: int, *, flips: bool = True, cache_images: int = 32
    ) -> None:
        self.pairs, self.crop, self.seed, self.flips = list(pairs), crop, seed, flips
        self._load = functools.lru_cache(maxsize=cache_images)(load_rgb)

    def __len__(self) -> int:
        return len(self.pairs)

    def _position(self, rng: np.random.Generator, height: int, width: int) -> tuple[int, int]:
        if min(height, width) < self.crop:
            raise DataError(f"an image of {width}×{height} is smaller than the {self.crop}px crop")
        return int(rng.integers(height - self.crop + 1)), int(rng.integers(width - self.crop + 1))

    def _finish(self, rng: np.random.Generator, images: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
        if self.flips:
            images = augment(images, int(rng.integers(8)))
        return tuple(_tensor(image) for image in images)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        epoch, index = item
        rng = sample_rng(self.seed, epoch, index)
        pair = self.pairs[index]
        blurry, sharp = self._load(pair.input), self._load(pair.target)
        if blurry.shape != sharp.shape:
            raise DataError(f"{pair.name}: input and target differ in size")
        y, x = self._position(rng, *sharp.shape[:2])
        window = (slice(y, y + self.crop), slice(x, x + self.crop))
        return self._finish(rng, [blurry[window], sharp[window]])


class SynthCrops(PairCrops):
    """Pairs made on the fly from sharp images: a random crop, blurred with
    :func:`~deblurkit.synthesis.blur.degrade` (the kernel sees real image context around the crop), then
    flipped/rotated."""

    def __init__(
        self, images: Sequence[Path], crop: int, seed: int, degradation: Degradation, *, flips: bool = True
    ) -> None:
        super().__init__([Pair(p, p, p.name) for p in images], crop, seed, flips=flips)
        self.degradation = degradation

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        epoch, index = item
        rng = sample_rng(self.seed, epoch, index)
        sharp = self._load(self.pairs[index].target)
        height, width = sharp.shape[:2]
        y, x = self._position(rng, height, width)
        margin = self.degradation.margin
        top, left = max(0, y - margin), max(0, x - margin)
        region = sharp[top : min(height, y + self.crop + margin), left : min(width, x + self.crop + margin)]
        blurred, _ = degrade(region, rng, self.degradation)
        window = (slice(y - top, y - top + self.crop), slice(x - left, x - left + self.crop))
        return self._finish(rng, [blurred[window], region[window]])


class MixedCrops(Dataset):
    """Samples drawn from several crop datasets in set shares: each (epoch, index) picks its source
    with a seeded draw weighted by ``shares``, then takes that source's sample at a derived index."""

    def __init__(self, sources: Sequence[Dataset], shares: Sequence[float], seed: int) -> None:
        if len(sources) != len(shares) or not sources or any(s < 0 for s in shares) or sum(shares) <= 0:
            raise DataError("mixed training data needs one non-negative share per source, not all zero")
        self.sources, self.seed = list(sources), seed
        self.cumulative = np.cumsum(np.asarray(shares, np.float64) / sum(shares))

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        epoch, index = item
        rng = np.random.default_rng([self.seed, _MIX, epoch, index])
        which = min(int(np.searchsorted(self.cumulative, rng.uniform(), side="right")), len(self.sources) - 1)
        source = self.sources[which]
        # A unique inner "epoch" per mixed sample keeps every draw's randomness its own.
        return source[(epoch * len(self) + index, int(rng.integers(len(source))))]


class ValidationSet:
    """Full-image validation pairs: read from files, or synthesised once from sharp images (seeded)."""

    def __init__(self, pairs: Sequence[Pair], seed: int, degradation: Degradation | None = None) -> None:
        self.pairs, self.seed, self.degradation = list(pairs), seed, degradation
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        """(name, blurry, sharp) as H×W×3 float32 arrays."""
        pair = self.pairs[index]
        if self.degradation is None:
            return pair.name, load_rgb(pair.input), load_rgb(pair.target)
        if index not in self._cache:
            sharp = load_rgb(pair.target)
            rng = np.random.default_rng([self.seed, _VALIDATION, index])
            self._cache[index] = (degrade(sharp, rng, self.degradation)[0], sharp)
        return pair.name, *self._cache[index]


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """An endless batch sampler: per epoch a seeded permutation cut into global batches of
    ``batch × world`` samples (the rest dropped), rank ``rank`` taking its share of each.

    ``start`` is the number of batches already consumed: iteration resumes exactly there.
    """

    def __init__(
        self, size: int, batch: int, seed: int, *, start: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        if size < batch * world:
            raise DataError(
                f"the training set has {size} samples, fewer than one batch of {batch * world}; "
                "lower --batch-size or add data"
            )
        self.size, self.batch, self.seed, self.start = size, batch, seed, start
        self.rank, self.world = rank, world
        self.per_epoch = size // (batch * world)

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of an epoch."""
        return np.random.default_rng([self.seed, _ORDER, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        consumed = self.start
        while True:
            epoch, position = divmod(consumed, self.per_epoch)
            order = self.order(epoch)
            for j in range(position, self.per_epoch):
                first = (j * self.world + self.rank) * self.batch
                yield [(epoch, int(i)) for i in order[first : first + self.batch]]
            consumed = (epoch + 1) * self.per_epoch
