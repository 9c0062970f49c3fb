"""Resuming a run: whether the output holds one to continue, and what a checkpoint saves and restores.

Exact resumption needs the network, optimizer, grad scaler and EMA, the run's progress (step, data
position, best and last metrics) and the random state of every process: all saved here (through
:mod:`deblurkit.training.checkpoint`) and restored, so a resumed run reaches the same weights as one
that never stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig, differences, load_config
from .distributed import Context
from .ema import EMA

__all__ = ["CONTROL_OPTIONS", "load_state", "resume_point", "save_state"]

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


def resume_point(run_dir: Path, config: TrainConfig, resume: bool) -> int | None:
    """The step to continue from (None: a fresh run); refuses to continue a run with other settings
    unless ``resume``."""
    output = Path(config.output)
    step = ckpt.latest_step(run_dir / "checkpoints")
    if step is None:
        if resume:
            raise ConfigError(f"--resume: {output} holds no checkpoint to continue from")
        return None
    config_path = run_dir / "config.toml"
    saved = load_config(config_path) if config_path.is_file() else None
    changed = (
        ["(unknown: train/config.toml is missing)"]
        if saved is None
        else differences(saved, config, CONTROL_OPTIONS)
    )
    if changed and not resume:
        raise ConfigError(
            f"{output} already holds a run (step {step}) with other settings "
            f"({', '.join(changed[:6])}); add --resume to continue it with the new settings, "
            "or choose another --output"
        )
    return step


def save_state(
    ctx: Context,
    folder: Path,
    step: int,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    ema: EMA | None,
    progress: dict[str, Any],
) -> Path | None:
    """Save the checkpoint of ``step`` (``progress``: the run's counters and metrics); returns its folder
    on rank 0, None elsewhere. Every process must call it (the RNG states are gathered)."""
    rngs = _rng_states(ctx)
    if not ctx.main:
        return None
    state = {
        "step": step,
        **progress,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "ema_updates": ema.updates if ema is not None else 0,
        "rng": rngs,
    }
    averaged = ema.state_dict() if ema is not None else None
    return ckpt.save_checkpoint(folder, step, network.state_dict(), averaged, state)


def load_state(
    ctx: Context,
    folder: Path,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    ema: EMA | None,
) -> tuple[dict[str, Any], bool]:
    """Load the latest checkpoint into the network, optimizer, scaler and EMA and restore this process's
    RNG states; returns (the saved state, False when the RNG states were not restored because the
    number of processes changed)."""
    saved = ckpt.load_checkpoint(folder)
    state = saved.state
    network.load_state_dict(saved.network, strict=True)
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if ema is not None and saved.ema is not None:
        ema.load_state_dict(saved.ema, int(state["ema_updates"]))
    return state, _restore_rng(ctx, state["rng"])


def _rng_states(ctx: Context) -> list[dict[str, Any]]:
    """Every process's RNG states, in rank order (a collective call)."""
    rng = {"cpu": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(ctx.device)
    return ctx.gather(rng)


def _restore_rng(ctx: Context, rngs: list[dict[str, Any]]) -> bool:
    if len(rngs) != ctx.world:
        return False
    torch.set_rng_state(rngs[ctx.rank]["cpu"])
    if ctx.device.type == "cuda" and "cuda" in rngs[ctx.rank]:
        torch.cuda.set_rng_state(rngs[ctx.rank]["cuda"], ctx.device)
    return True
