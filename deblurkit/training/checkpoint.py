"""Resumable checkpoints, written so that a kill at any moment leaves the last good one intact.

A checkpoint is a folder ``step-NNNNNNNN/`` holding ``network.safetensors`` (the trained weights),
``ema.safetensors`` (the averaged weights, when EMA is on) and ``state.pt`` (optimizer, grad scaler,
RNG states of every process, step, data position, best metric: plain tensors and numbers only, read
back with ``torch.load(weights_only=True)``). It is written under a hidden temporary name and renamed
into place; only then does ``latest.json`` (itself replaced atomically) point at it, and only then
are older checkpoints deleted.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..errors import DeblurkitError
from ..imaging.atomic import write_text_atomic
from ..zoo.weights import write_safetensors

__all__ = ["LATEST", "Checkpoint", "latest_step", "load_checkpoint", "replace_folder", "save_checkpoint"]

LATEST = "latest.json"
_NETWORK, _EMA, _STATE = "network.safetensors", "ema.safetensors", "state.pt"


@dataclass
class Checkpoint:
    """What a checkpoint holds."""

    step: int
    network: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    state: dict[str, Any]


def replace_folder(built: Path, target: Path) -> None:
    """Put the finished folder ``built`` at ``target``, replacing what was there, never leaving a
    half-written ``target``."""
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    if target.exists():
        os.replace(target, old)
    os.replace(built, target)
    shutil.rmtree(old, ignore_errors=True)


def _pointer(folder: Path) -> dict[str, Any] | None:
    try:
        pointer = json.loads((folder / LATEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise DeblurkitError(f"{folder / LATEST} is damaged ({err}); delete it to start over") from None
    return pointer


def latest_step(folder: Path) -> int | None:
    """The step of the newest complete checkpoint in ``folder``, or None."""
    pointer = _pointer(folder)
    return None if pointer is None else int(pointer["step"])


def save_checkpoint(
    folder: Path,
    step: int,
    network: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
    state: dict[str, Any],
) -> Path:
    """Write the checkpoint of ``step`` into ``folder`` and make it the latest; returns its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    target = folder / name
    pointer = _pointer(folder)
    if pointer is not None and pointer["folder"] == name and target.is_dir():
        return target  # this very step is already saved (a resumed run ending where it started)
    building = folder / f".{name}.tmp-{secrets.token_hex(4)}"
    building.mkdir()
    try:
        write_safetensors(network, building / _NETWORK)
        if ema is not None:
            write_safetensors(ema, building / _EMA)
        torch.save(state, building / _STATE)
        replace_folder(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    write_text_atomic(folder / LATEST, json.dumps({"step": step, "folder": name}) + "\n")
    for stale in folder.iterdir():
        if stale.name != name and (stale.name.startswith("step-") or ".tmp-" in stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    return target


def load_checkpoint(folder: Path) -> Checkpoint:
    """The latest checkpoint in ``folder`` (safely read: no pickled objects)."""
    pointer = _pointer(folder)
    if pointer is None:
        raise DeblurkitError(f"{folder} holds no checkpoint")
    path = folder / str(pointer["folder"])
    try:
        network = load_file(str(path / _NETWORK))
        ema = load_file(str(path / _EMA)) if (path / _EMA).is_file() else None
        state = torch.load(path / _STATE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as err:
        raise DeblurkitError(f"checkpoint {path} cannot be read ({err}); delete it to start over") from None
    return Checkpoint(int(pointer["step"]), network, ema, state)
