"""The training loop behind ``deblurkit train`` and ``deblurkit finetune``.

:class:`Trainer` checks everything it can before the first step (options, model, crop size, every
data pair, the loss and its encoder), then trains with AdamW, a warm-up + cosine schedule, optional
gradient clipping, accumulation, EMA, autocast and ``torch.compile``, on one process or under
``torchrun`` (DistributedDataParallel; rank 0 logs, validates and writes). It reports progress to an
``events`` callback (the library never prints), appends every logged step and validation to
``train/log.jsonl``, redraws ``train/curves.png``, keeps resumable checkpoints and the best model, and
finally writes the model folder (``config.json``, ``model.safetensors``, ``README.md``) to the output.

Exact resumption: the data order and every per-sample random choice are functions of (seed, epoch,
index), the learning rate a function of the step, and the checkpoint holds the optimizer, scaler,
EMA and every process's RNG state, so a run killed after a checkpoint and resumed reaches the same
weights as one that never stopped (bit for bit on CPU). Validation runs under a forked RNG.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..archs import get_architecture
from ..errors import DeblurkitError, WeightsError, one_line
from ..imaging.atomic import write_atomic
from ..zoo.models import build_network, load_model, resolve_model, save_model
from ..zoo.restorer import Restorer
from . import checkpoint as ckpt
from .card import ENCODER_LICENCE, CardInfo, model_card
from .config import ConfigError, TrainConfig, default_loss, differences, load_config, to_toml
from .curves import draw_curves
from .datasets import training_data
from .distributed import setup
from .ema import EMA
from .schedule import lr_at

__all__ = [
    "CONTROL_OPTIONS",
    "RUN_FOLDER",
    "Event",
    "NonFiniteLossError",
    "TrainResult",
    "Trainer",
    "push_to_hub",
    "train",
]

RUN_FOLDER = "train"
"""Subfolder of the output holding the run's own files (config, log, curves, checkpoints, best)."""
CONTROL_OPTIONS = (
    "workers",
    "log_every",
    "val_every",
    "save_every",
    "tile",
    "val_max",
    "check_images",
    "push_to_hub",
    "compile",
)
"""Options that may change between a run and its resumption without --resume."""
_MAE_DISTANCE_SIDE = 512
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(DeblurkitError):
    """The loss became NaN or Inf."""


