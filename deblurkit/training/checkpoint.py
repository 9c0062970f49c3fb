"""Resumable checkpoints, written so that a kill, a full disk or a damaged file never costs the last good one.

A checkpoint is a folder ``step-NNNNNNNN/`` holding ``network.safetensors`` (the trained weights),
``ema.safetensors`` (the averaged weights, when EMA is on), ``state.pt`` (optimizer, grad scaler, RNG
states of every process, step, data position, best metric: plain tensors and numbers only, read back
with ``torch.load(weights_only=True)``) and ``manifest.json`` (the size and sha256 of each file).

It is built under a hidden temporary name, each file flushed to disk and read back against its
sha256, then renamed into place; only then does ``latest.json`` (itself replaced atomically) point at
it, and only then are older checkpoints deleted: while a run goes on the previous good checkpoint is
kept too (``keep=2``), so that one damaged afterwards (a truncated copy, a failing disk) still leaves
one to resume from. A write that fails (a full disk) removes its temporary folder and leaves the
checkpoints as they were.

Loading checks every file against the manifest (checkpoints from before manifests are only parsed)
and falls back to the newest older intact checkpoint, saying which file was damaged.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ..errors import DeblurkitError, one_line
from ..imaging.atomic import is_disk_full, write_text_atomic

__all__ = [
    "LATEST",
    "Checkpoint",
    "checkpoint_problem",
    "latest_step",
    "load_checkpoint",
    "replace_folder",
    "save_checkpoint",
]

LATEST = "latest.json"
_NETWORK, _EMA, _STATE, _MANIFEST = "network.safetensors", "ema.safetensors", "state.pt", "manifest.json"
_STEP_FOLDER = re.compile(r"step-(\d{8})")
_CHUNK = 1 << 22


@dataclass
class Checkpoint:
    """What a checkpoint holds (``path``: its folder)."""

    step: int
    network: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    state: dict[str, Any]
    path: Path | None = None


class _DamagedError(Exception):
    """A checkpoint file that is missing, truncated or unreadable (the message names it)."""


def replace_folder(built: Path, target: Path) -> None:
    """Put the finished folder ``built`` at ``target``, replacing what was there, never leaving a
    half-written ``target``."""
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    if target.exists():
        os.replace(target, old)
    os.replace(built, target)
    shutil.rmtree(old, ignore_errors=True)


# -- finding checkpoints -----------------------------------------------------------------------------------
def _pointer(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The content of ``latest.json`` (None when absent or damaged) and what is wrong with it."""
    path = folder / LATEST
    try:
        pointer = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as err:
        return None, f"{path} is damaged ({one_line(err)})"
    folder_name = pointer.get("folder") if isinstance(pointer, dict) else None
    if not isinstance(folder_name, str) or not _STEP_FOLDER.fullmatch(folder_name):
        return None, f"{path} is damaged (it names no checkpoint folder)"
    return pointer, None


def _folder_step(pointer: dict[str, Any]) -> int:
    """The step of the checkpoint folder a (checked) ``latest.json`` names."""
    return int(pointer["folder"][len("step-") :])


