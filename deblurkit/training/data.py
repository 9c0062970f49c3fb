"""Training data: pairs found and checked up front, seeded random crops, synthetic pairs on the fly.

* :func:`find_pairs` reads a folder in any of the usual layouts (``blur/`` + ``sharp/``, ``input/`` +
  ``target/``, ``lq/`` + ``gt/``, at any depth, so GoPro's ``train/<scene>/blur|sharp`` works),
  matching files by relative path and stem, or a CSV/txt list of pairs. :func:`check_pairs` then
  reads every image header (or decodes every image) and collects unmatched files, unreadable images,
  size mismatches and images smaller than the crop; :class:`DataError` reports them in one line.
* :class:`PairCrops` and :class:`SynthCrops` are map-style datasets indexed by ``(epoch, index)``:
  every random choice (crop, flip/rotation, blur kernel, noise) comes from a generator seeded with
  ``(seed, epoch, index)``, so a sample is the same whichever worker loads it and whenever.
* :class:`EpochBatches` is the batch sampler: a seeded permutation per epoch, split into global
  batches and then among the ranks; it starts at any position, which is how a run resumes.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from ..errors import DeblurkitError, ImageReadError
from ..imaging.compare import is_comparison
from ..imaging.reading import from_float, read_image, to_float
from ..synthesis.blur import Degradation, degrade

__all__ = [
    "IMAGE_SUFFIXES",
    "PAIR_LAYOUTS",
    "DataError",
    "DataScan",
    "EpochBatches",
    "MixedCrops",
    "Pair",
    "PairCrops",
    "SynthCrops",
    "ValidationSet",
    "augment",
    "check_pairs",
    "find_images",
    "find_pairs",
    "has_pairs",
    "load_rgb",
    "sample_rng",
    "split",
    "synthesize_pairs",
    "write_sample_photos",
]

PAIR_LAYOUTS = (("blur", "sharp"), ("input", "target"), ("lq", "gt"))
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm"})
_EXAMPLES = 3
# Tags that keep the seeded streams of samples, epoch orders and validation pairs apart.
_SAMPLE, _ORDER, _VALIDATION, _MIX = 0, 1, 2, 3


class DataError(DeblurkitError):
    """Training data that cannot be used as given (exit code 2, like a usage error)."""

    exit_code = 2


@dataclass(frozen=True)
class Pair:
    """A blurry input and its sharp target; ``name`` identifies it in messages."""

    input: Path
    target: Path
    name: str


@dataclass
class DataScan:
    """The pairs a source holds and the problems found with it (one line each)."""

    source: Path
    pairs: list[Pair]
    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, item: str) -> None:
        self.problems.setdefault(kind, []).append(item)

    @property
    def bad(self) -> int:
        """Number of problems found."""
        return sum(len(items) for items in self.problems.values())

    def summary(self) -> str:
        """One line: how many problems of each kind, with examples."""
        parts = []
        for kind, items in self.problems.items():
            shown = ", ".join(items[:_EXAMPLES]) + (", …" if len(items) > _EXAMPLES else "")
            parts.append(f"{len(items)} {kind} ({shown})")
        return "; ".join(parts)

    def report(self) -> str:
        """Every problem, one per line."""
        return "".join(f"{kind}: {item}\n" for kind, items in self.problems.items() for item in items)


# -- finding pairs -----------------------------------------------------------------------------------
def _images_under(folder: Path) -> dict[str, Path]:
    """Image files below ``folder`` by relative path without suffix (hidden files skipped)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if is_comparison(path):
            continue
        found.setdefault(relative.with_suffix("").as_posix(), path)
    return found


def find_images(source: str | Path) -> list[Path]:
    """Every image file below a folder (sorted, hidden files skipped), or the images a list names."""
    source = Path(source)
    if source.is_file():
        return [Path(row[0]) for row in _list_rows(source)]
    if not source.is_dir():
        raise DataError(f"{source}: no such folder")
    images = list(_images_under(source).values())
    if not images:
        raise DataError(f"{source}: no images found")
    return images


def _pair_roots(source: Path) -> list[tuple[Path, str, str]]:
    """Folders (at any depth) holding one of the pair layouts, and the layout's folder names."""
    roots = []
    for folder, dirs, _ in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = set(dirs)
        for blurry, sharp in PAIR_LAYOUTS:
            if blurry in names and sharp in names:
                roots.append((Path(folder), blurry, sharp))
                dirs[:] = [d for d in dirs if d not in (blurry, sharp)]
                break
    return roots


def has_pairs(source: str | Path) -> bool:
    """True when ``source`` is a list of pairs or a folder holding one of the pair layouts."""
    source = Path(source)
    return (source.is_file() and source.suffix.lower() in (".csv", ".tsv", ".txt")) or (
        source.is_dir() and bool(_pair_roots(source))
    )


