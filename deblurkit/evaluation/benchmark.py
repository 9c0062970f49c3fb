"""``deblurkit eval``: run several models on a paired benchmark and score them with its own protocol.

The pairs are found by :mod:`deblurkit.imaging.discovery` (GoPro/HIDE, DPDD, RealBlur lists, plain
folders). Each model's outputs go to ``OUT/<row>/`` as PNG (16-bit where the input is) and are reused
on a rerun when the model (its architecture, config and every weight), the inference options and the
input file are unchanged: ``OUT/<row>/cache.json`` records a fingerprint of each. The untouched blurry
input is always scored too, as the row ``input``. Nothing here prints: progress goes to callbacks.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DeblurkitError, UsageError, describe
from ..imaging.atomic import write_text_atomic
from ..imaging.discovery import Pair, find_pairs, mark_output_folder
from ..imaging.reading import DEFAULT_MAX_PIXELS, read_image
from ..imaging.writing import write_image
from ..inference.deblurrer import Deblurrer
from ..metrics.sharpness import sharpness
from ..zoo.models import load_model
from ..zoo.restorer import Restorer
from .protocols import Protocol, get_protocol

__all__ = ["INPUT_ROW", "EvalResult", "ImageScores", "detect_protocol", "row_name", "run_eval"]

INPUT_ROW = "input"
"""The row that scores the blurry input itself (the baseline every model is compared with)."""
_CACHE_FILE = "cache.json"
_CACHE_VERSION = 1


@dataclass
class ImageScores:
    """One pair's numbers: row (``input`` or a model) → metric → value; failures by row."""

    pair: Pair
    outputs: dict[str, Path] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Everything ``eval`` measured, in pair order; ``rows`` is ``input`` then the models."""

    data: Path
    protocol: Protocol
    rows: list[str]
    models: dict[str, str]
    images: list[ImageScores]
    columns: tuple[str, ...]

    def means(self) -> dict[str, dict[str, float]]:
        """Row → column → mean over the images scored for that row (NaN where none was)."""
        table: dict[str, dict[str, float]] = {}
        for row in self.rows:
            table[row] = {}
            for column in self.columns:
                values = [i.scores[row][column] for i in self.images if column in i.scores.get(row, {})]
                table[row][column] = math.fsum(values) / len(values) if values else math.nan
        return table

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        """(image name, row, one-line reason) for every image a row could not produce or score."""
        return [(i.pair.name, row, why) for i in self.images for row, why in i.errors.items()]


def row_name(ref: str, taken: Sequence[str] = ()) -> str:
    """A short, file-system-safe row name for a model reference, unique among ``taken``."""
    text = str(ref)
    if text.startswith("hf:"):
        text = text[3:].split("@")[0].replace("/", "--")
    elif "/" in text or "\\" in text or Path(text).suffix:
        path = Path(text)
        text = path.stem if path.suffix else path.name
    base = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "model"
    name, n = base, 2
    while name in taken or name == INPUT_ROW:
        name, n = f"{base}-{n}", n + 1
    return name


def detect_protocol(data: Path) -> str:
    """The protocol a data set's layout implies: ``dpdd`` (``inputC/``), ``realblur`` (a list whose rows
    name the sharp image first), ``gopro`` (``blur/`` + ``sharp/``), otherwise ``plain``."""
    if data.is_file():
        first = data.read_text(encoding="utf-8", errors="replace").split()[:1]
        return "realblur" if first and "gt" in Path(first[0]).parts else "plain"
    for folder in sorted(p for p in data.rglob("*") if p.is_dir()):
        if folder.name == "inputC":
            return "dpdd"
        if folder.name == "blur" and (folder.parent / "sharp").is_dir():
            return "gopro"
    return "plain"


def _fingerprint_model(model: Restorer, options: dict[str, Any]) -> str:
    """sha256 over the architecture, config, inference options and every weight's bytes."""
    digest = hashlib.sha256()
    meta = {"architecture": model.architecture.name, "config": model.config, "options": options}
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _fingerprint_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _OutputCache:
    """``OUT/<row>/cache.json``: which outputs were made by which model from which input."""

    def __init__(self, folder: Path, model_key: str) -> None:
        self.path = folder / _CACHE_FILE
        self.model_key = model_key
        self.entries: dict[str, dict[str, Any]] = {}
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if saved.get("version") == _CACHE_VERSION and saved.get("model") == model_key:
            self.entries = dict(saved.get("outputs", {}))

    def lookup(self, name: str, input_key: str, output: Path) -> float | None:
        """The seconds a still-valid cached output took, or None when it must be made again."""
        entry = self.entries.get(name)
        if entry and entry.get("input") == input_key and output.is_file():
            return float(entry.get("seconds", math.nan))
        return None

    def store(self, name: str, input_key: str, seconds: float) -> None:
        self.entries[name] = {"input": input_key, "seconds": round(seconds, 4)}
        record = {"version": _CACHE_VERSION, "model": self.model_key, "outputs": self.entries}
        write_text_atomic(self.path, json.dumps(record, indent=1, sort_keys=True))


