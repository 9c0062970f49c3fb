"""Weight files on disk: safe reading, atomic writing, sha256 checks and deblurkit's converted cache.

Upstream ``.pth`` pickles are opened only with ``torch.load(weights_only=True)``, unwrapped from their
training framework's wrapper and converted once to safetensors in deblurkit's cache (keyed by the
pinned sha256), so later loads are pickle-free. Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from huggingface_hub import constants
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import WeightsError, one_line
from ..imaging.atomic import atomic_path
from .cards import WeightsSource
from .tfjs import is_tfjs_weights, read_tfjs_state_dict

__all__ = [
    "bundled_weights",
    "cache_dir",
    "convert_pth",
    "convert_tfjs",
    "converted_path",
    "load_state_dict",
    "read_pth_state_dict",
    "sha256_of",
    "verify_sha256",
    "write_safetensors",
]

# Keys under which training frameworks wrap a state dict, most specific first.
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net")


# -- the cache and checksums ----------------------------------------------------------------------------
def cache_dir() -> Path:
    """deblurkit's own cache (converted weights, verification stamps): ``$DEBLURKIT_CACHE`` or
    ``$HF_HOME/deblurkit``."""
    return Path(os.environ.get("DEBLURKIT_CACHE") or Path(constants.HF_HOME) / "deblurkit")


def converted_path(sha256: str) -> Path:
    """Where the safetensors conversion of the file with this sha256 is kept."""
    return cache_dir() / "converted" / f"{sha256}.safetensors"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(sha256: str) -> Path:
    return cache_dir() / "verified" / f"{sha256}.json"


def _file_signature(path: Path) -> dict[str, int | str]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Check ``path`` hashes to ``expected``; a stamp remembers files already verified unchanged."""
    path = path.resolve()
    stamp = _stamp_path(expected)
    try:
        if json.loads(stamp.read_text()) == _file_signature(path):
            return
    except (OSError, ValueError):
        pass
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsError(
            f"sha256 mismatch for {what}: expected {expected}, got {actual}; refusing to load it "
            f"(delete {path} and download it again)"
        )
    with contextlib.suppress(OSError), atomic_path(stamp) as tmp:  # a speed-up: a read-only cache keeps none
        tmp.write_text(json.dumps(_file_signature(path)))


# -- writing -----------------------------------------------------------------------------------------
def write_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Write a state dict as safetensors, atomically (a crash never leaves a partial file).

    The file is streamed to a temporary beside ``path`` by ``safetensors.torch.save_file`` (never built
    in memory) and renamed over ``path``. Its metadata is ``metadata`` plus ``format: pt`` (what
    ``transformers`` and the Hub expect of PyTorch weights) unless ``metadata`` names a format itself.
    Tensors are moved to the CPU and made contiguous; only those sharing storage with an earlier one
    (tied weights, views) are copied, since safetensors stores every tensor on its own.
    """
    tensors: dict[str, torch.Tensor] = {}
    storages: set[tuple[int, int]] = set()
    for name, tensor in state_dict.items():
        value = tensor.detach().cpu().contiguous()
        storage = (value.untyped_storage().data_ptr(), value.untyped_storage().nbytes())
        if storage in storages:
            value = value.clone()
        else:
            storages.add(storage)
        tensors[name] = value
    header = {"format": "pt", **dict(metadata or {})}
    with atomic_path(path) as temp:
        with open(temp, "xb"):  # created the ordinary way: the permissions the umask gives
            mode = temp.stat().st_mode & 0o777
        save_file(tensors, str(temp), metadata=header)
        os.chmod(temp, mode)  # recent safetensors renames its own 0600 temporary over ``temp``


def convert_pth(path: Path, source: WeightsSource, sha256: str) -> Path:
    """The cached safetensors conversion of a verified upstream ``.pth`` (written once)."""
    converted = converted_path(sha256)
    if not converted.is_file():
        state = read_pth_state_dict(path, key=source.key, strip_prefix=source.strip_prefix)
        write_safetensors(
            state, converted, {"source": f"{source.repo_id}/{source.filename}", "sha256": sha256}
        )
    return converted


def convert_tfjs(path: Path, source: WeightsSource, what: str) -> Path:
    """Verify a TF.js package (``.tgz``: its sha256; ``model.json``: its content sha256) and convert
    it to safetensors in the cache, keyed by the pinned sha256; returns the converted file."""
    path = Path(path)
    if not source.sha256:
        raise WeightsError(f"{what}: the card of a TF.js package must pin its sha256")
    converted = converted_path(source.sha256)
    if path.name.endswith((".tgz", ".tar.gz")):
        verify_sha256(path, source.sha256, what)
        if converted.is_file():
            return converted
        state = read_tfjs_state_dict(path)
    else:
        if not source.content_sha256:
            raise WeightsError(f"{what}: the card pins no content sha256 to verify {path.name} against")
        state = read_tfjs_state_dict(path, source.content_sha256)
    write_safetensors(state, converted, {"source": source.npm_package or path.name, "sha256": source.sha256})
    return converted


def bundled_weights(source: WeightsSource, what: str) -> Path:
    """Weights shipped inside deblurkit: checked against the card's sha256 like any download."""
    path = Path(source.local_path)
    if not path.is_file():
        raise WeightsError(f"{what}: the bundled weights file {path} is missing (reinstall deblurkit)")
    if not source.sha256:
        raise WeightsError(f"{what}: the card of bundled weights must pin their sha256")
    verify_sha256(path, source.sha256, what)
    return path


