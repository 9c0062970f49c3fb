"""The trained model folder: ``config.json``, ``model.safetensors`` and the ``README.md`` card that
:func:`deblurkit.zoo.models.load_model` reads, and its publication on the Hugging Face Hub (without
the run's own ``train/`` files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..archs import get_architecture
from ..errors import DeblurkitError, one_line
from ..zoo.models import save_model
from ..zoo.restorer import Restorer
from .card import ENCODER_LICENCE, CardInfo, model_card
from .config import TrainConfig
from .preparation import Source

__all__ = ["RUN_FOLDER", "card_info", "encoder_licence", "push_to_hub", "write_model_folder"]

RUN_FOLDER = "train"
"""Subfolder of the output holding the run's own files (config, log, curves, checkpoints, best)."""
_RECIPE = (
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


def encoder_licence(name: str) -> str:
    """The licence of a zoo encoder (the MAE weights' CC-BY-NC-4.0 when the zoo has no card for it)."""
    from ..zoo.cards import get_entry

    try:
        return get_entry(name).license
    except DeblurkitError:
        return ENCODER_LICENCE if "mae" in name else ""


def card_info(
    config: TrainConfig,
    source: Source,
    *,
    command: str,
    precision: str,
    loss: str,
    steps: int,
    with_encoder: bool,
    metrics: dict[str, float],
    input_metrics: dict[str, float],
    best: dict[str, Any],
) -> CardInfo:
    """What the card of a run's model reports."""
    recipe = {k: getattr(config, k) for k in _RECIPE}
    recipe["precision"] = precision
    return CardInfo(
        name=config.name or Path(config.output).resolve().name,
        command=command,
        architecture=source.architecture,
        arch_config=source.config,
        data=config.data,
        synthesized=config.synthesize,
        loss=loss,
        steps=steps,
        recipe=recipe,
        base_model=source.base if config.pretrained else "",
        base_licence=source.base_licence if config.pretrained else "",
        encoder=config.encoder if with_encoder else "",
        encoder_licence=encoder_licence(config.encoder) if with_encoder else "",
        metrics=metrics,
        input_metrics=input_metrics,
        best=best,
    )


def write_model_folder(folder: Path, network: nn.Module, info: CardInfo) -> Path:
    """Write ``network`` as a deblurkit model folder with its card; returns the folder."""
    restorer = Restorer(network, get_architecture(info.architecture), info.arch_config, name=info.name)
    extra = {
        "base_model": info.base_model,
        "license": info.base_licence,
        "training": {
            "command": info.command,
            "steps": info.steps,
            "loss": info.loss,
            "data": info.data,
            "metrics": info.metrics,
        },
    }
    return save_model(restorer, folder, card=model_card(info), info=extra)


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