def _score(protocol: Protocol, restored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    values = protocol.score(restored, reference)
    values["sharpness"] = sharpness(restored)
    return values


ProgressFn = Callable[[str, int, int], None]


def _run_model(
    label: str,
    model: Restorer,
    pairs: Sequence[ImageScores],
    out: Path,
    protocol: Protocol,
    deblur_options: dict[str, Any],
    max_pixels: int,
    progress: ProgressFn | None,
) -> None:
    """Deblur (or reuse) every pair's output for one model and score it."""
    folder = out / label
    mark_output_folder(folder)
    cache = _OutputCache(folder, _fingerprint_model(model, deblur_options))
    deblurrer: Deblurrer | None = None
    for done, item in enumerate(pairs, start=1):
        pair = item.pair
        output = folder / f"{pair.name}.png"
        item.outputs[label] = output
        try:
            input_key = _fingerprint_file(pair.input)
            seconds = cache.lookup(pair.name, input_key, output)
            if seconds is None:
                blurry = read_image(pair.input, max_pixels=max_pixels)
                deblurrer = deblurrer or Deblurrer(model, **deblur_options)
                start = time.perf_counter()
                restored = deblurrer(blurry.pixels).pixels
                seconds = time.perf_counter() - start
                write_image(output, restored, like=blurry, strip_metadata=True)
                cache.store(pair.name, input_key, seconds)
            else:
                restored = read_image(output, max_pixels=max_pixels).pixels
            reference = read_image(pair.target, max_pixels=max_pixels).pixels
            item.scores[label] = {**_score(protocol, restored, reference), "seconds": seconds}
        except (DeblurkitError, OSError, ValueError, RuntimeError) as err:
            item.errors[label] = describe(err)
        if progress is not None:
            progress(label, done, len(pairs))


def run_eval(
    data: str | Path,
    out: str | Path,
    models: Sequence[str | Path] = (),
    *,
    protocol: str = "auto",
    weights: str | Path | None = None,
    device: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressFn | None = None,
    on_model: Callable[[str, Restorer], None] | None = None,
    **deblur_options: Any,
) -> EvalResult:
    """Score the blurry inputs and every model's outputs on the pairs of ``data`` (what ``eval`` runs).

    ``models`` are references :func:`~deblurkit.zoo.models.load_model` accepts (default: the default
    model); ``weights`` overrides the weight file of a single model. ``protocol`` is a registered
    protocol name or ``auto`` (:func:`detect_protocol`). ``deblur_options`` go to
    :class:`~deblurkit.inference.deblurrer.Deblurrer` (tile, overlap, precision). A pair that cannot be
    read, deblurred or scored is recorded in the result and the run goes on.
    """
    from ..inference.batch import DEFAULT_MODEL

    data, out = Path(data), Path(out)
    refs = [str(m) for m in models] or [DEFAULT_MODEL]
    if weights is not None and len(refs) != 1:
        raise UsageError("--weights applies to one model: give exactly one --model with it")
    chosen = get_protocol(detect_protocol(data) if protocol == "auto" else protocol)
    if chosen.check is not None:
        chosen.check()
    scan = find_pairs(data)
    if not scan.pairs:
        raise UsageError(f"{data}: no pairs found ({scan.summary() or 'empty'})")
    labels: list[str] = []
    for ref in refs:
        labels.append(row_name(ref, labels))
    items = [ImageScores(pair) for pair in scan.pairs]
    mark_output_folder(out)
    for item in items:
        try:
            blurry = read_image(item.pair.input, max_pixels=max_pixels).pixels
            reference = read_image(item.pair.target, max_pixels=max_pixels).pixels
            item.scores[INPUT_ROW] = _score(chosen, blurry, reference)
        except (DeblurkitError, OSError, ValueError) as err:
            item.errors[INPUT_ROW] = describe(err)
    for label, ref in zip(labels, refs, strict=True):
        model = load_model(ref, weights=weights, device=device)
        if on_model is not None:
            on_model(label, model)
        _run_model(label, model, items, out, chosen, deblur_options, max_pixels, progress)
        del model
    columns = (*chosen.metrics, "sharpness", "seconds")
    return EvalResult(
        data, chosen, [INPUT_ROW, *labels], dict(zip(labels, refs, strict=True)), items, columns
    )