# -- reading -----------------------------------------------------------------------------------------
def _unwrap(obj: object, key: str) -> object:
    if not isinstance(obj, Mapping):
        return obj
    if key:
        if key not in obj:
            raise WeightsError(f"the checkpoint has no {key!r} entry (it has: {', '.join(map(str, obj))})")
        return obj[key]
    if all(isinstance(value, torch.Tensor) for value in obj.values()):
        return obj
    for candidate in _WRAPPER_KEYS:
        if isinstance(obj.get(candidate), Mapping):
            return obj[candidate]
    return obj


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    prefix = prefix or ("module." if state and all(k.startswith("module.") for k in state) else "")
    return {(k[len(prefix) :] if prefix and k.startswith(prefix) else k): v for k, v in state.items()}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNSAFE_ADVICE = re.compile(r"weights_only|trust|safe_globals", re.IGNORECASE)


def _refusal_reason(err: BaseException) -> str:
    """Why torch's weights-only unpickler refused a file, without torch's advice to unpickle it anyway."""
    text = _ANSI.sub("", str(err))
    if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", text):
        return f"it holds a Python object of type {found.group(1)}"
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    reason = found.group(1).split(". ")[0].strip() if found else (lines[0] if lines else "")
    return type(err).__name__ if not reason or _UNSAFE_ADVICE.search(reason) else reason


def _is_torch_save_file(path: Path) -> bool:
    """True when a file starts like ``torch.save`` output: a zip archive, or a binary pickle (legacy)."""
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(4)
    except OSError as err:
        raise WeightsError(f"{Path(path).name} cannot be read: {one_line(err)}") from None
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_pth_state_dict(path: Path, *, key: str = "", strip_prefix: str = "") -> dict[str, torch.Tensor]:
    """Read an upstream ``.pth`` safely (``weights_only=True``), unwrap it and return plain tensors."""
    if not _is_torch_save_file(path):
        raise WeightsError(
            f"{Path(path).name} is not a PyTorch checkpoint (.pth/.pt), a .safetensors file or a TF.js model"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol warnings: the error below says it
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError) as err:
        raise WeightsError(
            f"{Path(path).name} is not a plain-tensor checkpoint; refusing to unpickle it "
            f"({_refusal_reason(err)})"
        ) from None
    except (OSError, EOFError) as err:
        raise WeightsError(f"{Path(path).name} cannot be read: {one_line(err)}") from None
    except Exception as err:  # a damaged or hand-made pickle fails in any way
        raise WeightsError(
            f"{Path(path).name} is not a valid PyTorch checkpoint "
            f"({type(err).__name__}: {_refusal_reason(err)})"
        ) from None
    state = _unwrap(obj, key)
    if not isinstance(state, Mapping) or not state:
        raise WeightsError(f"{Path(path).name} holds no state dict")
    bad = [str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise WeightsError(f"{Path(path).name}: entries that are not named tensors: {', '.join(bad[:5])}")
    return _strip(state, strip_prefix)


def load_state_dict(path: Path | str, *, key: str = "", strip_prefix: str = "") -> dict[str, torch.Tensor]:
    """Read a weights file: safetensors directly, an upstream ``.pth``/``.pt``/``.ckpt`` safely."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return _strip(load_file(str(path)), strip_prefix)
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{path.name} is not a valid safetensors file ({one_line(err)})") from None
    if is_tfjs_weights(path):
        return read_tfjs_state_dict(path)
    return read_pth_state_dict(path, key=key, strip_prefix=strip_prefix)