def _scan_folder(source: Path) -> DataScan:
    roots = _pair_roots(source)
    if not roots:
        layouts = ", ".join(f"{a}/ + {b}/" for a, b in PAIR_LAYOUTS)
        raise DataError(
            f"{source}: no pairs found; expected folders {layouts} (at any depth, e.g. GoPro's "
            "train/<scene>/blur|sharp) or a CSV/txt list of pairs; for sharp images only, add --synthesize"
        )
    scan = DataScan(source, [])
    for root, blurry, sharp in roots:
        inputs, targets = _images_under(root / blurry), _images_under(root / sharp)
        relative = root.relative_to(source)
        for key in sorted(inputs.keys() | targets.keys()):
            if key not in targets:
                scan.add("inputs without a target", (relative / blurry / key).as_posix())
            elif key not in inputs:
                scan.add("targets without an input", (relative / sharp / key).as_posix())
            else:
                scan.pairs.append(Pair(inputs[key], targets[key], (relative / key).as_posix()))
    return scan


def _list_rows(path: Path) -> list[list[Path]]:
    """Rows of a CSV/TSV/txt list (comma, tab or space separated), paths relative to the list."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the list: {err}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        delimiter = "," if "," in line else "\t" if "\t" in line else None
        cells = next(csv.reader([line], delimiter=delimiter)) if delimiter else line.split()
        cells = [c.strip() for c in cells if c.strip()]
        if number == 1 and not any((path.parent / c).exists() for c in cells):
            continue  # a header row
        rows.append([path.parent / c for c in cells])
    return rows


def _scan_list(source: Path) -> DataScan:
    scan = DataScan(source, [])
    for row in _list_rows(source):
        if len(row) != 2:
            scan.add("list rows without exactly two paths", " ".join(map(str, row)))
            continue
        missing = [p for p in row if not p.is_file()]
        if missing:
            scan.add("listed files that do not exist", str(missing[0]))
            continue
        scan.pairs.append(Pair(row[0], row[1], row[0].relative_to(source.parent).as_posix()))
    return scan


def find_pairs(source: str | Path) -> DataScan:
    """The pairs of a folder (any :data:`PAIR_LAYOUTS`, at any depth) or of a CSV/txt list."""
    source = Path(source).expanduser()
    if source.is_file():
        return _scan_list(source)
    if not source.is_dir():
        raise DataError(f"{source}: no such folder or list of pairs")
    return _scan_folder(source)


# -- checking -----------------------------------------------------------------------------------------
def _size(path: Path, full: bool) -> tuple[int, int]:
    """(height, width) of an image as :func:`read_image` would return it; decodes all when ``full``."""
    if full:
        loaded = read_image(path)
        return loaded.height, loaded.width
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{path}: {' '.join(str(err).split())}") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


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
    """Pairs made on the fly from sharp images: a random crop, blurred with :func:`~deblurkit.blur.degrade`
    (the kernel sees real image context around the crop), then flipped/rotated."""

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


# -- a synthetic pair set on disk ------------------------------------------------------------------
def synthesize_pairs(
    source: str | Path, output: str | Path, settings: Degradation, seed: int = 0, *, suffix: str = ".png"
) -> Iterator[dict]:
    """Write ``output/blur`` and ``output/sharp`` from the sharp images below ``source``, and a record
    per image (name, kernel, noise) to ``output/synth.jsonl``; yields the records. Each image's
    randomness is seeded by (seed, its relative path), so adding images leaves the others' unchanged.

    The blurry image keeps the sharp one's sample type (8-bit, 16-bit or float), its bit depth is the
    quantisation unless ``settings.bits`` is 0.
    """
    from dataclasses import replace
    from zlib import crc32

    from ..imaging.writing import write_image

    root, output = Path(source), Path(output)
    output.mkdir(parents=True, exist_ok=True)
    manifest = output / "synth.jsonl"
    manifest.write_text(json.dumps({"seed": seed, "settings": asdict(settings)}) + "\n", encoding="utf-8")
    for path in find_images(root):
        name = path.relative_to(root).with_suffix("").as_posix() if root.is_dir() else path.stem
        loaded = read_image(path)
        bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(loaded.pixels.dtype, 0)
        used = replace(settings, bits=bits if settings.bits else 0)
        rng = np.random.default_rng([seed, crc32(name.encode())])
        blurred, info = degrade(to_float(loaded.pixels), rng, used)
        write_image(
            output / "blur" / f"{name}{suffix}", from_float(blurred, loaded.pixels.dtype), like=loaded
        )
        write_image(output / "sharp" / f"{name}{suffix}", loaded.pixels, like=loaded)
        record = {"name": name, **info}
        with manifest.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        yield record


# -- sample photographs ----------------------------------------------------------------------------
_PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "coins",
)


def write_sample_photos(folder: str | Path, names: Sequence[str] = _PHOTOS) -> list[Path]:
    """Write scikit-image's bundled photographs as PNGs into ``folder`` (a data set to try things on)."""
    import skimage.data

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        if name == "motorcycle_left":
            image = skimage.data.stereo_motorcycle()[0]
        elif name == "motorcycle_right":
            image = skimage.data.stereo_motorcycle()[1]
        else:
            image = getattr(skimage.data, name)()
        path = folder / f"{name}.png"
        Image.fromarray(np.asarray(image)).save(path)
        written.append(path)
    return written
