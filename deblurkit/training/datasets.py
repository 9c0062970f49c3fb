"""The training and validation data of a run, checked before the first step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..imaging.discovery import DataError, DataScan, Pair, find_pairs, has_pairs
from ..synthesis.frames import FrameAveraging, FrameCrops, frame_sequences
from .config import TrainConfig
from .data import (
    EpochBatches,
    MixedCrops,
    PairCrops,
    SynthCrops,
    ValidationSet,
    check_pairs,
    sharp_images,
    split,
)
from .distributed import Context

__all__ = ["PROBLEMS_FILE", "train_batches", "training_data"]

PROBLEMS_FILE = "data-problems.txt"


def _scan(source: str, crop: int, config: TrainConfig, synthesize: bool) -> DataScan:
    """The checked pairs of a source: real pairs, or sharp images (input = target) to synthesise from."""
    full = config.check_images == "full"
    if not synthesize:
        return check_pairs(find_pairs(source), crop, full=full)
    root = Path(source)
    images = sharp_images(root)
    names = [p.relative_to(root).as_posix() if root.is_dir() else p.name for p in images]
    scan = DataScan(root, [Pair(p, p, name) for p, name in zip(images, names, strict=True)])
    return check_pairs(scan, crop, full=full, paired=False)


def _usable(scan: DataScan, config: TrainConfig, run_dir: Path | None, notes: list[str]) -> list[Pair]:
    """The good pairs; the problems reported in one line (the full list in the run folder)."""
    if scan.bad:
        where = ""
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / PROBLEMS_FILE).write_text(scan.report(), encoding="utf-8")
            where = f"; full list in {run_dir / PROBLEMS_FILE}"
        if not config.skip_bad_pairs:
            raise DataError(
                f"{scan.source}: {scan.bad} problems: {scan.summary()}{where}; "
                "fix them or pass --skip-bad-pairs"
            )
        notes.append(f"{scan.source}: left out {scan.bad} problems ({scan.summary()}){where}")
    if not scan.pairs:
        raise DataError(f"{scan.source}: no usable images or pairs")
    return scan.pairs


def training_data(
    config: TrainConfig, run_dir: Path | None
) -> tuple[Dataset, ValidationSet | None, list[str]]:
    """(training crops, validation set or None, notes), every image checked first.

    ``run_dir``: where to write the full list of data problems (None on processes that do not write).
    """
    notes: list[str] = []
    train: list[Pair] = []
    val: list[Pair] = []
    if config.data:
        pairs = _usable(_scan(config.data, config.crop, config, config.synthesize), config, run_dir, notes)
        train, val = split(pairs, config.val_split, config.seed)
    synthesize_val = config.synthesize
    if config.val_data:
        synthesize_val = config.synthesize and not has_pairs(config.val_data)
        val = _usable(_scan(config.val_data, 0, config, synthesize_val), config, run_dir, notes)
    if config.val_max:
        val = val[: config.val_max]
    degradation = config.degradation()
    sources: list[Dataset] = []
    shares: list[float] = []
    if config.frames:
        averaging = FrameAveraging(frames=tuple(config.frames_count), gamma=config.frames_gamma)
        sequences = frame_sequences(config.frames, averaging.frames[0])
        sources.append(FrameCrops(sequences, config.crop, config.seed, averaging, flips=config.flips))
        shares.append(config.frames_share)
    if config.stills:
        stills = _usable(_scan(config.stills, config.crop, config, True), config, run_dir, notes)
        sources.append(
            SynthCrops([p.target for p in stills], config.crop, config.seed, degradation, flips=config.flips)
        )
        shares.append(config.stills_share)
    if train:
        if config.synthesize:
            own: Dataset = SynthCrops(
                [p.target for p in train], config.crop, config.seed, degradation, flips=config.flips
            )
        else:
            own = PairCrops(train, config.crop, config.seed, flips=config.flips)
        sources.insert(0, own)
        shares.insert(0, max(0.0, 1.0 - sum(shares)))
    if not sources:
        raise DataError("no training data: give --data, --frames or --stills")
    dataset = sources[0] if len(sources) == 1 else MixedCrops(sources, shares, config.seed)
    valset = ValidationSet(val, config.seed, degradation if synthesize_val else None) if val else None
    return dataset, valset, notes


def train_batches(
    train_set: Dataset, config: TrainConfig, ctx: Context, start: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's training batches from data position ``start`` on (loaded lazily)."""
    sampler = EpochBatches(
        len(train_set),
        config.batch_size // ctx.world,
        config.seed,
        start=start,
        rank=ctx.rank,
        world=ctx.world,
    )
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=config.workers,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),
        prefetch_factor=2 if config.workers else None,
    )
    return iter(loader)
