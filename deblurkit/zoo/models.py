"""``load_model``: a zoo name, a Hub model, or a local folder or file in; a ready :class:`Restorer` out.

References:
- a zoo name (``nafnet-gopro-width32``), its weights fetched from the Hub and verified;
- ``hf:org/name[@revision]``, a model folder published by deblurkit on the Hub;
- a local model folder (``config.json`` + ``model.safetensors``), or a ``.safetensors`` file that
  deblurkit wrote (its metadata names the architecture).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..archs import get_architecture
from ..errors import DeblurkitError, ModelNotFoundError, WeightsError
from ..imaging.atomic import write_text_atomic
from ..inference.device import resolve_device
from .cards import ZooEntry, all_entries, get_entry
from .hub import download, fetch_weights, snapshot_commit
from .restorer import Restorer
from .tfjs import is_tfjs_weights
from .validation import validate_config
from .weights import convert_tfjs, load_state_dict, write_safetensors

__all__ = [
    "MODEL_CONFIG_FILE",
    "MODEL_WEIGHTS_FILE",
    "ModelSpec",
    "build_network",
    "convert_checkpoint",
    "load_model",
    "resolve_model",
    "save_model",
]

MODEL_CONFIG_FILE = "config.json"
MODEL_WEIGHTS_FILE = "model.safetensors"
METADATA_KEY = "deblurkit_model"
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".json", ".tgz")


@dataclass(frozen=True)
class ModelSpec:
    """What a reference resolves to: an architecture, its config, and where the weights are."""

    name: str
    architecture: str
    config: Mapping[str, Any]
    weights_path: Path | None = None
    entry: ZooEntry | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    config_source: str = ""
    """Where the config was read (a file, a card): named in the one-line error of a bad setting."""

    @property
    def working_resolution(self) -> dict[str, float]:
        """``work_pixels``/``min_work_scale`` from the card's or config's ``inference`` table."""
        inference = self.entry.inference if self.entry else self.info.get("inference", {})
        inference = inference if isinstance(inference, Mapping) else {}
        pixels, scale = inference.get("work_pixels", 0), inference.get("min_work_scale", 1.0)
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
            raise DeblurkitError(
                f"{self.name}: inference.work_pixels must be a whole number ≥ 0, got {pixels!r}"
            )
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
            raise DeblurkitError(f"{self.name}: inference.min_work_scale must be in (0, 1], got {scale!r}")
        return {"work_pixels": pixels, "min_work_scale": float(scale)}


def _spec_from_config(
    name: str, config: Mapping[str, Any], weights_path: Path | None, source: str
) -> ModelSpec:
    try:
        return ModelSpec(
            name=str(config.get("name") or name),
            architecture=str(config["architecture"]),
            config=dict(config.get("config", {})),
            weights_path=weights_path,
            info=dict(config),
            config_source=source,
        )
    except KeyError:
        raise DeblurkitError(f"{name}: config.json names no architecture") from None
    except (TypeError, ValueError):
        raise DeblurkitError(f'{name}: its "config" is not a mapping of settings') from None


def _read_config_json(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DeblurkitError(f"{path} is not a valid deblurkit config.json ({err})") from None
    if not isinstance(config, dict):
        raise DeblurkitError(f"{path} is not a valid deblurkit config.json")
    return config


def _spec_from_folder(folder: Path) -> ModelSpec:
    config_path, weights_path = folder / MODEL_CONFIG_FILE, folder / MODEL_WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelNotFoundError(
            f"{folder} is not a deblurkit model folder "
            f"(it needs {MODEL_CONFIG_FILE} and {MODEL_WEIGHTS_FILE})"
        )
    return _spec_from_config(folder.name, _read_config_json(config_path), weights_path, str(config_path))


def _spec_from_file(path: Path) -> ModelSpec:
    if path.suffix != ".safetensors":
        raise ModelNotFoundError(
            f"cannot tell the architecture of {path.name}: use --model <zoo name> --weights {path}"
        )
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{path.name} is not a valid safetensors file ({err})") from None
    if METADATA_KEY not in metadata:
        raise ModelNotFoundError(
            f"{path.name} does not say which architecture it is: use --model <zoo name> --weights {path}"
        )
    try:
        config = json.loads(metadata[METADATA_KEY])
    except ValueError as err:
        raise WeightsError(f"{path.name}: its {METADATA_KEY} metadata is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{path.name}: its {METADATA_KEY} metadata is not a JSON object")
    return _spec_from_config(path.stem, config, path, path.name)


def _hf_hint(repo: str) -> str:
    return (
        f"load hf:{repo} once where the Hub can be reached (it is then cached), or pass a local copy of "
        "the model folder as --model PATH"
    )


def _spec_from_hub(ref: str) -> ModelSpec:
    """A deblurkit model folder on the Hub: its revision is resolved to one commit (by the download of
    ``config.json``), and the weights are fetched at that same commit, so the two always match."""
    repo, _, revision = ref.removeprefix("hf:").partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ModelNotFoundError(f"{ref!r} is not a Hub reference of the form hf:org/name[@revision]")
    config_path = download(
        repo,
        MODEL_CONFIG_FILE,
        revision or "main",
        what=ref,
        hint=_hf_hint(repo),
        not_found=ModelNotFoundError,
    )
    commit = snapshot_commit(config_path, MODEL_CONFIG_FILE)
    if not commit:
        raise WeightsError(f"{ref}: cannot tell which commit {config_path} belongs to (not a Hub cache path)")
    weights_path = fetch_weights_for_hub_model(repo, commit, ref)
    return _spec_from_config(
        repo.split("/")[1], _read_config_json(config_path), weights_path, f"{ref} {MODEL_CONFIG_FILE}"
    )


def fetch_weights_for_hub_model(repo: str, revision: str, what: str) -> Path:
    """The verified ``model.safetensors`` of a deblurkit model on the Hub (``revision``: best a commit)."""
    from .cards import WeightsSource

    return fetch_weights(
        WeightsSource(filename=MODEL_WEIGHTS_FILE, repo_id=repo, revision=revision),
        name=what,
        hint=_hf_hint(repo),
        not_found=ModelNotFoundError,
    )


def _spec_from_entry(entry: ZooEntry) -> ModelSpec:
    if entry.kind != "deblur":
        raise ModelNotFoundError(f"{entry.name} is a feature encoder, not a deblurring model")
    return ModelSpec(
        entry.name,
        entry.architecture,
        dict(entry.config),
        None,
        entry,
        config_source=f"zoo card {entry.name}",
    )


def resolve_model(ref: str | Path) -> ModelSpec:
    """Resolve a model reference without building the network (weights of zoo entries not fetched)."""
    text = str(ref)
    if text.startswith("hf:"):
        return _spec_from_hub(text)
    path = Path(text).expanduser()
    if text in all_entries():
        return _spec_from_entry(get_entry(text))
    if path.is_dir():
        return _spec_from_folder(path)
    if path.is_file():
        return _spec_from_file(path)
    if _looks_like_a_path(text):
        raise ModelNotFoundError(
            f"{text} does not exist (a model reference that is a path must name a model folder or a "
            "deblurkit .safetensors file; `deblurkit zoo list` shows the zoo names)"
        )
    return _spec_from_entry(get_entry(text))


def _looks_like_a_path(text: str) -> bool:
    """A reference written as a path (a separator, ``~``, or a weights suffix), never a zoo name."""
    return "/" in text or "\\" in text or text.startswith(("~", ".")) or Path(text).suffix in _WEIGHT_SUFFIXES


def _zoo_weights(entry: ZooEntry) -> Path:
    if entry.weights is None:
        hint = entry.unpublished_hint or "fine-tune them with `deblurkit finetune`"
        raise WeightsError(f"{entry.name} has no published weights yet: {hint}; or pass --weights FILE")
    hint = (
        f"prefetch it with `deblurkit zoo download {entry.name}` where the Hub can be reached, or pass the "
        "file with --weights FILE"
    )
    return fetch_weights(entry.weights, name=entry.name, hint=hint)


def _load_weights(spec: ModelSpec, weights: str | Path | None) -> dict[str, torch.Tensor]:
    if weights is not None:
        source = spec.entry.weights if spec.entry else None
        if source is not None and source.format == "tfjs" and is_tfjs_weights(weights):
            return load_state_dict(convert_tfjs(Path(weights), source, spec.name))
        key = source.key if source and Path(weights).suffix != ".safetensors" else ""
        return load_state_dict(weights, key=key, strip_prefix=source.strip_prefix if source else "")
    if spec.weights_path is not None:
        return load_state_dict(spec.weights_path)
    assert spec.entry is not None
    return load_state_dict(_zoo_weights(spec.entry))


def _load_strict(network: torch.nn.Module, state: Mapping[str, torch.Tensor], spec: ModelSpec) -> None:
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise WeightsError(f"the weights do not fit {spec.name} ({spec.architecture}): {', '.join(parts)}")
    network.load_state_dict(state, strict=True)


def build_network(architecture: str, config: Mapping[str, Any], *, source: str = "config") -> torch.nn.Module:
    """Build a bare network of a registered architecture from its config, validated first.

    ``source`` names where the config came from in the one-line error of a bad config.
    """
    try:
        arch = get_architecture(architecture)
    except KeyError as err:
        raise DeblurkitError(str(err.args[0])) from None
    config = validate_config(architecture, config, source=source)
    try:
        return arch.build(**config)
    except (TypeError, ValueError, RuntimeError) as err:  # wrong names, types or values
        raise DeblurkitError(f"bad config for architecture {architecture!r}: {err}") from None


def load_model(
    ref: str | Path, *, weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> Restorer:
    """Load a deblurring model ready for inference (eval mode, on ``device``).

    ``ref`` is a zoo name, ``hf:org/name[@revision]``, or a local model folder or file. ``weights``
    overrides the weight file: a local ``.safetensors``, or an official ``.pth`` in its original
    wrapper (``params``, ``params_ema``, ``state_dict``, ``module.`` prefixes), read safely.
    The returned module's forward takes a B×3×H×W float tensor in [0, 1] of any size.
    """
    spec = resolve_model(ref)
    network = build_network(spec.architecture, spec.config, source=spec.config_source or spec.name)
    _load_strict(network, _load_weights(spec, weights), spec)
    arch = get_architecture(spec.architecture)
    restorer = Restorer(network, arch, spec.config, name=spec.name, **spec.working_resolution)
    return restorer.eval().requires_grad_(False).to(resolve_device(device))


def save_model(
    model: Restorer,
    folder: str | Path,
    *,
    card: str = "",
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a deblurkit model folder (``config.json``, ``model.safetensors``, ``README.md``)
    that :func:`load_model` and ``--model PATH`` accept, and that can be pushed to the Hub."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": model.name,
        "architecture": model.architecture.name,
        "config": dict(model.config),
        **(
            {"inference": {"work_pixels": model.work_pixels, "min_work_scale": model.min_work_scale}}
            if model.work_pixels
            else {}
        ),
        **dict(info or {}),
    }
    write_safetensors(
        model.network.state_dict(), folder / MODEL_WEIGHTS_FILE, {METADATA_KEY: json.dumps(payload)}
    )
    write_text_atomic(folder / MODEL_CONFIG_FILE, json.dumps(payload, indent=2) + "\n")
    if card:
        write_text_atomic(folder / "README.md", card)
    return folder


def convert_checkpoint(source: str | Path, target: str | Path, model: str) -> Path:
    """Convert an official ``.pth`` of zoo entry ``model`` into a self-describing safetensors file.

    The pickle is read with ``weights_only=True``, unwrapped as the card says, and checked to load
    strictly into the entry's network before anything is written.
    """
    entry = get_entry(model)
    spec = _spec_from_entry(entry)
    state = _load_weights(spec, source)
    _load_strict(
        build_network(spec.architecture, spec.config, source=spec.config_source or spec.name), state, spec
    )
    payload = {"name": entry.name, "architecture": entry.architecture, "config": dict(entry.config)}
    write_safetensors(state, Path(target), {METADATA_KEY: json.dumps(payload), "source": Path(source).name})
    return Path(target)
