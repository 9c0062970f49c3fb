"""Full-reference scoring of restored images against references: pairing, decoding, metrics, means.

``score_paths(restored, reference)`` pairs two files or two folders; ``read_pairs_csv`` reads a CSV
of pairs; ``score_pairs`` decodes pairs in background threads (a bounded window) and runs the
metrics of :mod:`deblurkit.metrics` in torch. Nothing here prints: results come back as a
:class:`ScoreResult`, progress through an optional callback.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DeblurkitError, UsageError
from ..imaging.discovery import DataError, images_by_key, match_by_key, read_list
from ..imaging.reading import DEFAULT_MAX_PIXELS, LoadedImage, data_range, read_image
from ..inference.device import resolve_device
from ..metrics import (
    OPTION_CROP_BORDER,
    OPTION_Y_CHANNEL,
    Metric,
    MetricUnavailableError,
    crop_border,
    resolve_metrics,
    rgb_to_y,
)

__all__ = [
    "DEFAULT_METRICS",
    "Pair",
    "PairResult",
    "PairingError",
    "ScoreResult",
    "collect_pairs",
    "pair_folders",
    "read_pairs_csv",
    "score_pairs",
    "score_paths",
]

DEFAULT_METRICS = ("psnr", "ssim")
SAMPLE_CONVENTION = (
    "samples in the file's own type with data range 255 (8-bit), 65535 (16-bit) or 1 (float); a pair of "
    "different sample types is compared in [0, 1] float64; EXIF orientation applied; alpha ignored; "
    "sizes must match (no resizing)"
)


class PairingError(UsageError):
    """The inputs cannot be paired (a usage error): a file against a folder, a bad CSV, no images."""


@dataclass(frozen=True)
class Pair:
    """A restored image and the reference it is scored against."""

    restored: Path
    reference: Path


@dataclass
class PairResult:
    """One pair's metric values (keyed by metric name), or the one-line reason it failed."""

    restored: Path
    reference: Path
    values: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class ScoreResult:
    """Per-pair results in input order, unmatched files, and the conventions the numbers follow."""

    metrics: tuple[str, ...]
    pairs: list[PairResult]
    conventions: dict[str, str]
    options: dict[str, Any]
    unmatched_restored: list[Path] = field(default_factory=list)
    unmatched_reference: list[Path] = field(default_factory=list)

    @property
    def scored(self) -> list[PairResult]:
        return [p for p in self.pairs if p.error is None]

    @property
    def failed(self) -> list[PairResult]:
        return [p for p in self.pairs if p.error is not None]

    @property
    def ok(self) -> bool:
        """True when every pair was scored and no file was left unmatched."""
        return not self.failed and not self.unmatched_restored and not self.unmatched_reference

    def means(self) -> dict[str, float]:
        """Mean of each metric over the scored pairs (NaN when none was scored)."""
        scored = self.scored
        return {
            name: (math.fsum(p.values[name] for p in scored) / len(scored)) if scored else math.nan
            for name in self.metrics
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; non-finite numbers become the strings "inf", "-inf", "nan"."""

        def num(value: float) -> float | str:
            return value if math.isfinite(value) else str(value)

        pairs = []
        for p in self.pairs:
            item: dict[str, Any] = {"restored": str(p.restored), "reference": str(p.reference)}
            if p.error is None:
                item.update({name: num(p.values[name]) for name in self.metrics})
            else:
                item["error"] = p.error
            pairs.append(item)
        return {
            "metrics": list(self.metrics),
            "conventions": self.conventions,
            "options": self.options,
            "pairs": pairs,
            "summary": {
                "count": len(self.scored),
                "failed": len(self.failed),
                "mean": {name: num(value) for name, value in self.means().items()},
            },
            "unmatched": {
                "restored": [str(p) for p in self.unmatched_restored],
                "reference": [str(p) for p in self.unmatched_reference],
            },
        }


def pair_folders(
    restored: Path, reference: Path, *, recursive: bool = False
) -> tuple[list[Pair], list[Path], list[Path]]:
    """Pair images by relative path without extension (``x.png`` ↔ ``x.jpg``).

    Returns the pairs and the unmatched files of each side; a name that matches several files on
    one side (``x.png`` and ``x.jpg``) is ambiguous and its files count as unmatched.
    """
    left = images_by_key(restored, recursive=recursive)
    right = images_by_key(reference, recursive=recursive)
    hint = "" if recursive else " (try --recursive)"
    if not left:
        raise PairingError(f"no images found in {restored}{hint}")
    if not right:
        raise PairingError(f"no images found in {reference}{hint}")
    matched, lonely_left, lonely_right = match_by_key(left, right)
    return [Pair(mine, theirs) for _, mine, theirs in matched], lonely_left, lonely_right


def read_pairs_csv(path: str | Path) -> list[Pair]:
    """Pairs from a CSV of ``restored,reference`` rows, relative paths taken from the CSV's folder.

    A first row whose cells have no file extension (e.g. ``restored,reference``) is a header.
    """
    path = Path(path)
    try:
        rows = read_list(path)
    except DataError as err:
        raise PairingError(str(err)) from None
    pairs = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise PairingError(f"{path}: row {number} needs two paths (restored,reference), got {row!r}")
        pairs.append(Pair(row[0], row[1]))
    if not pairs:
        raise PairingError(f"{path}: no pairs in the CSV")
    return pairs


def _tensor(array: np.ndarray, device: torch.device, scale: float | None) -> torch.Tensor:
    if scale is not None:
        array = array.astype(np.float64) / scale
    elif array.dtype == np.uint16:
        array = array.astype(np.int32)
    return torch.from_numpy(array).to(device).permute(2, 0, 1).contiguous().unsqueeze(0)


def _prepare(
    restored: LoadedImage, reference: LoadedImage, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, float]:
    if restored.pixels.shape[:2] != reference.pixels.shape[:2]:
        raise DeblurkitError(
            f"sizes differ: restored {restored.width}×{restored.height}, reference "
            f"{reference.width}×{reference.height} (no resizing is done)"
        )
    if restored.channels != reference.channels:
        kinds = {1: "grayscale", 3: "RGB"}
        raise DeblurkitError(
            f"channels differ: restored is {kinds[restored.channels]}, reference is "
            f"{kinds[reference.channels]}"
        )
    if restored.pixels.dtype == reference.pixels.dtype:
        x = _tensor(restored.pixels, device, None)
        y = _tensor(reference.pixels, device, None)
        return x, y, data_range(reference.pixels.dtype)
    x = _tensor(restored.pixels, device, data_range(restored.pixels.dtype))
    y = _tensor(reference.pixels, device, data_range(reference.pixels.dtype))
    return x, y, 1.0


def _score_pair(
    pair: Pair,
    metrics: Sequence[Metric],
    crop: int,
    y_channel: bool,
    device: torch.device,
    max_pixels: int,
) -> PairResult:
    result = PairResult(pair.restored, pair.reference)
    try:
        restored = read_image(pair.restored, max_pixels=max_pixels)
        reference = read_image(pair.reference, max_pixels=max_pixels)
        x, y, peak = _prepare(restored, reference, device)
        if crop and 2 * crop >= min(x.shape[-2:]):
            raise DeblurkitError(
                f"--crop-border {crop} leaves nothing of a {x.shape[-1]}×{x.shape[-2]} image"
            )
        variants: dict[tuple[bool, bool], tuple[torch.Tensor, torch.Tensor]] = {}
        for metric in metrics:
            key = (OPTION_CROP_BORDER in metric.options, y_channel and OPTION_Y_CHANNEL in metric.options)
            if key not in variants:
                a, b = (crop_border(x, crop), crop_border(y, crop)) if key[0] else (x, y)
                if key[1]:
                    a, b = rgb_to_y(a, peak), rgb_to_y(b, peak)
                variants[key] = (a, b)
            a, b = variants[key]
            if min(a.shape[-2:]) < metric.min_size:
                raise DeblurkitError(
                    f"{metric.name} needs images of at least {metric.min_size}×{metric.min_size} px, "
                    f"got {a.shape[-1]}×{a.shape[-2]}"
                )
            result.values[metric.name] = float(metric.compute(a, b, peak)[0])
    except MetricUnavailableError:
        raise
    except DeblurkitError as err:
        result.values.clear()
        result.error = str(err)
    return result


@contextlib.contextmanager
def _single_threaded_ops(enabled: bool) -> Iterator[None]:
    """One intra-op thread per worker while scoring on CPU (pairs run in parallel instead)."""
    if not enabled:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def score_pairs(
    pairs: Iterable[Pair],
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    device: str | torch.device = "auto",
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_result: Callable[[PairResult], None] | None = None,
) -> ScoreResult:
    """Score ``pairs`` with ``metrics`` (names or a comma list), in input order.

    Decoding and CPU metrics run in ``workers`` threads (default: the CPU count, at most 8; never more
    than there are pairs) over a bounded window of pairs; on CPU, torch runs one intra-op thread per
    worker meanwhile. A pair that cannot be scored gets a one-line ``error`` and the run goes on; a
    metric whose backend is missing (:class:`~deblurkit.metrics.MetricUnavailableError`) stops it
    before any decoding.
    """
    chosen = resolve_metrics(metrics)
    if crop_border < 0:
        raise PairingError("--crop-border must be 0 or more")
    if workers is not None and workers < 1:
        raise PairingError("--workers must be 1 or more")
    for metric in chosen:
        if metric.check is not None:
            metric.check()
    dev = resolve_device(device)
    if dev.type == "mps":  # the metrics reduce in float64, which MPS lacks
        dev = torch.device("cpu")
    pair_list = list(pairs)
    workers = min(workers or min(8, os.cpu_count() or 1), max(len(pair_list), 1))
    results: list[PairResult] = []
    window = 2 * workers
    with _single_threaded_ops(dev.type == "cpu"), ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[PairResult]] = deque()
        queue = iter(pair_list)

        def submit_next() -> None:
            pair = next(queue, None)
            if pair is not None:
                pending.append(
                    pool.submit(_score_pair, pair, chosen, crop_border, y_channel, dev, max_pixels)
                )

        for _ in range(window):
            submit_next()
        while pending:
            result = pending.popleft().result()
            submit_next()
            results.append(result)
            if on_result is not None:
                on_result(result)
    conventions = {m.name: m.convention for m in chosen}
    conventions["samples"] = SAMPLE_CONVENTION
    conventions["preprocessing"] = _preprocessing_text(chosen, crop_border, y_channel)
    options = {"crop_border": crop_border, "y_channel": y_channel, "device": str(dev)}
    return ScoreResult(tuple(m.name for m in chosen), results, conventions, options)


def _preprocessing_text(metrics: Sequence[Metric], crop: int, y_channel: bool) -> str:
    parts = [f"crop border {crop} px" if crop else "no border crop"]
    parts.append("Y channel of BT.601 YCbCr (MATLAB rgb2ycbcr, float64)" if y_channel else "all channels")
    ignoring = [
        m.name
        for m in metrics
        if (crop and OPTION_CROP_BORDER not in m.options) or (y_channel and OPTION_Y_CHANNEL not in m.options)
    ]
    text = ", ".join(parts)
    if ignoring:
        text += f" (not applied to {', '.join(ignoring)}: see its convention)"
    return text


def collect_pairs(
    restored: str | Path, reference: str | Path, *, recursive: bool = False
) -> tuple[list[Pair], list[Path], list[Path]]:
    """Two files → one pair; two folders → :func:`pair_folders`; anything else is a usage error."""
    restored, reference = Path(restored), Path(reference)
    for path in (restored, reference):
        if not path.exists():
            raise PairingError(f"{path}: no such file or folder")
    if restored.is_dir() != reference.is_dir():
        raise PairingError("give two files or two folders, not a file and a folder")
    if restored.is_dir():
        return pair_folders(restored, reference, recursive=recursive)
    return [Pair(restored, reference)], [], []


def score_paths(
    restored: str | Path | None = None,
    reference: str | Path | None = None,
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    *,
    pairs_csv: str | Path | None = None,
    recursive: bool = False,
    on_pairs: Callable[[int], None] | None = None,
    **options: Any,
) -> ScoreResult:
    """Score two files, two folders paired by relative path, or the pairs of a CSV (``pairs_csv``);
    what ``deblurkit score`` runs. ``on_pairs(count)`` is called once the pairs are known, before
    scoring; ``options`` as for :func:`score_pairs`."""
    if pairs_csv is not None:
        pairs, lonely_restored, lonely_reference = read_pairs_csv(pairs_csv), [], []
    else:
        if restored is None or reference is None:
            raise PairingError("give RESTORED and REFERENCE (two files or two folders), or a pairs CSV")
        pairs, lonely_restored, lonely_reference = collect_pairs(restored, reference, recursive=recursive)
    if on_pairs is not None:
        on_pairs(len(pairs))
    result = score_pairs(pairs, metrics, **options)
    result.unmatched_restored = lonely_restored
    result.unmatched_reference = lonely_reference
    return result