def _step_folders(folder: Path) -> list[tuple[int, Path]]:
    """Every ``step-NNNNNNNN`` folder in ``folder``, newest first."""
    if not folder.is_dir():
        return []
    found = [(int(m[1]), p) for p in folder.iterdir() if (m := _STEP_FOLDER.fullmatch(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def _candidates(folder: Path) -> tuple[list[tuple[int, Path]], list[str]]:
    """The checkpoints to try, newest first: the one ``latest.json`` names, then the older ones (all of
    them when ``latest.json`` is damaged); and notes on what was wrong."""
    pointer, problem = _pointer(folder)
    notes = [problem] if problem else []
    folders = _step_folders(folder)
    if pointer is None:
        return (folders if problem else []), notes
    name = pointer["folder"]
    newest = _folder_step(pointer)
    current = [(newest, folder / name)] if (folder / name).is_dir() else []
    if not current:
        notes.append(f"{folder / name} (named by {folder / LATEST}) is missing")
    return current + [(step, path) for step, path in folders if step < newest], notes


def latest_step(folder: Path) -> int | None:
    """The step of the newest checkpoint in ``folder`` (not yet verified), or None."""
    candidates, _ = _candidates(folder)
    return candidates[0][0] if candidates else None


# -- checking and reading ------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(path: Path) -> dict[str, dict[str, Any]] | None:
    """The files the manifest of checkpoint ``path`` lists (None for a checkpoint without one)."""
    manifest = path / _MANIFEST
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        if not isinstance(files, dict) or _NETWORK not in files or _STATE not in files:
            raise ValueError("it does not list network.safetensors and state.pt")
        return {str(name): {"size": int(e["size"]), "sha256": str(e["sha256"])} for name, e in files.items()}
    except FileNotFoundError:
        if (path / _NETWORK).is_file() and (path / _STATE).is_file():
            return None  # written before manifests: only parsing can tell
        missing = _NETWORK if not (path / _NETWORK).is_file() else _STATE
        raise _DamagedError(f"{path / missing} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _DamagedError(f"{manifest} is damaged ({one_line(err)})") from None


def _check(path: Path, thorough: bool) -> None:
    """Raise :class:`_DamagedError` naming the first file of checkpoint ``path`` that is missing, truncated or
    (``thorough``: its sha256 is checked too) altered."""
    files = _manifest(path)
    for name, entry in (files or {}).items():
        file = path / name
        try:
            size = file.stat().st_size
        except OSError:
            raise _DamagedError(f"{file} is missing") from None
        if size != entry["size"]:
            what = "truncated" if size < entry["size"] else "longer than written"
            raise _DamagedError(f"{file} is {what} ({size} of {entry['size']} bytes)")
        try:
            if thorough and _sha256(file) != entry["sha256"]:
                raise _DamagedError(f"{file} is damaged (its sha256 differs from the manifest's)")
        except OSError as err:
            raise _DamagedError(f"{file} cannot be read ({one_line(err)})") from None


def checkpoint_problem(path: Path, thorough: bool = False) -> str | None:
    """What is wrong with checkpoint folder ``path`` (naming the file), or None when it is intact."""
    try:
        _check(path, thorough)
    except _DamagedError as err:
        return str(err)
    return None


def _read(path: Path, step: int) -> Checkpoint:
    """Checkpoint ``path``, fully checked; :class:`_DamagedError` naming the file otherwise."""
    _check(path, thorough=True)

    def parse(name: str, reader: Callable[[bytes], Any]) -> Any:
        file = path / name
        try:
            return reader(file.read_bytes())
        except Exception as err:  # any parser failure means a damaged file
            raise _DamagedError(f"{file} cannot be read ({one_line(err)})") from None

    network = parse(_NETWORK, load_safetensors)
    ema = parse(_EMA, load_safetensors) if (path / _EMA).is_file() else None
    state = parse(_STATE, lambda data: torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    if not isinstance(state, dict):
        raise _DamagedError(f"{path / _STATE} is damaged (it holds no training state)")
    return Checkpoint(int(state.get("step", step)), network, ema, state, path)


def load_checkpoint(folder: Path, notes: list[str] | None = None) -> Checkpoint:
    """The newest intact checkpoint in ``folder`` (safely read: no pickled objects). When newer ones are
    damaged, says so in ``notes``; when none is intact, a one-line error naming the damaged file."""
    candidates, problems = _candidates(folder)
    if not candidates:
        raise DeblurkitError(f"{folder} holds no checkpoint" + (f" ({problems[0]})" if problems else ""))
    damaged: list[str] = []
    for step, path in candidates:
        try:
            checkpoint = _read(path, step)
        except _DamagedError as err:
            damaged.append(str(err))
            continue
        if notes is not None and (damaged or problems):
            skipped = "; ".join(problems + damaged)
            notes.append(f"{skipped}: resuming from the intact checkpoint of step {checkpoint.step} instead")
        return checkpoint
    raise DeblurkitError(
        f"{damaged[0]}, and no older checkpoint is intact; move {folder} away to start the run over"
    )


# -- writing -------------------------------------------------------------------------------------------------
class _HashingWriter:
    """A binary file that hashes and counts what is written to it."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _write_verified(path: Path, save: Callable[[_HashingWriter], object]) -> dict[str, Any]:
    """Create file ``path`` with ``save``, flush it to disk and read it back; its manifest entry."""
    with open(path, "xb") as handle:
        writer = _HashingWriter(handle)
        try:
            save(writer)
        except RuntimeError as err:  # torch.save reports a failed write as a RuntimeError
            cause = err.__cause__ or err.__context__
            if isinstance(cause, OSError):
                raise cause from None
            raise
        handle.flush()
        os.fsync(handle.fileno())
    expected = writer.digest.hexdigest()
    if path.stat().st_size != writer.size or _sha256(path) != expected:
        raise OSError(errno.EIO, "it does not read back as written", str(path))
    return {"size": writer.size, "sha256": expected}


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (renames) to disk where the system allows it."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return save_safetensors({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})


def _prune(folder: Path, name: str, step: int, keep: int) -> None:
    """Delete what is not needed beside the new checkpoint ``name``: temporaries, and every checkpoint but
    the newest ``keep - 1`` intact older ones."""
    kept = {name}
    for older_step, path in _step_folders(folder):
        if len(kept) >= keep:
            break
        if older_step < step and checkpoint_problem(path) is None:
            kept.add(path.name)
    for stale in folder.iterdir():
        if stale.name in kept:
            continue
        if _STEP_FOLDER.fullmatch(stale.name) or ".tmp-" in stale.name or ".old-" in stale.name:
            shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(
    folder: Path,
    step: int,
    network: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write the checkpoint of ``step`` into ``folder``, verified, and make it the latest; then keep only
    it and the ``keep - 1`` newest older intact ones. Returns its folder. A failed write (a full disk)
    is a one-line error that leaves the earlier checkpoints as they were and no temporary behind."""
    name = f"step-{step:08d}"
    target = folder / name
    pointer, _ = _pointer(folder) if folder.is_dir() else (None, None)
    saved = pointer is not None and pointer["folder"] == name
    if saved and checkpoint_problem(target, thorough=True) is None:
        _prune(folder, name, step, keep)  # this very step is already saved (a resumed run ending there)
        return target
    building = folder / f".{name}.tmp-{secrets.token_hex(4)}"
    placed = False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        building.mkdir()
        files: dict[str, Callable[[_HashingWriter], object]] = {
            _NETWORK: lambda out: out.write(_safetensors_bytes(network)),
            _STATE: lambda out: torch.save(state, out),
        }
        if ema is not None:
            files[_EMA] = lambda out: out.write(_safetensors_bytes(ema))
        manifest = {file: _write_verified(building / file, save) for file, save in files.items()}
        listing = json.dumps({"step": step, "files": manifest}).encode()
        _write_verified(building / _MANIFEST, lambda out: out.write(listing))
        _sync_folder(building)
        replace_folder(building, target)
        placed = True
        _sync_folder(folder)
        write_text_atomic(folder / LATEST, json.dumps({"step": step, "folder": name}) + "\n")
        _sync_folder(folder)
    except OSError as err:
        if placed and (pointer is None or pointer["folder"] != name):
            shutil.rmtree(target, ignore_errors=True)  # complete, but latest.json never named it
        previous = latest_step(folder)
        kept = "no checkpoint yet" if previous is None else f"the checkpoint of step {previous} is kept"
        again = "free some space, then run again" if is_disk_full(err) else "run again"
        raise DeblurkitError(
            f"cannot write the checkpoint {target}: {one_line(err)}; the run stopped ({kept}; {again}"
            + (")" if previous is None else " to resume)")
        ) from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    _prune(folder, name, step, keep)
    return target
