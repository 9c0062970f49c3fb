"""Finding images: the file types deblurkit reads, folder walks, glob patterns and blur/sharp pairing.

Every command finds its images here: ``deblur`` its inputs, ``score`` and ``eval`` their pairs,
``train`` its data. Hidden files, the comparison pictures deblurkit writes (``NAME.compare.jpg``) and,
below the folder being walked, folders that hold deblurkit's own outputs (they carry an
:data:`OUTPUT_MARKER` file) are never taken as inputs.

Pairs come from folders in the layouts of the public benchmarks, at any depth (GoPro/HIDE
``<scene>/blur`` + ``<scene>/sharp``, ``input/`` + ``target/``, DPDD ``inputC/`` + ``target/``,
``lq/`` + ``gt/``), matched by relative path without suffix, or from lists (CSV, TSV or
space-separated, one pair a line, paths relative to the list; RealBlur's ``*_test.txt`` lists give the
sharp image first, which is recognised from the folder names).
"""

from __future__ import annotations

import csv
import functools
import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import UsageError
from .compare import is_comparison

__all__ = [
    "LIST_SUFFIXES",
    "OUTPUT_MARKER",
    "PAIR_LAYOUTS",
    "DataError",
    "DataScan",
    "Pair",
    "find_images",
    "find_pairs",
    "glob_base",
    "has_pairs",
    "image_files",
    "images_by_key",
    "is_image_file",
    "mark_output_folder",
    "match_by_key",
    "outside",
    "read_list",
]

PAIR_LAYOUTS = (("blur", "sharp"), ("input", "target"), ("inputC", "target"), ("lq", "gt"))
"""(blurry folder, sharp folder) names of the paired layouts, in the order they are tried."""
LIST_SUFFIXES = (".csv", ".tsv", ".txt")
OUTPUT_MARKER = ".deblurkit-output"
"""File that marks a folder deblurkit writes outputs into; walks below a root skip such folders."""
_SHARP_NAMES = frozenset(sharp.lower() for _, sharp in PAIR_LAYOUTS)
_BLURRY_NAMES = frozenset(blurry.lower() for blurry, _ in PAIR_LAYOUTS)
_EXAMPLES = 3


@functools.cache
def _readable_suffixes() -> frozenset[str]:
    Image.init()
    pillow = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset(pillow | {".tif", ".tiff"})


def is_image_file(path: Path) -> bool:
    """A file whose suffix deblurkit reads, and not one of the comparison pictures it writes."""
    return path.suffix.lower() in _readable_suffixes() and not is_comparison(path)


def mark_output_folder(folder: Path) -> None:
    """Create ``folder`` and mark it as holding deblurkit's outputs (walks from above skip it)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("deblurkit writes its outputs here; deblurkit never reads this folder as input\n")


def _walk(folder: Path, recursive: bool) -> Iterator[Path]:
    """Non-hidden files below ``folder`` in sorted order, skipping marked output folders under it."""
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs if recursive and not d.startswith(".") and not (here / d / OUTPUT_MARKER).exists()
        )
        for name in sorted(files):
            if not name.startswith("."):
                yield here / name


def image_files(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Image files in a folder (with ``recursive``, below it), sorted."""
    return sorted(path for path in _walk(folder, recursive) if is_image_file(path))


def images_by_key(folder: Path, *, recursive: bool = True) -> dict[str, list[Path]]:
    """Image files by relative path without suffix (``a/x.png`` → ``a/x``); a key may hold several."""
    found: dict[str, list[Path]] = {}
    for path in image_files(folder, recursive=recursive):
        found.setdefault(path.relative_to(folder).with_suffix("").as_posix(), []).append(path)
    return found


def match_by_key(
    left: dict[str, list[Path]], right: dict[str, list[Path]]
) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """(key, left file, right file) for keys with exactly one file on each side, and the unmatched
    files of each side (a key with several files on one side is ambiguous: its files are unmatched)."""
    matched, lonely_left, lonely_right = [], [], []
    for key, files in left.items():
        others = right.get(key, [])
        if len(files) == 1 and len(others) == 1:
            matched.append((key, files[0], others[0]))
        else:
            lonely_left.extend(files)
            if len(others) > 1:
                lonely_right.extend(others)
    for key, others in right.items():
        if key not in left:
            lonely_right.extend(others)
    return matched, lonely_left, sorted(lonely_right)


def outside(paths: Iterable[Path], folders: Iterable[Path]) -> list[Path]:
    """The paths that are not in (or below) any of ``folders``, symbolic links resolved: what a command
    that writes into those folders may read without taking its own outputs back in."""
    real = [Path(os.path.realpath(folder)) for folder in folders]
    return [path for path in paths if not any(Path(os.path.realpath(path)).is_relative_to(f) for f in real)]


def glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = Path(pattern).parts
    plain = parts[: next(i for i, part in enumerate(parts) if glob.has_magic(part))]
    return Path(*plain) if plain else Path()


