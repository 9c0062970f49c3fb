"""The training loop behind ``deblurkit train`` and ``deblurkit finetune``.

:class:`Trainer` checks everything it can before the first step (:mod:`.preparation`, :mod:`.datasets`),
then trains with AdamW, a warm-up + cosine schedule, optional gradient clipping, accumulation, EMA,
autocast and ``torch.compile``, on one process or under ``torchrun`` (DistributedDataParallel; rank 0
logs, validates and writes). It reports to an ``events`` callback and ``train/log.jsonl``
(:mod:`.events`; the library never prints), validates (:mod:`.validation`), keeps resumable
checkpoints (:mod:`.resume`) and the best model, and writes the model folder (:mod:`.publish`).

Exact resumption: the data order and every per-sample random choice are functions of (seed, epoch,
index) and the learning rate a function of the step, so a run killed after a checkpoint and resumed
reaches the same weights as one that never stopped (bit for bit on CPU).
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DeblurkitError, one_line
from ..imaging.atomic import check_writable, is_disk_full, write_text_atomic
from ..zoo.models import build_network
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig, default_loss, to_toml
from .curves import draw_curves
from .datasets import train_batches, training_data
from .distributed import setup
from .ema import EMA
from .events import Event, RunLog, StepWindow
from .preparation import (
    check_crop,
    check_options,
    loss_encoder,
    needs_encoder,
    resolve_precision,
    resolve_source,
)
from .publish import RUN_FOLDER, card_info, push_to_hub, write_model_folder
from .resume import load_state, resume_point, save_state
from .schedule import lr_at
from .validation import ValidationPictures, validate

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "train"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The run's progress a checkpoint keeps besides its step.
_PROGRESS = ("consumed", "skipped", "best", "input_metrics", "last_val", "last_val_step")


class NonFiniteLossError(DeblurkitError):
    """The loss became NaN or Inf."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    output: Path
    step: int
    metrics: dict[str, float]
    best: dict[str, float]
    resumed_from: int | None
    hub_url: str = ""


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
        check_options(config, command)
        self.config, self.command, self.resume = config, command, resume
        self._events = events
        self.output = Path(config.output)
        self.run_dir = self.output / RUN_FOLDER
        self.log = RunLog(self.run_dir / "log.jsonl")
        self.pictures: ValidationPictures | None = None

    def emit(self, kind: str, data: dict[str, Any] | None = None) -> None:
        """Send an event (rank 0 only)."""
        if self._events is not None and self.ctx.main:
            self._events(Event(kind, self.step, data or {}))

    # -- set-up ----------------------------------------------------------------------------------------
    def _prepare(self) -> int | None:
        """Everything before the first step; returns the step resumed from, or None."""
        config = self.config
        self.source = resolve_source(config)
        check_crop(config, self.source)
        self.precision = resolve_precision(config.precision, self.ctx.device, self.source.architecture)
        if config.batch_size % self.ctx.world:
            raise ConfigError(
                f"--batch-size {config.batch_size} must be a multiple of the {self.ctx.world} processes"
            )
        self.train_set, self.val_set, notes = training_data(config, self.run_dir if self.ctx.main else None)
        self.loss_spec = config.loss or default_loss(self.source.architecture)
        self.encoder = loss_encoder(config, self.ctx.device) if needs_encoder(self.loss_spec) else None
        if self.encoder is not None and config.crop % self.encoder.patch_size[0]:
            raise ConfigError(
                f"--crop {config.crop} must be a multiple of the encoder's patch size "
                f"{self.encoder.patch_size[0]} for the MAE loss"
            )
        from ..losses import build_loss

        self.loss = build_loss(self.loss_spec, encoder=self.encoder, device=self.ctx.device)
        resumed = resume_point(self.run_dir, config, self.resume)
        self._build(resumed)
        resumed = None if resumed is None else self.step  # an older checkpoint when the newest is damaged
        running = self.step < config.steps
        self.batches = train_batches(self.train_set, config, self.ctx, self.consumed) if running else iter(())
        for note in notes:
            self.emit("note", {"message": note})
        return resumed

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
            self._load()
        model: nn.Module = network
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(network, device_ids=ids)
        self.ddp = model if ctx.distributed else None
        self.model = torch.compile(model) if config.compile else model

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

    def validate(self) -> dict[str, float]:
        """PSNR, SSIM (and the MAE distance) of the (EMA) network on the validation images (rank 0); the
        last validation of a run also keeps its images for ``train/report.html``."""
        final = self.step >= self.config.steps
        label = self.output.name or "model"
        self.pictures = ValidationPictures(self.run_dir / "report_images", label) if final else None
        totals, inputs = validate(
            self._eval_network(),
            self.source,
            self.val_set,
            device=self.ctx.device,
            precision=self.precision,
            tile=self.config.tile,
            encoder=self.encoder,
            with_inputs=not self.input_metrics,
            pictures=self.pictures,
        )
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
        self.log.append(record)
        improved = metrics["psnr"] > self.best.get("psnr", -math.inf)
        if improved:
            self.best = {"psnr": metrics["psnr"], "ssim": metrics["ssim"], "step": self.step}
            building = self.run_dir / ".best.tmp"
            shutil.rmtree(building, ignore_errors=True)
            ckpt.replace_folder(self._save_model(building), self.run_dir / "best")
        self.emit("val", {**record, "best": improved})
        draw_curves(self.log.records, self.run_dir / "curves.png")

    def _write_report(self) -> None:
        """``train/report.html``: the last validation's images, inputs against the trained network."""
        if self.pictures is None or not self.pictures.images:
            return
        label = self.pictures.label
        means = {"input": dict(self.input_metrics), label: dict(self.last_val)}
        note = f"{len(self.pictures.images)} of {len(self.val_set)} validation images at step {self.step}"
        page = self.pictures.write(self.run_dir / "report.html", means, [note])
        self.emit("note", {"message": f"validation report: {page}"})

    # -- saving ------------------------------------------------------------------------------------------
    def _save_checkpoint(self, final: bool = False) -> None:
        """Save a checkpoint; the previous one is kept while the run goes on (``final``: not)."""
        progress = {key: getattr(self, key) for key in _PROGRESS}
        folder = self.run_dir / "checkpoints"
        args = (self.network, self.optimizer, self.scaler, self.ema, progress)
        path = save_state(self.ctx, folder, self.step, *args, keep=1 if final else 2)
        if path is not None:
            self.emit("checkpoint", {"path": str(path)})
        self.ctx.barrier()

    def _load(self) -> None:
        """Continue from the newest intact checkpoint."""
        folder = self.run_dir / "checkpoints"
        notes: list[str] = []
        state, rng_restored = load_state(
            self.ctx, folder, self.network, self.optimizer, self.scaler, self.ema, notes
        )
        try:
            self.step, self.consumed, self.skipped = (int(state[k]) for k in ("step", "consumed", "skipped"))
            self.best, self.input_metrics = dict(state["best"]), dict(state["input_metrics"])
            self.last_val, self.last_val_step = dict(state["last_val"]), int(state["last_val_step"])
        except (KeyError, TypeError, ValueError) as err:
            raise DeblurkitError(
                f"the checkpoint of step {state['step']} in {folder} lacks the run's progress "
                f"({type(err).__name__}: {one_line(err)}); choose another --output"
            ) from None
        for note in notes:
            self.emit("note", {"message": note})
        if not rng_restored:
            message = (
                f"resumed with {self.ctx.world} processes instead of {len(state['rng'])}: "
                "the data order continues, the loss's token sampling is reseeded"
            )
            self.emit("note", {"message": message})

    def _save_model(self, folder: Path) -> Path:
        info = card_info(
            self.config,
            self.source,
            command=self.command,
            precision=self.precision,
            loss=self.loss_spec,
            steps=self.step,
            with_encoder=self.encoder is not None,
            metrics=self.last_val,
            input_metrics=self.input_metrics,
            best=self.best,
        )
        return write_model_folder(folder, self._eval_network(), info)

    # -- the run -------------------------------------------------------------------------------------
    def _log(self, stats: dict[str, Any], window: StepWindow) -> None:
        window.add(stats)
        if self.step % self.config.log_every and self.step != self.config.steps:
            self.emit("step")
            return
        lr = self.optimizer.param_groups[0]["lr"]
        record = window.record(
            self.step, lr, self.config.batch_size * self.config.accumulate, stats["grad_norm"]
        )
        if self.ctx.main:
            self.log.append(record)
        self.emit("log", record)

    def run(self) -> TrainResult:
        """Train to ``config.steps`` (resuming if the output holds a checkpoint) and write the model."""
        self.ctx = setup(self.config.device)
        self.step = 0
        try:
            return self._run()
        except OSError as err:
            if not is_disk_full(err):
                raise
            raise DeblurkitError(
                f"cannot write {err.filename or self.output}: {err.strerror or one_line(err)}; "
                "the run stopped (free some space, then run again to resume)"
            ) from None
        finally:
            self.ctx.close()

    def _run(self) -> TrainResult:
        config, ctx = self.config, self.ctx
        if ctx.main:  # one line for a file in the way, a read-only folder or a full disk
            check_writable(self.run_dir)
        ctx.barrier()
        resumed = self._prepare()
        if ctx.main:
            for note in self.log.keep_upto(self.step):
                self.emit("note", {"message": note})
            header = f"deblurkit {self.command} — resolved configuration"
            write_text_atomic(self.run_dir / "config.toml", to_toml(config, header))
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
        window = StepWindow()
        while self.step < config.steps:
            self._log(self._train_step(self.batches), window)
            if config.val_every and self.step % config.val_every == 0:
                self._validate_and_keep_best()
            if self.step % config.save_every == 0 and self.step < config.steps:
                self._save_checkpoint()
        self._validate_and_keep_best()
        self._save_checkpoint(final=True)
        hub_url = ""
        if ctx.main:
            self._save_model(self.output)
            draw_curves(self.log.records, self.run_dir / "curves.png")
            self._write_report()
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
