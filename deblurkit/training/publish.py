"""The trained model folder: ``config.json``, ``model.safetensors`` and the ``README.md`` card that
:func:`deblurkit.zoo.models.load_model` reads, and its publication on the Hugging Face Hub (without
the run's own ``train/`` files); and :func:`export_for_spandrel`, a plain NAFNet weights file for
spandrel/chaiNNer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..archs import get_architecture
from ..archs.nafnet import NAFNet
from ..errors import DeblurkitError, UsageError, one_line
from ..imaging.discovery import has_pairs
from ..zoo.models import save_model
from ..zoo.restorer import Restorer
from ..zoo.weights import write_safetensors
from .card import ENCODER_LICENCE, CardInfo, effective_licence, model_card, uses_mae
from .config import TrainConfig
from .preparation import Source

__all__ = [
    "RUN_FOLDER",
    "SPANDREL_ARCHITECTURES",
    "card_info",
    "encoder_licence",
    "export_for_spandrel",
    "hub_model_id",
    "licence_link",
    "push_to_hub",
    "write_model_folder",
]

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


def _zoo_entry(ref: str) -> Any:
    """The zoo entry named ``ref`` (None for Hub references, paths and unknown names)."""
    from ..zoo.cards import all_entries, get_entry

    return get_entry(ref) if ref in all_entries() else None


def hub_model_id(ref: str) -> str:
    """The Hub repository of a model reference: ``org/name`` of ``hf:org/name[@revision]``, the Hub repository
    of a zoo entry's weights; empty for local folders and files, and for weights not on the Hub."""
    if ref.startswith("hf:"):
        return ref.removeprefix("hf:").partition("@")[0]
    entry = _zoo_entry(ref)
    return entry.weights.repo_id if entry is not None and entry.weights is not None else ""


def licence_link(ref: str) -> str:
    """Where the licence of a zoo entry or Hub model can be read: its code repository or Hub page."""
    entry = _zoo_entry(ref)
    if entry is not None and entry.code_url:
        return entry.code_url
    repo = hub_model_id(ref)
    return f"https://huggingface.co/{repo}" if repo else ""


def _validation(config: TrainConfig) -> tuple[str, str]:
    """(the validation images in words, the name of their folder or list); empty when none."""
    if config.val_data:
        source, words = config.val_data, f"`{config.val_data}`"
        synthesized = config.synthesize and not has_pairs(config.val_data)
    elif config.data and config.val_split > 0:
        count = int(config.val_split)
        held = f"{count} image{'s' * (count != 1)}" if config.val_split >= 1 else f"{config.val_split:.0%}"
        source, words = config.data, f"{held} held out of `{config.data}` (seeded split)"
        synthesized = config.synthesize
    else:
        return "", ""
    if config.val_max and not (config.val_data == "" and 1 <= config.val_split <= config.val_max):
        words += f", at most {config.val_max} images"
    if synthesized:
        words += ", blurry inputs synthesised from the sharp images with the run's seed"
    return words, Path(source).name or source


def _more_data(config: TrainConfig) -> dict[str, str]:
    more = {}
    if config.frames:
        more["frames"] = (
            f"`{config.frames}` (consecutive sharp frames averaged into blurry ones, "
            f"{config.frames_share:.0%} of the samples)"
        )
    if config.stills:
        more["stills"] = (
            f"`{config.stills}` (sharp photos blurred on the fly, {config.stills_share:.0%} of the samples)"
        )
    return more


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
    """What the card of a run's model reports (the encoder only when the loss has MAE terms)."""
    recipe = {k: getattr(config, k) for k in _RECIPE}
    recipe["precision"] = precision
    base = source.base if config.pretrained else ""
    with_encoder = with_encoder and uses_mae(loss)
    validation, validation_source = _validation(config) if metrics else ("", "")
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
        base_model=base,
        base_licence=source.base_licence if base else "",
        encoder=config.encoder if with_encoder else "",
        encoder_licence=encoder_licence(config.encoder) if with_encoder else "",
        metrics=metrics,
        input_metrics=input_metrics,
        best=best,
        repo=config.push_to_hub,
        base_hub_id=hub_model_id(base) if base else "",
        base_licence_link=licence_link(base) if base else "",
        encoder_licence_link=licence_link(config.encoder) if with_encoder else "",
        validation=validation,
        validation_source=validation_source,
        more_data=_more_data(config),
    )


def write_model_folder(folder: Path, network: nn.Module, info: CardInfo) -> Path:
    """Write ``network`` as a deblurkit model folder with its card; returns the folder.

    ``config.json`` records the base model and the model's effective licence (the card's, as its
    upstream names it), so that a model fine-tuned from this one inherits it.
    """
    restorer = Restorer(network, get_architecture(info.architecture), info.arch_config, name=info.name)
    training: dict[str, Any] = {
        "command": info.command,
        "steps": info.steps,
        "loss": info.loss,
        "data": info.data,
        "metrics": info.metrics,
    }
    if info.encoder:
        training["encoder"] = info.encoder
    extra = {"base_model": info.base_model, "license": effective_licence(info).name, "training": training}
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


SPANDREL_ARCHITECTURES = ("nafnet", "nafnet-local")
"""deblurkit architectures whose weights spandrel recognises (as its plain NAFNet, without TLC)."""
# The keys spandrel 0.4 detects a NAFNet state dict by.
_SPANDREL_NAFNET_KEYS = (
    "intro.weight",
    "ending.weight",
    "ups.0.0.weight",
    "downs.0.weight",
    "middle_blks.0.beta",
    "middle_blks.0.gamma",
    "middle_blks.0.conv1.weight",
    "middle_blks.0.sca.1.weight",
    "middle_blks.0.norm1.weight",
    "encoders.0.0.beta",
    "decoders.0.0.beta",
)


def export_for_spandrel(model: nn.Module, path: str | Path) -> Path:
    """Write a NAFNet's weights as a plain official-layout state dict for spandrel/chaiNNer (no
    deblurkit metadata); returns the path.

    ``model``: a :class:`Restorer` (what :func:`deblurkit.load_model` returns) or a bare NAFNet.
    ``path``: a ``.safetensors`` or ``.pth`` file. spandrel builds its plain NAFNet from these weights:
    **without TLC** (the test-time local converter of ``nafnet-local`` models, an inference procedure
    spandrel does not implement), so its outputs differ from deblurkit's for ``nafnet-local`` models.
    """
    path = Path(path)
    if isinstance(model, Restorer):
        if model.architecture.name not in SPANDREL_ARCHITECTURES:
            raise UsageError(
                f"{model.name} is a {model.architecture.name} model; spandrel export is for NAFNet "
                f"({', '.join(SPANDREL_ARCHITECTURES)}) only"
            )
        model = model.network
    if not isinstance(model, NAFNet):
        raise UsageError(f"spandrel export is for NAFNet networks only, not {type(model).__name__}")
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    missing = [key for key in _SPANDREL_NAFNET_KEYS if key not in state]
    if missing:
        raise UsageError(
            f"spandrel would not recognise this NAFNet (it has no {missing[0]}): spandrel needs at least one "
            "level and one block in the first encoder, the first decoder and the middle"
        )
    if path.suffix == ".safetensors":
        write_safetensors(state, path)
    elif path.suffix in (".pth", ".pt"):
        import torch

        from ..imaging.atomic import write_atomic

        write_atomic(path, lambda handle: torch.save({k: v.clone() for k, v in state.items()}, handle))
    else:
        raise UsageError(f"write the spandrel export as .safetensors or .pth, not {path.name}")
    return path
