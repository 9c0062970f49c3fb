"""The model card (``README.md``) written with every trained model: what it was trained on, how,
how well it does, what it started from, and the licences involved.

The card is a Hugging Face Hub card built with :class:`huggingface_hub.ModelCard`: its YAML front matter
(:func:`card_data`) carries ``library_name: deblurkit``, the tags, the licence fields, ``base_model``
with ``base_model_relation: finetune`` when the weights started from a Hub model, and a ``model-index``
with the PSNR/SSIM the run measured on its validation images. Every sentence comes from the run's facts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .._version import __version__
from .preparation import needs_encoder

__all__ = [
    "DEFAULT_LICENCE",
    "ENCODER_LICENCE",
    "HUB_LICENCES",
    "CardInfo",
    "Licence",
    "card_data",
    "card_licence",
    "effective_licence",
    "involved_licences",
    "model_card",
    "uses_mae",
]

ENCODER_LICENCE = "CC-BY-NC-4.0"
"""The licence of the MAE encoders' weights (facebookresearch/mae)."""
DEFAULT_LICENCE = "MIT"
"""deblurkit's own licence: the tag of a model that involves no upstream weights."""

HUB_LICENCES = frozenset(
    (
        "apache-2.0",
        "mit",
        "openrail",
        "bigscience-openrail-m",
        "creativeml-openrail-m",
        "bigscience-bloom-rail-1.0",
        "bigcode-openrail-m",
        "afl-3.0",
        "artistic-2.0",
        "bsl-1.0",
        "bsd",
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "c-uda",
        "cc",
        "cc0-1.0",
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "cc-by-sa-3.0",
        "cc-by-sa-4.0",
        "cc-by-nc-2.0",
        "cc-by-nc-3.0",
        "cc-by-nc-4.0",
        "cc-by-nd-4.0",
        "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0",
        "cc-by-nc-sa-2.0",
        "cc-by-nc-sa-3.0",
        "cc-by-nc-sa-4.0",
        "cdla-sharing-1.0",
        "cdla-permissive-1.0",
        "cdla-permissive-2.0",
        "wtfpl",
        "ecl-2.0",
        "epl-1.0",
        "epl-2.0",
        "etalab-2.0",
        "eupl-1.1",
        "eupl-1.2",
        "agpl-3.0",
        "gfdl",
        "gpl",
        "gpl-2.0",
        "gpl-3.0",
        "lgpl",
        "lgpl-2.1",
        "lgpl-3.0",
        "isc",
        "lppl-1.3c",
        "ms-pl",
        "mpl-2.0",
        "odc-by",
        "odbl",
        "openrail++",
        "osl-3.0",
        "postgresql",
        "ofl-1.1",
        "ncsa",
        "unlicense",
        "zlib",
        "pddl",
        "lgpl-lr",
        "unknown",
        "other",
    )
)
"""Licence identifiers the Hub's ``license`` field accepts (any other licence: ``other`` + name + link)."""

_PERMISSIVE = frozenset(
    (
        "mit",
        "bsd",
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "isc",
        "cc0-1.0",
        "unlicense",
        "zlib",
        "wtfpl",
        "bsl-1.0",
        "postgresql",
        "ncsa",
        "pddl",
    )
)
_NON_COMMERCIAL = re.compile(r"(?<![a-z])(nc|nd)(?![a-z])|non-?commercial|academic|research[- ]only")
_COPYLEFT = re.compile(
    r"(?<![a-z])(a|l)?gpl|(?<![a-z])(sa|mpl|epl|eupl|osl|odbl)(?![a-z])|share-?alike|openrail|rail-|cdla-sharing"
)
_RESTRICTIVENESS = (
    "permissive",
    "attribution",
    "copyleft or use restrictions",
    "unknown terms",
    "non-commercial",
)


