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

from ..errors import DeblurkitError, one_line
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig, differences, load_config
from .distributed import Context
from .ema import EMA

__all__ = ["CONTROL_OPTIONS", "NETWORK_OPTIONS", "load_state", "resume_point", "save_state"]

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

NETWORK_OPTIONS = ("model", "architecture", "weights", "pretrained")
"""Options naming the network a run trains and its starting weights: never changed on resumption, not
even with --resume (the checkpoint holds that network; the card would misname where it came from)."""


def _same_reference(old: str, new: str) -> bool:
    """Whether two model or weights references name the same thing (one path written two ways too)."""
    if old == new:
        return True
    if not old or not new:
        return False
    a, b = Path(old).expanduser(), Path(new).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def _network(config: TrainConfig) -> str:
    return f"--model {config.model}" if config.model else f"--architecture {config.architecture}"


def _start(config: TrainConfig) -> str:
    if not config.pretrained:
        return "random weights"
    return f"--weights {config.weights}" if config.weights else f"the weights of --model {config.model}"


def _check_network(output: Path, step: int, saved: TrainConfig, config: TrainConfig) -> None:
    """Refuse to continue a run as another network or from other starting weights (one line)."""
    same_model = _same_reference(saved.model, config.model)
    if not same_model or (not config.model and saved.architecture != config.architecture):
        what, again = f"of {_network(saved)}, not {_network(config)}", f"with {_network(saved)}"
    elif saved.pretrained != config.pretrained:
        what = f"started from {_start(saved)}, not {_start(config)}"
        again = "with --pretrained" if saved.pretrained else "without --pretrained"
    elif config.pretrained and not _same_reference(saved.weights, config.weights):
        what = f"started from {_start(saved)}, not {_start(config)}"
        again = f"with --weights {saved.weights}" if saved.weights else "without --weights"
    else:
        return
    raise ConfigError(
        f"{output} holds a run (step {step}) {what}; continue it {again}, or choose another --output"
    )


def _saved_config(run_dir: Path) -> tuple[TrainConfig | None, str]:
    """The run's saved config, or None and why it cannot be had."""
    path = run_dir / "config.toml"
    if not path.is_file():
        return None, f"(unknown: {path} is missing)"
    try:
        return load_config(path), ""
    except ConfigError:
        return None, f"(unknown: {path} is damaged)"


def resume_point(run_dir: Path, config: TrainConfig, resume: bool) -> int | None:
    """The step to continue from (None: a fresh run); refuses to continue a run with other settings
    unless ``resume``, and a run of another network (:data:`NETWORK_OPTIONS`) even then."""
    output = Path(config.output)
    step = ckpt.latest_step(run_dir / "checkpoints")
    if step is None:
        if resume:
            raise ConfigError(f"--resume: {output} holds no checkpoint to continue from")
        return None
    saved, unknown = _saved_config(run_dir)
    if saved is not None:
        _check_network(output, step, saved, config)
    # the network options are the same by now (a path may be written another way)
    changed = [unknown] if saved is None else differences(saved, config, CONTROL_OPTIONS + NETWORK_OPTIONS)
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
    keep: int = 2,
) -> Path | None:
    """Save the checkpoint of ``step`` (``progress``: the run's counters and metrics; ``keep``: how many
    checkpoints to keep, this one included); returns its folder on rank 0, None elsewhere. Every process
    must call it (the RNG states are gathered)."""
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
    return ckpt.save_checkpoint(folder, step, network.state_dict(), averaged, state, keep=keep)


def load_state(
    ctx: Context,
    folder: Path,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    ema: EMA | None,
    notes: list[str] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Load the newest intact checkpoint into the network, optimizer, scaler and EMA and restore this
    process's RNG states; returns (the saved state, its ``step`` the checkpoint's, False when the RNG
    states were not restored because the number of processes changed). Damaged newer checkpoints that
    were passed over are described in ``notes``; a checkpoint that does not fit is a one-line error."""
    saved = ckpt.load_checkpoint(folder, notes)
    state = {**saved.state, "step": saved.step}
    try:
        network.load_state_dict(saved.network, strict=True)
    except RuntimeError as err:
        raise DeblurkitError(
            f"the checkpoint {saved.path} does not fit the network being trained ({one_line(err)}); "
            "was --arch-config changed? Choose another --output to train this one"
        ) from None
    try:
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and saved.ema is not None:
            ema.load_state_dict(saved.ema, int(state["ema_updates"]))
        restored = _restore_rng(ctx, state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        raise DeblurkitError(
            f"the checkpoint {saved.path} does not fit this run ({type(err).__name__}: {one_line(err)}); "
            "choose another --output"
        ) from None
    return state, restored


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