@dataclass
class Event:
    """A progress report: ``kind`` is start, step, log, val, checkpoint, note or done."""

    kind: str
    step: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a finished run produced."""

    output: Path
    step: int
    metrics: dict[str, float]
    best: dict[str, float]
    resumed_from: int | None
    hub_url: str = ""


@dataclass
class _Source:
    """The network to train: architecture, config, where it came from, starting weights."""

    architecture: str
    config: dict[str, Any]
    base: str = ""
    base_licence: str = ""
    weights: dict[str, torch.Tensor] | None = None


# -- preparation --------------------------------------------------------------------------------------
def _check_options(config: TrainConfig, command: str) -> None:
    if not (config.data or config.frames or config.stills):
        raise ConfigError(
            f"{command} needs training data: --data FOLDER (or a CSV/txt list of pairs), "
            "--frames FOLDER or --stills FOLDER"
        )
    if not config.output:
        raise ConfigError(f"{command} needs an output folder: -o/--output FOLDER")
    if not config.model and not config.architecture:
        raise ConfigError(
            f"{command} needs --model (a zoo name, hf:org/name or a model folder) or --architecture"
        )
    if config.pretrained and not config.model:
        raise ConfigError("starting from pretrained weights needs --model")
    if config.push_to_hub and (config.push_to_hub.count("/") != 1 or not all(config.push_to_hub.split("/"))):
        raise ConfigError(f"--push-to-hub needs a repository name org/name, got {config.push_to_hub!r}")
    if len(config.betas) != 2 or not all(0 <= b < 1 for b in config.betas):
        raise ConfigError(f"betas must be two numbers in [0, 1), got {config.betas}")
    if not 0 <= config.ema < 1:
        raise ConfigError(f"the EMA decay must be in [0, 1), got {config.ema}")


def _source(config: TrainConfig) -> _Source:
    if not config.model:
        arch = get_architecture_checked(config.architecture)
        return _Source(arch.name, {**arch.default_config, **config.arch_config})
    spec = resolve_model(config.model)
    if config.architecture and config.architecture != spec.architecture:
        raise ConfigError(f"{config.model} is a {spec.architecture} model, not {config.architecture}")
    licence = spec.entry.license if spec.entry else str(spec.info.get("license", ""))
    source = _Source(spec.architecture, {**spec.config, **config.arch_config}, config.model, licence)
    if config.pretrained:
        source.weights = load_model(config.model, weights=config.weights or None).network.state_dict()
    return source


def get_architecture_checked(name: str):
    """The registered architecture ``name``; a one-line error listing the known ones otherwise."""
    try:
        return get_architecture(name)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None


def _check_crop(config: TrainConfig, source: _Source) -> None:
    rule = get_architecture_checked(source.architecture).size_rule_for(source.config)
    if config.crop % rule.multiple:
        raise ConfigError(
            f"--crop {config.crop} does not suit {source.architecture}: "
            f"it must be a multiple of {rule.multiple}"
        )


def _precision(requested: str, device: torch.device, architecture: str) -> str:
    arch = get_architecture_checked(architecture)
    if requested == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 and "bf16" in arch.precisions else "fp32"
    if requested != "fp32" and requested not in arch.precisions:
        raise ConfigError(
            f"{architecture} is not verified in {requested}; use one of {', '.join(arch.precisions)}"
        )
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 training needs CUDA; use fp32 (or bf16) on this device")
    return requested


def _needs_encoder(spec: str) -> bool:
    from ..losses import parse_spec

    return any(
        term.name in ("mae", "mae_local") or term.name.startswith("mae_global") for term in parse_spec(spec)
    )


def _encoder(config: TrainConfig, device: torch.device):
    from ..losses.encoders import load_encoder

    try:
        return load_encoder(config.encoder, weights=config.encoder_weights or None, device=device)
    except WeightsError as err:
        if config.encoder_weights:
            raise
        raise WeightsError(
            f"the MAE loss needs the encoder {config.encoder}, which cannot be had here ({err}); prefetch it "
            f"with `deblurkit zoo download {config.encoder}`, pass --encoder-weights FILE, or choose a "
            "pixel-only --loss such as l1"
        ) from None


def _encoder_licence(name: str) -> str:
    """The licence of a zoo encoder (the MAE weights' CC-BY-NC-4.0 when the zoo has no card for it)."""
    from ..zoo.cards import get_entry

    try:
        return get_entry(name).license
    except DeblurkitError:
        return ENCODER_LICENCE if "mae" in name else ""


def push_to_hub(folder: Path, repo: str) -> str:
    """Publish a model folder (without its ``train/`` files) as Hub model ``repo``; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi(library_name="deblurkit")
    try:
        api.create_repo(repo, exist_ok=True, repo_type="model")
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo,
            repo_type="model",
            ignore_patterns=[f"{RUN_FOLDER}/*", ".*"],
            commit_message="Upload model trained with deblurkit",
        )
    except Exception as err:  # huggingface_hub raises many types (HTTP, offline, auth)
        raise DeblurkitError(f"could not push {folder} to the Hub as {repo}: {one_line(err)}") from None
    return f"https://huggingface.co/{repo}"


# -- the trainer --------------------------------------------------------------------------------------
class Trainer:
    """One training run. ``command`` is ``train`` or ``finetune`` (for the card and messages);
    ``resume``: continue the run in the output folder even if its settings differ; ``events``: called
    with every :class:`Event` on rank 0."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        command: str = "train",
        resume: bool = False,
        events: Callable[[Event], None] | None = None,
    ) -> None:
        _check_options(config, command)
        self.config, self.command, self.resume = config, command, resume
        self._events = events
        self.output = Path(config.output)
        self.run_dir = self.output / RUN_FOLDER
        self.records: list[dict[str, Any]] = []

    # -- reporting -------------------------------------------------------------------------------------
    def emit(self, kind: str, data: dict[str, Any] | None = None) -> None:
        """Send an event (rank 0 only)."""
        if self._events is not None and self.ctx.main:
            self._events(Event(kind, self.step, data or {}))

    def _record(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _reload_log(self, upto: int) -> None:
        """Keep the log records up to step ``upto`` (a killed run may have logged beyond its checkpoint)."""
        path = self.run_dir / "log.jsonl"
        if not path.is_file():
            return
        kept = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.records = [r for r in kept if r.get("step", 0) <= upto]
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        write_atomic(path, lambda handle: handle.write(text.encode()))

    # -- set-up ----------------------------------------------------------------------------------------
    def _prepare(self) -> int | None:
        """Everything before the first step; returns the step resumed from, or None."""
        config = self.config
        self.source = _source(config)
        _check_crop(config, self.source)
        self.precision = _precision(config.precision, self.ctx.device, self.source.architecture)
        if config.batch_size % self.ctx.world:
            raise ConfigError(
                f"--batch-size {config.batch_size} must be a multiple of the {self.ctx.world} processes"
            )
        self.train_set, self.val_set, notes = training_data(config, self.run_dir if self.ctx.main else None)
        self.loss_spec = config.loss or default_loss(self.source.architecture)
        self.encoder = _encoder(config, self.ctx.device) if _needs_encoder(self.loss_spec) else None
        if self.encoder is not None and config.crop % self.encoder.patch_size[0]:
            raise ConfigError(
                f"--crop {config.crop} must be a multiple of the encoder's patch size "
                f"{self.encoder.patch_size[0]} for the MAE loss"
            )
        from ..losses import build_loss

        self.loss = build_loss(self.loss_spec, encoder=self.encoder, device=self.ctx.device)
        resumed = self._resume_point()
        self._build(resumed)
        self.batches = self._batches() if self.step < config.steps else iter(())
        for note in notes:
            self.emit("note", {"message": note})
        return resumed

    def _resume_point(self) -> int | None:
        step = ckpt.latest_step(self.run_dir / "checkpoints")
        if step is None:
            if self.resume:
                raise ConfigError(f"--resume: {self.output} holds no checkpoint to continue from")
            return None
        config_path = self.run_dir / "config.toml"
        saved = load_config(config_path) if config_path.is_file() else None
        changed = (
            ["(unknown: train/config.toml is missing)"]
            if saved is None
            else differences(saved, self.config, CONTROL_OPTIONS)
        )
        if changed and not self.resume:
            raise ConfigError(
                f"{self.output} already holds a run (step {step}) with other settings "
                f"({', '.join(changed[:6])}); add --resume to continue it with the new settings, "
                "or choose another --output"
            )
        return step

    def _build(self, resumed: int | None) -> None:
        config, ctx = self.config, self.ctx
        torch.manual_seed(config.seed)
        network = build_network(self.source.architecture, self.source.config)
        if self.source.weights is not None:
            try:
                network.load_state_dict(self.source.weights, strict=True)
            except RuntimeError as err:
                raise ConfigError(
                    f"the weights of {self.source.base} do not fit the changed --arch-config: {one_line(err)}"
                ) from None
        network = network.to(ctx.device).train()
        if config.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        self.optimizer = torch.optim.AdamW(
            network.parameters(), lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay
        )
        self.scaler = torch.amp.GradScaler(ctx.device.type) if self.precision == "fp16" else None
        self.ema = EMA(network, config.ema, warmup=config.ema_warmup) if config.ema > 0 and ctx.main else None
        self.step, self.consumed, self.skipped = 0, 0, 0
        self.best: dict[str, float] = {}
        self.input_metrics: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        self.last_val_step = -1
        rng_seed = int(np.random.SeedSequence([config.seed, ctx.rank, 7]).generate_state(1)[0])
        torch.manual_seed(rng_seed)
        if resumed is not None:
            self._load(resumed)
        model: nn.Module = network
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(network, device_ids=ids)
        self.ddp = model if ctx.distributed else None
        self.model = torch.compile(model) if config.compile else model

    def _load(self, step: int) -> None:
        saved = ckpt.load_checkpoint(self.run_dir / "checkpoints")
        state = saved.state
        self.network.load_state_dict(saved.network, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and saved.ema is not None:
            self.ema.load_state_dict(saved.ema, int(state["ema_updates"]))
        self.step, self.consumed, self.skipped = step, int(state["consumed"]), int(state["skipped"])
        self.best, self.input_metrics = dict(state["best"]), dict(state["input_metrics"])
        self.last_val, self.last_val_step = dict(state["last_val"]), int(state["last_val_step"])
        rng = state["rng"]
        if len(rng) == self.ctx.world:
            torch.set_rng_state(rng[self.ctx.rank]["cpu"])
            if self.ctx.device.type == "cuda" and "cuda" in rng[self.ctx.rank]:
                torch.cuda.set_rng_state(rng[self.ctx.rank]["cuda"], self.ctx.device)
        else:
            self.emit(
                "note",
                {
                    "message": f"resumed with {self.ctx.world} processes instead of {len(rng)}: "
                    "the data order continues, the loss's token sampling is reseeded"
                },
            )

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The training batches from the current data position on (checked now, loaded lazily)."""
        from .data import EpochBatches

        config, ctx = self.config, self.ctx
        sampler = EpochBatches(
            len(self.train_set),
            config.batch_size // ctx.world,
            config.seed,
            start=self.consumed,
            rank=ctx.rank,
            world=ctx.world,
        )
        loader = DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=config.workers,
            pin_memory=ctx.device.type == "cuda",
            generator=torch.Generator().manual_seed(config.seed),
            prefetch_factor=2 if config.workers else None,
        )
        return iter(loader)

    # -- one step ------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision in _DTYPES:
            return torch.autocast(self.ctx.device.type, dtype=_DTYPES[self.precision])
        return contextlib.nullcontext()

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.ctx.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def _micro_step(self, blurry: torch.Tensor, sharp: torch.Tensor, sync: bool) -> dict[str, float] | None:
        """Forward and backward of one micro-batch; None when its loss is not finite (skipped)."""
        config = self.config
        no_sync = self.ddp.no_sync() if self.ddp is not None and not sync else contextlib.nullcontext()
        with no_sync:
            with self._autocast():
                restored = self.model(self._to_device(blurry))
                loss = self.loss(restored.float(), self._to_device(sharp))
            finite = bool(torch.isfinite(loss).item())
            if self.ctx.any(not finite):
                terms = ", ".join(f"{k}={v.item():.4g}" for k, v in self.loss.terms.items())
                if config.on_nonfinite == "stop":
                    raise NonFiniteLossError(
                        f"the loss is {loss.item()} at step {self.step + 1} ({terms}); lower --lr, use "
                        "--precision fp32 or --grad-clip, or pass --on-nonfinite skip"
                    )
                # zero gradients through every parameter, so DDP's reduction still completes
                loss = sum(
                    (p.sum() * 0.0 for p in self.network.parameters()), torch.zeros((), device=loss.device)
                )
                finite = False
            scaled = loss / config.accumulate
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        if not finite:
            return None
        return {"loss": loss.detach(), **self.loss.terms}

    def _optimizer_step(self) -> torch.Tensor | None:
        config = self.config
        lr = lr_at(self.step, lr=config.lr, min_lr=config.min_lr, steps=config.steps, warmup=config.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = None
        if config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.network)
        return norm

    def _train_step(self, batches: Iterator) -> dict[str, Any]:
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        skipped = False
        for micro in range(self.config.accumulate):
            blurry, sharp = next(batches)
            values = self._micro_step(blurry, sharp, sync=micro == self.config.accumulate - 1)
            if values is None:
                skipped = True
                continue
            for key, value in values.items():
                sums[key] = sums.get(key, 0) + value / self.config.accumulate
        norm = None
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            self.emit("note", {"message": f"non-finite loss at step {self.step + 1}: batch skipped"})
        else:
            norm = self._optimizer_step()
        self.step += 1
        self.consumed += self.config.accumulate
        return {"terms": {} if skipped else sums, "grad_norm": norm, "skipped": skipped}

    # -- validation ------------------------------------------------------------------------------------
    def _eval_network(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.network

    def _mae_distance(self, restored: torch.Tensor, sharp: torch.Tensor) -> float:
        from ..losses import local_distance

        patch = self.encoder.patch_size[0]
        side = min(_MAE_DISTANCE_SIDE, *restored.shape[-2:]) // patch * patch
        if side < patch:
            return float("nan")
        top, left = (restored.shape[-2] - side) // 2, (restored.shape[-1] - side) // 2
        window = (..., slice(top, top + side), slice(left, left + side))
        blocks = tuple(range(1, min(6, self.encoder.depth) + 1))
        with torch.no_grad():
            a = self.encoder(restored[window].to(self.ctx.device), blocks=blocks)
            b = self.encoder(sharp[window].to(self.ctx.device), blocks=blocks)
        return float(local_distance(a, b))

    def _scores(self, restored: np.ndarray, sharp: np.ndarray) -> dict[str, float]:
        from ..metrics import get_metric

        x = torch.from_numpy(np.clip(restored, 0, 1)).permute(2, 0, 1)[None].double()
        y = torch.from_numpy(sharp).permute(2, 0, 1)[None].double()
        scores = {name: float(get_metric(name).compute(x, y, 1.0)[0]) for name in ("psnr", "ssim")}
        if self.encoder is not None:
            scores["mae_distance"] = self._mae_distance(x.float(), y.float())
        return scores

    def validate(self) -> dict[str, float]:
        """PSNR, SSIM (and the MAE distance) of the (EMA) network on the validation images (rank 0)."""
        from ..inference.deblurrer import Deblurrer

        network = self._eval_network()
        was_training = network.training
        network.eval()
        restorer = Restorer(network, get_architecture(self.source.architecture), self.source.config)
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        totals: dict[str, float] = {}
        inputs: dict[str, float] = {}
        with torch.random.fork_rng(devices=devices):
            deblur = Deblurrer(
                restorer, tile=self.config.tile or "auto", overlap=32, precision=self.precision
            )
            for index in range(len(self.val_set)):
                _, blurry, sharp = self.val_set[index]
                for key, value in self._scores(deblur(blurry).pixels, sharp).items():
                    totals[key] = totals.get(key, 0.0) + value / len(self.val_set)
                if not self.input_metrics:
                    for key, value in self._scores(blurry, sharp).items():
                        inputs[key] = inputs.get(key, 0.0) + value / len(self.val_set)
        network.train(was_training)
        self.input_metrics = self.input_metrics or inputs
        self.last_val, self.last_val_step = totals, self.step
        return totals

    def _validate_and_keep_best(self) -> None:
        if self.val_set is None or not self.ctx.main or self.last_val_step == self.step:
            return
        metrics = self.validate()
        record = {
            "kind": "val",
            "step": self.step,
            **metrics,
            **{f"input_{k}": v for k, v in self.input_metrics.items()},
        }
        self._record(record)
        improved = metrics["psnr"] > self.best.get("psnr", -math.inf)
        if improved:
            self.best = {"psnr": metrics["psnr"], "ssim": metrics["ssim"], "step": self.step}
            building = self.run_dir / ".best.tmp"
            shutil.rmtree(building, ignore_errors=True)
            ckpt.replace_folder(self._save_model(building), self.run_dir / "best")
        self.emit("val", {**record, "best": improved})
        draw_curves(self.records, self.run_dir / "curves.png")

    # -- saving ------------------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if self.ctx.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
        rngs = self.ctx.gather(rng)
        if self.ctx.main:
            state = {
                "step": self.step,
                "consumed": self.consumed,
                "skipped": self.skipped,
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "rng": rngs,
                "best": self.best,
                "input_metrics": self.input_metrics,
                "last_val": self.last_val,
                "last_val_step": self.last_val_step,
            }
            ema = self.ema.state_dict() if self.ema is not None else None
            path = ckpt.save_checkpoint(
                self.run_dir / "checkpoints", self.step, self.network.state_dict(), ema, state
            )
            self.emit("checkpoint", {"path": str(path)})
        self.ctx.barrier()

    def _card(self) -> CardInfo:
        config = self.config
        recipe = {
            k: getattr(config, k)
            for k in (
                "crop",
                "batch_size",
                "accumulate",
                "lr",
                "min_lr",
                "weight_decay",
                "betas",
                "warmup",
                "grad_clip",
                "ema",
                "seed",
            )
        }
        recipe["precision"] = self.precision
        return CardInfo(
            name=config.name or self.output.resolve().name,
            command=self.command,
            architecture=self.source.architecture,
            arch_config=self.source.config,
            data=config.data,
            synthesized=config.synthesize,
            loss=self.loss_spec,
            steps=self.step,
            recipe=recipe,
            base_model=self.source.base if config.pretrained else "",
            base_licence=self.source.base_licence if config.pretrained else "",
            encoder=config.encoder if self.encoder is not None else "",
            encoder_licence=_encoder_licence(config.encoder) if self.encoder is not None else "",
            metrics=self.last_val,
            input_metrics=self.input_metrics,
            best=self.best,
        )

    def _save_model(self, folder: Path) -> Path:
        info = self._card()
        restorer = Restorer(
            self._eval_network(),
            get_architecture(self.source.architecture),
            self.source.config,
            name=info.name,
        )
        extra = {
            "base_model": info.base_model,
            "license": info.base_licence,
            "training": {
                "command": self.command,
                "steps": self.step,
                "loss": self.loss_spec,
                "data": self.config.data,
                "metrics": self.last_val,
            },
        }
        return save_model(restorer, folder, card=model_card(info), info=extra)

    # -- the run -------------------------------------------------------------------------------------
    def _log(self, stats: dict[str, Any], window: dict[str, Any]) -> None:
        for key, value in stats["terms"].items():  # tensors: no device sync until a step is logged
            window["sums"][key] = window["sums"].get(key, 0.0) + value
        window["count"] += 0 if stats["skipped"] else 1
        if self.step % self.config.log_every and self.step != self.config.steps:
            self.emit("step")
            return
        elapsed = max(time.perf_counter() - window["start"], 1e-9)
        record = {
            "kind": "train",
            "step": self.step,
            **{k: float(v) / max(window["count"], 1) for k, v in window["sums"].items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "samples_per_s": window["steps"] * self.config.batch_size * self.config.accumulate / elapsed,
        }
        if stats["grad_norm"] is not None:
            record["grad_norm"] = float(stats["grad_norm"])
        if self.ctx.main:
            self._record(record)
        self.emit("log", record)
        window.update(sums={}, count=0, steps=0, start=time.perf_counter())

    def run(self) -> TrainResult:
        """Train to ``config.steps`` (resuming if the output holds a checkpoint) and write the model."""
        self.ctx = setup(self.config.device)
        self.step = 0
        try:
            return self._run()
        finally:
            self.ctx.close()

    def _run(self) -> TrainResult:
        config, ctx = self.config, self.ctx
        if ctx.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        ctx.barrier()
        resumed = self._prepare()
        if ctx.main:
            self._reload_log(self.step)
            header = f"deblurkit {self.command} — resolved configuration"
            (self.run_dir / "config.toml").write_text(to_toml(config, header), encoding="utf-8")
        self.emit(
            "start",
            {
                "resumed_from": resumed,
                "steps": config.steps,
                "train_samples": len(self.train_set),
                "val_images": len(self.val_set) if self.val_set is not None else 0,
                "device": str(ctx.device),
                "precision": self.precision,
                "loss": self.loss_spec,
                "processes": ctx.world,
                "architecture": self.source.architecture,
            },
        )
        window = {"sums": {}, "count": 0, "steps": 0, "start": time.perf_counter()}
        while self.step < config.steps:
            stats = self._train_step(self.batches)
            window["steps"] += 1
            self._log(stats, window)
            if config.val_every and self.step % config.val_every == 0:
                self._validate_and_keep_best()
            if self.step % config.save_every == 0 and self.step < config.steps:
                self._save_checkpoint()
        self._validate_and_keep_best()
        self._save_checkpoint()
        hub_url = ""
        if ctx.main:
            self._save_model(self.output)
            draw_curves(self.records, self.run_dir / "curves.png")
            if config.push_to_hub:
                hub_url = push_to_hub(self.output, config.push_to_hub)
        self.emit(
            "done",
            {
                "output": str(self.output),
                "metrics": self.last_val,
                "best": self.best,
                "input_metrics": self.input_metrics,
                "hub_url": hub_url,
                "skipped": self.skipped,
            },
        )
        return TrainResult(self.output, self.step, self.last_val, self.best, resumed, hub_url)


def train(
    config: TrainConfig,
    *,
    command: str = "train",
    resume: bool = False,
    events: Callable[[Event], None] | None = None,
) -> TrainResult:
    """Run :class:`Trainer` on ``config``."""
    return Trainer(config, command=command, resume=resume, events=events).run()