@dataclass
class CardInfo:
    """What the card reports.

    ``base_model``: the reference the weights started from (empty when trained from scratch), with its
    Hub repository ``base_hub_id`` when it has one. ``encoder``: the perceptual-loss encoder, set only when
    the loss has MAE terms. ``repo``: the Hub repository the folder is published as, when known.
    ``validation``: the validation images in words; ``validation_source``: their folder's name (the
    ``model-index`` dataset). ``more_data``: further training sources in words, by kind (frames, stills).
    """

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
    repo: str = ""
    base_hub_id: str = ""
    base_licence_link: str = ""
    encoder_licence_link: str = ""
    validation: str = ""
    validation_source: str = ""
    more_data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Licence:
    """A licence as its upstream names it (``name``; empty: unknown), where it comes from, and a link."""

    name: str
    source: str
    link: str = ""

    @property
    def hub_id(self) -> str:
        """The Hub ``license`` value: its Hub identifier, ``unknown``, or ``other``."""
        lowered = self.name.strip().lower()
        if not lowered:
            return "unknown"
        return lowered if lowered in HUB_LICENCES else "other"

    @property
    def hub_name(self) -> str:
        """The Hub ``license_name`` of an ``other`` licence: a lowercase slug of its name."""
        return re.sub(r"[^a-z0-9.]+", "-", self.name.lower()).strip("-")

    @property
    def restrictiveness(self) -> int:
        """0 permissive, 1 attribution/notice (Apache, CC-BY), 2 copyleft or use restrictions, 3 unknown,
        4 non-commercial or no-derivatives (CC-BY-NC-*, academic licences)."""
        lowered = self.name.strip().lower()
        if not lowered or lowered in ("unknown", "other"):
            return 3
        if _NON_COMMERCIAL.search(lowered):
            return 4
        if _COPYLEFT.search(lowered):
            return 2
        if lowered in _PERMISSIVE:
            return 0
        if lowered == "apache-2.0" or lowered.startswith("cc-by-"):
            return 1
        return 3

    @property
    def kind(self) -> str:
        """The restrictiveness in words."""
        return _RESTRICTIVENESS[self.restrictiveness]


def uses_mae(loss: str) -> bool:
    """True when the loss spec has MAE terms (``mae``, ``mae_local``, ``mae_global*``)."""
    return bool(loss) and needs_encoder(loss)


def involved_licences(info: CardInfo) -> list[Licence]:
    """The licences the model is subject to: its base model's weights, and the encoder of its loss."""
    licences = []
    if info.base_model:
        licences.append(Licence(info.base_licence, f"base model `{info.base_model}`", info.base_licence_link))
    if info.encoder and uses_mae(info.loss):
        licences.append(
            Licence(
                info.encoder_licence, f"perceptual-loss encoder `{info.encoder}`", info.encoder_licence_link
            )
        )
    return licences


def effective_licence(info: CardInfo) -> Licence:
    """The most restrictive of :func:`involved_licences` (the first of equals), deblurkit's MIT when none."""
    licences = involved_licences(info)
    if not licences:
        return Licence(DEFAULT_LICENCE, "deblurkit")
    return max(licences, key=lambda licence: licence.restrictiveness)


def card_licence(info: CardInfo) -> str:
    """The Hub ``license`` tag: the most restrictive licence involved (``other`` when the Hub lacks it)."""
    return effective_licence(info).hub_id


def _tags(info: CardInfo) -> list[str]:
    tags = ["deblurring", "image-restoration", info.architecture]
    if uses_mae(info.loss):
        tags.append("perceptual-loss")
    return tags


def _eval_results(info: CardInfo) -> list[EvalResult] | None:
    """PSNR and SSIM of the run's last validation as Hub evaluation results (None when none was run)."""
    results = []
    for key, label in (("psnr", "PSNR"), ("ssim", "SSIM")):
        value = info.metrics.get(key)
        if value is None or not math.isfinite(value):
            continue
        results.append(
            EvalResult(
                task_type="image-to-image",
                task_name="Image deblurring",
                dataset_type=info.validation_source or "validation",
                dataset_name=f"{info.validation_source or info.name} (validation)",
                dataset_split="validation",
                metric_type=key,
                metric_name=label,
                metric_value=round(float(value), 4),
            )
        )
    return results or None


def card_data(info: CardInfo) -> ModelCardData:
    """The card's Hub metadata (its YAML front matter)."""
    licence = effective_licence(info)
    extra: dict[str, Any] = {}
    if licence.hub_id == "other":
        extra["license_name"] = licence.hub_name
        if licence.link:
            extra["license_link"] = licence.link
    if info.base_hub_id:
        extra["base_model"] = info.base_hub_id
        extra["base_model_relation"] = "finetune"
    return ModelCardData(
        license=licence.hub_id,
        library_name="deblurkit",
        pipeline_tag="image-to-image",
        tags=_tags(info),
        model_name=info.name,
        eval_results=_eval_results(info),
        **extra,
    )


