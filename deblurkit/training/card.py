"""The model card (``README.md``) written with every trained model: what it was trained on, how,
how well it does, what it started from, and the licences involved."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._version import __version__

__all__ = ["CardInfo", "card_licence", "model_card"]

ENCODER_LICENCE = "CC-BY-NC-4.0"


@dataclass
class CardInfo:
    """What the card reports."""

    name: str
    command: str
    architecture: str
    arch_config: Mapping[str, Any]
    data: str
    synthesized: bool
    loss: str
    steps: int
    recipe: Mapping[str, Any]
    base_model: str = ""
    base_licence: str = ""
    encoder: str = ""
    encoder_licence: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    input_metrics: Mapping[str, float] = field(default_factory=dict)
    best: Mapping[str, Any] = field(default_factory=dict)


def card_licence(info: CardInfo) -> str:
    """The Hub ``license`` tag: the most restrictive licence involved, ``other`` when not an SPDX id."""
    for licence in (info.encoder_licence, info.base_licence):
        if licence and "nc" in licence.lower():
            return licence.lower() if re.fullmatch(r"[A-Za-z0-9.\-]+", licence) else "other"
    if info.base_licence:
        return info.base_licence.lower() if re.fullmatch(r"[A-Za-z0-9.\-]+", info.base_licence) else "other"
    return "mit"


def _table(rows: Mapping[str, Any]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return lines


def _metrics(info: CardInfo) -> list[str]:
    if not info.metrics:
        return ["No validation was run."]
    lines = ["| metric | blurry input | this model |", "|---|---|---|"]
    for key, value in info.metrics.items():
        before = info.input_metrics.get(key)
        lines.append(f"| {key} | {'' if before is None else f'{before:.4f}'} | {value:.4f} |")
    if info.best:
        lines += [
            "",
            f"Best validation PSNR {info.best.get('psnr', float('nan')):.4f} dB at step "
            f"{int(info.best.get('step', 0))} (kept in `train/best/`).",
        ]
    lines += [
        "",
        "PSNR on RGB floats in [0, 1], clamped, no border crop; SSIM with an 11×11 Gaussian window "
        "(BasicSR / MATLAB convention); MAE distance: the local MAE loss's feature distance, unweighted.",
    ]
    return lines


def model_card(info: CardInfo) -> str:
    """The card's Markdown, with Hub metadata in YAML front matter."""
    licence = card_licence(info)
    front = [
        "---",
        f"license: {licence}",
        "library_name: deblurkit",
        "pipeline_tag: image-to-image",
        "tags:",
        "- deblurring",
        "- image-restoration",
        f"- {info.architecture}",
    ]
    if info.base_model.startswith("hf:"):
        front.append(f"base_model: {info.base_model.removeprefix('hf:').partition('@')[0]}")
    front.append("---")
    started = f"fine-tuned from `{info.base_model}`" if info.command == "finetune" else "trained from scratch"
    data = f"`{info.data}`" + (
        " (blurry inputs synthesised on the fly from sharp images)" if info.synthesized else ""
    )
    lines = [
        *front,
        "",
        f"# {info.name}",
        "",
        f"A {info.architecture} deblurring model {started} with deblurkit {__version__} "
        f"(`deblurkit {info.command}`).",
        "",
        "```",
        f"deblurkit deblur photos/ --model {info.name}/",
        "```",
        "",
        "## Training",
        "",
        *_table(
            {
                "data": data,
                "loss": f"`{info.loss}`",
                "steps": info.steps,
                **{k: f"`{v}`" for k, v in info.recipe.items()},
            }
        ),
        "",
        "## Architecture",
        "",
        f"`{info.architecture}` with config `{dict(info.arch_config)}`.",
        "",
        "## Validation",
        "",
        *_metrics(info),
        "",
        "## Licences",
        "",
    ]
    if info.base_model:
        lines.append(f"- Base model `{info.base_model}`: {info.base_licence or 'unknown'}.")
    if info.encoder:
        lines.append(
            f"- Perceptual-loss encoder `{info.encoder}`: {info.encoder_licence or 'unknown'} "
            "(used only as a loss during training; its weights are not part of this model)."
        )
    lines.append(
        f"- The `license` tag above is the most restrictive of these: `{licence}`. Check the "
        "upstream terms before any commercial use."
    )
    lines += [
        "",
        "## Method",
        "",
        "MAE perceptual losses: Liang, Jiang, Liu, Ma, *Image Deblurring by "
        "Exploring In-depth Properties of Transformer*, IEEE TNNLS 2024 (arXiv 2303.15198).",
    ]
    return "\n".join(lines) + "\n"
