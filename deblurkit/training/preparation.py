"""What a run checks and resolves before its first step: the options, the network to train and its
starting weights, the crop size, the precision and the encoder of the MAE loss terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..archs import Architecture, get_architecture
from ..errors import WeightsError
from ..zoo.models import load_model, resolve_model
from .config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from ..losses.encoders import ViTEncoder

__all__ = [
    "Source",
    "check_crop",
    "check_options",
    "get_architecture_checked",
    "loss_encoder",
    "needs_encoder",
    "resolve_precision",
    "resolve_source",
]


@dataclass
class Source:
    """The network to train: architecture, config, where it came from, starting weights."""

    architecture: str
    config: dict[str, Any]
    base: str = ""
    base_licence: str = ""
    weights: dict[str, torch.Tensor] | None = None


def check_options(config: TrainConfig, command: str) -> None:
    """Refuse a config that cannot run (``command`` names the command in the messages)."""
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


def get_architecture_checked(name: str) -> Architecture:
    """The registered architecture ``name``; a one-line error listing the known ones otherwise."""
    try:
        return get_architecture(name)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None


def resolve_source(config: TrainConfig) -> Source:
    """The network ``--model``/``--architecture`` name, with its pretrained weights when asked for."""
    if not config.model:
        arch = get_architecture_checked(config.architecture)
        return Source(arch.name, {**arch.default_config, **config.arch_config})
    spec = resolve_model(config.model)
    if config.architecture and config.architecture != spec.architecture:
        raise ConfigError(f"{config.model} is a {spec.architecture} model, not {config.architecture}")
    licence = spec.entry.license if spec.entry else str(spec.info.get("license", ""))
    source = Source(spec.architecture, {**spec.config, **config.arch_config}, config.model, licence)
    if config.pretrained:
        source.weights = load_model(config.model, weights=config.weights or None).network.state_dict()
    return source


def check_crop(config: TrainConfig, source: Source) -> None:
    """Refuse a crop the architecture's size rule does not allow."""
    rule = get_architecture_checked(source.architecture).size_rule_for(source.config)
    if config.crop % rule.multiple:
        raise ConfigError(
            f"--crop {config.crop} does not suit {source.architecture}: "
            f"it must be a multiple of {rule.multiple}"
        )


def resolve_precision(requested: str, device: torch.device, architecture: str) -> str:
    """The autocast precision to train in (``auto``: bf16 on CUDA where verified, fp32 elsewhere)."""
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


def needs_encoder(spec: str) -> bool:
    """True when the loss spec has an MAE term (which needs the frozen encoder)."""
    from ..losses import parse_spec

    return any(
        term.name in ("mae", "mae_local") or term.name.startswith("mae_global") for term in parse_spec(spec)
    )


def loss_encoder(config: TrainConfig, device: torch.device) -> ViTEncoder:
    """The frozen encoder of the MAE loss terms, with a one-line way out when it cannot be had."""
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