def _table(rows: Mapping[str, Any]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return lines


def _metrics(info: CardInfo) -> list[str]:
    if not info.metrics:
        return ["No validation was run."]
    lines = [f"On {info.validation}:", ""] if info.validation else []
    lines += ["| metric | blurry input | this model |", "|---|---|---|"]
    for key, value in info.metrics.items():
        before = info.input_metrics.get(key)
        lines.append(f"| {key} | {'' if before is None else f'{before:.4f}'} | {value:.4f} |")
    if info.best:
        lines += [
            "",
            f"Best validation PSNR {info.best.get('psnr', float('nan')):.4f} dB at step "
            f"{int(info.best.get('step', 0))} (kept in the run's `train/best/`, which is not uploaded).",
        ]
    conventions = (
        "PSNR on RGB floats in [0, 1], clamped, no border crop; SSIM with an 11×11 Gaussian window "
        "(BasicSR / MATLAB convention)"
    )
    if "mae_distance" in info.metrics:
        conventions += "; MAE distance: the local MAE loss's feature distance, unweighted"
    return [*lines, "", conventions + "."]


def _usage(info: CardInfo) -> list[str]:
    hub = f"hf:{info.repo}" if info.repo else "hf:ORG/NAME"
    where = "" if info.repo else " (`ORG/NAME`: the Hub repository this folder is uploaded to)"
    return [
        "```",
        f"deblurkit deblur photos/ --model {hub}",
        "deblurkit deblur photos/ --model PATH",
        "```",
        "",
        f"The first line loads the model from the Hub{where}; in the second, `PATH` is a local copy of "
        "this folder. Results go to `photos-deblurred/`. In Python:",
        "",
        "```python",
        "import deblurkit",
        "",
        f'model = deblurkit.load_model("{hub}")  # or a local folder',
        "```",
    ]


def _licences(info: CardInfo) -> list[str]:
    licences, chosen = involved_licences(info), effective_licence(info)
    if not licences:
        return [
            "No upstream weights are involved (trained from scratch, without a perceptual-loss encoder), "
            f"so the `license` tag is deblurkit's own licence, {DEFAULT_LICENCE}. The terms of the training "
            "data are not tracked here: check them too."
        ]
    lines = []
    for licence in licences:
        link = f" ({licence.link})" if licence.link else ""
        note = (
            " (used only as a loss during training; its weights are not part of this model)"
            if licence.source.startswith("perceptual-loss encoder")
            else " (this model's weights started from it)"
        )
        lines.append(f"- The {licence.source}{note}: {licence.name or 'unknown licence'}{link}.")
    tag = f"`{chosen.hub_id}`"
    if chosen.hub_id == "other":
        tag += f" (`license_name: {chosen.hub_name}`)"
    name = chosen.name or "an unknown licence"
    which = (
        f"that licence, {name} ({chosen.kind})"
        if len(licences) == 1
        else f"the most restrictive of these: {name}, the licence of the {chosen.source} ({chosen.kind})"
    )
    return [
        *lines,
        "",
        f"The `license` tag, {tag}, is {which}. Check the upstream terms before any commercial use.",
    ]


def model_card(info: CardInfo) -> str:
    """The card's Markdown, with the Hub metadata of :func:`card_data` as YAML front matter."""
    mae = uses_mae(info.loss)
    started = f"fine-tuned from `{info.base_model}`" if info.base_model else "trained from scratch"
    data = f"`{info.data}`" + (
        " (blurry inputs synthesised on the fly from sharp images)" if info.synthesized else ""
    )
    rows: dict[str, Any] = {"data": data} if info.data else {}
    rows.update(info.more_data)
    rows["loss"] = f"`{info.loss}`"
    if mae and info.encoder:
        rows["encoder"] = f"`{info.encoder}` (frozen; feature extractor of the MAE loss terms)"
    rows["steps"] = info.steps
    rows.update({k: f"`{v}`" for k, v in info.recipe.items()})
    lines = [
        f"# {info.name}",
        "",
        f"A {info.architecture} deblurring model {started} with deblurkit {__version__} "
        f"(`deblurkit {info.command}`).",
        "",
        "## Usage",
        "",
        *_usage(info),
        "",
        "## Training",
        "",
        *_table(rows),
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
        *_licences(info),
    ]
    if mae:
        lines += [
            "",
            "## Method",
            "",
            "The loss's MAE terms are the MAE perceptual losses of Liang, Jiang, Liu, Ma, *Image Deblurring "
            "by Exploring In-depth Properties of Transformer*, IEEE TNNLS 2024 (arXiv 2303.15198).",
        ]
    body = "\n".join(lines) + "\n"
    return str(ModelCard(f"---\n{card_data(info).to_yaml()}\n---\n\n{body}"))