def find_images(
    sources: Sequence[str | Path], *, recursive: bool, exclude: Path | None = None
) -> list[tuple[Path, Path]]:
    """(file, output path relative to the output folder) for each input: files as given, images in
    folders (their subfolders mirrored with ``recursive``), glob matches. Files under ``exclude`` (the
    output folder) are left out of folders that hold it or are it; a folder below it (``photos/`` into
    ``-o .``) is read as usual, its outputs landing beside it."""
    found: list[tuple[Path, Path]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            root = Path(os.path.realpath(path))
            below = exclude is not None and root != exclude and root.is_relative_to(exclude)
            skip = None if below else exclude
            for image in image_files(path, recursive=recursive):
                if skip is None or not Path(os.path.realpath(image)).is_relative_to(skip):
                    found.append((image, image.relative_to(path)))
        elif not path.exists() and glob.has_magic(str(source)):
            matches = sorted(Path(m) for m in glob.glob(str(source), recursive=True))
            if not matches:
                raise UsageError(f"no files match {source}")
            base = glob_base(str(source))
            found += [(m, m.relative_to(base) if recursive else Path(m.name)) for m in matches if m.is_file()]
        else:
            found.append((path, Path(path.name)))
    seen: set[Path] = set()
    unique = []
    for path, relative in found:
        key = Path(os.path.realpath(path))  # realpath never raises on a symlink loop
        if key not in seen:
            seen.add(key)
            unique.append((path, relative))
    return unique


# -- pairs -----------------------------------------------------------------------------------------
class DataError(UsageError):
    """Images or lists of pairs that cannot be used as given."""


@dataclass(frozen=True)
class Pair:
    """A blurry input and its sharp target; ``name`` identifies it in messages and reports."""

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


def read_list(path: Path) -> list[list[Path]]:
    """Rows of a CSV/TSV/space-separated list, paths relative to the list's folder.

    Blank lines and ``#`` comments are skipped; a first row whose cells have no suffix and name no
    existing file (``restored,reference``) is a header.
    """
    if is_image_file(path):
        raise DataError(f"{path} is an image, not a folder or a list of image paths")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text list of paths (not UTF-8)") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the list: {' '.join(str(err).split())}") from None
    if "\0" in text:  # binary data; no path can hold a NUL byte
        raise DataError(f"{path} is not a text list of paths (it holds NUL bytes)")
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        delimiter = "," if "," in line else "\t" if "\t" in line else None
        try:
            cells = next(csv.reader([line], delimiter=delimiter)) if delimiter else line.split()
        except csv.Error as err:
            raise DataError(f"{path}: not a list of paths: {err}") from None
        cells = [c.strip() for c in cells if c.strip()]
        header = all(not Path(c).suffix and not (path.parent / c).exists() for c in cells)
        if not rows and header:
            continue
        rows.append([path.parent / c for c in cells])
    return rows


def _sharp_first(row: list[Path]) -> bool:
    """True for a row that names the sharp image first (RealBlur's lists: ``.../gt/x.png .../blur/x.png``)."""
    first = {part.lower() for part in row[0].parts}
    second = {part.lower() for part in row[1].parts}
    return bool(first & _SHARP_NAMES) and bool(second & _BLURRY_NAMES) and not first & _BLURRY_NAMES


def _scan_list(source: Path) -> DataScan:
    scan = DataScan(source, [])
    for row in read_list(source):
        if len(row) != 2:
            scan.add("list rows without exactly two paths", " ".join(map(str, row)))
            continue
        missing = [p for p in row if not p.is_file()]
        if missing:
            scan.add("listed files that do not exist", str(missing[0]))
            continue
        blurry, sharp = reversed(row) if _sharp_first(row) else row
        scan.pairs.append(Pair(blurry, sharp, blurry.relative_to(source.parent).as_posix()))
    return scan


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
    return (source.is_file() and source.suffix.lower() in LIST_SUFFIXES) or (
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
        first = {key: files[0] for key, files in images_by_key(root / blurry).items()}
        second = {key: files[0] for key, files in images_by_key(root / sharp).items()}
        relative = root.relative_to(source)
        for key in sorted(first.keys() | second.keys()):
            if key not in second:
                scan.add("inputs without a target", (relative / blurry / key).as_posix())
            elif key not in first:
                scan.add("targets without an input", (relative / sharp / key).as_posix())
            else:
                scan.pairs.append(Pair(first[key], second[key], (relative / key).as_posix()))
    return scan


def find_pairs(source: str | Path) -> DataScan:
    """The pairs of a folder (any :data:`PAIR_LAYOUTS`, at any depth) or of a list of pairs."""
    source = Path(source).expanduser()
    if source.is_file():
        return _scan_list(source)
    if not source.is_dir():
        raise DataError(f"{source}: no such folder or list of pairs")
    return _scan_folder(source)
