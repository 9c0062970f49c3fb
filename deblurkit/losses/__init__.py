"""Training losses: pixel losses, the MAE perceptual losses, a VGG19 baseline, and the spec language.

:func:`build_loss` turns a spec such as ``"l1 + 0.1*mae_local"`` or
``"psnr + 1e-4*mae_global(blocks=1-6, ratio=0.5)"`` into one :class:`CompositeLoss` module:
``loss(restored, target)`` returns the total (a scalar tensor) and keeps each term's last weighted
value (detached) in ``loss.terms`` for logging. A term's factor is its weight; without one, the
term's default weight applies (0.1 for ``mae_local``, 1e-4 for the ``mae_global`` family, 1e-4 for
``vgg_pool5``, 1 otherwise). Options go in parentheses; :data:`LOSS_TERMS` lists every term and its
options (``deblurkit.losses.describe_terms()`` prints them).

MAE terms that use the same encoder and sampling ratio share one encoder pass per call: the same
kept tokens, the target's features computed once under ``torch.no_grad``, the restored branch with
its graph. Everything accumulates in fp32 under autocast.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import DeblurkitError, UsageError
from .encoders import DEFAULT_BLOCKS, DEFAULT_ENCODER, ViTEncoder, load_encoder
from .mae import (
    GLOBAL_VARIANTS,
    MAEGlobalLoss,
    MAELocalLoss,
    MAEPerceptualTerm,
    global_distance,
    local_distance,
)
from .pixel import CharbonnierLoss, L1Loss, MSELoss, PSNRLoss, at_least_fp32, check_pair
from .spec import Range, TermSpec, parse_spec, spec_error
from .vgg import CLASSIC_LAYERS, CLASSIC_WEIGHTS, VGGFeatures, VGGPerceptualLoss, load_vgg

__all__ = [
    "GLOBAL_VARIANTS",
    "LOSS_TERMS",
    "CharbonnierLoss",
    "CompositeLoss",
    "L1Loss",
    "MAEGlobalLoss",
    "MAELocalLoss",
    "MSELoss",
    "Option",
    "PSNRLoss",
    "TermInfo",
    "VGGFeatures",
    "VGGPerceptualLoss",
    "build_loss",
    "describe_terms",
    "global_distance",
    "load_vgg",
    "local_distance",
    "parse_spec",
]


# -- the term registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """A term option: ``kind`` is float, ratio, int, bool, str, blocks or choice (``choices`` lists
    them)."""

    kind: str
    default: Any
    help: str = ""
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TermInfo:
    """A loss term the spec language knows."""

    name: str
    default_weight: float
    summary: str
    build: Callable[[Mapping[str, Any], _Context], nn.Module]
    options: Mapping[str, Option] = field(default_factory=dict)


class _Context:
    """What term builders share: the given encoder/VGG and the encoders loaded so far."""

    def __init__(self, encoder: ViTEncoder | None, vgg: VGGFeatures | None) -> None:
        self.encoder = encoder
        self.vgg = vgg
        self.encoders: dict[str, ViTEncoder] = {}

    def get_encoder(self, ref: str | None) -> ViTEncoder:
        if ref is None and self.encoder is not None:
            return self.encoder
        ref = ref or DEFAULT_ENCODER
        if ref not in self.encoders:
            self.encoders[ref] = load_encoder(ref)
        return self.encoders[ref]

    def get_vgg(self) -> VGGFeatures:
        if self.vgg is None:
            self.vgg = load_vgg()
        return self.vgg


_BLOCKS = Option("blocks", DEFAULT_BLOCKS, "encoder blocks, 1-based: 1-6, 3 or [1,3,5]")
_RATIO = Option("ratio", 0.5, "share r of patch tokens dropped before the blocks (keeps int(N·(1−r)))")
_ENCODER = Option(
    "str", None, "encoder zoo name (default: the encoder given to build_loss, else mae-vit-base)"
)


class _OptionError(UsageError):
    """A bad option value found while building a term (``option`` names it, for the error position)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def _encoder_for(opts: Mapping[str, Any], ctx: _Context) -> ViTEncoder:
    encoder = ctx.get_encoder(opts["encoder"])
    bad = [b for b in opts["blocks"] if not 1 <= b <= encoder.depth]
    if bad:
        raise _OptionError(
            "blocks", f"block {bad[0]} does not exist; the encoder has blocks 1-{encoder.depth}"
        )
    return encoder


def _mae_local(opts: Mapping[str, Any], ctx: _Context) -> nn.Module:
    return MAELocalLoss(_encoder_for(opts, ctx), opts["blocks"], opts["ratio"], opts["p"])


def _mae_global(variant: str) -> Callable[[Mapping[str, Any], _Context], nn.Module]:
    def build(opts: Mapping[str, Any], ctx: _Context) -> nn.Module:
        return MAEGlobalLoss(
            _encoder_for(opts, ctx),
            opts["blocks"],
            opts["ratio"],
            opts["p"],
            variant=variant,
            projections=opts.get("projections", 256),
        )

    return build


def _global_options(p_default: int = 2, sliced: bool = False) -> dict[str, Option]:
    opts = {
        "blocks": _BLOCKS,
        "ratio": _RATIO,
        "p": Option("choice", p_default, "Wasserstein order", (1, 2)),
        "encoder": _ENCODER,
    }
    if sliced:
        opts["projections"] = Option("int", 256, "number of random projection directions (fresh each call)")
    return opts


def _vgg(opts: Mapping[str, Any], ctx: _Context) -> nn.Module:
    return VGGPerceptualLoss(ctx.get_vgg(), CLASSIC_LAYERS, CLASSIC_WEIGHTS, opts["criterion"])


def _vgg_pool5(opts: Mapping[str, Any], ctx: _Context) -> nn.Module:
    return VGGPerceptualLoss(ctx.get_vgg(), ("pool5",), (1.0,), opts["criterion"])


LOSS_TERMS: dict[str, TermInfo] = {
    info.name: info
    for info in (
        TermInfo("l1", 1.0, "mean absolute error", lambda o, c: L1Loss()),
        TermInfo("mse", 1.0, "mean squared error", lambda o, c: MSELoss()),
        TermInfo(
            "charbonnier",
            1.0,
            "Charbonnier loss mean(sqrt(d² + eps²)) (Uformer)",
            lambda o, c: CharbonnierLoss(o["eps"]),
            {"eps": Option("float", 1e-3, "smoothing constant")},
        ),
        TermInfo(
            "psnr",
            1.0,
            "NAFNet's PSNR loss 10/ln10 · mean log(mse + 1e-8)",
            lambda o, c: PSNRLoss(o["to_y"]),
            {"to_y": Option("bool", False, "on BT.601 luma, as NAFNet's toY")},
        ),
        TermInfo(
            "mae_local",
            0.1,
            "local MAE perceptual loss Σ_blocks mean|φ(Î) − φ(I)|^p (official: p=1, λ=0.1)",
            _mae_local,
            {
                "blocks": _BLOCKS,
                "ratio": _RATIO,
                "p": Option("choice", 1, "1: L1 (official), 2: squared error", (1, 2)),
                "encoder": _ENCODER,
            },
        ),
        TermInfo(
            "mae_global",
            1e-4,
            "global MAE distribution loss, official: per token, sorted channels, batch-pooled W_p, "
            "summed over tokens and blocks",
            _mae_global("tokens"),
            _global_options(),
        ),
        TermInfo(
            "mae_global_per_image",
            1e-4,
            "global MAE loss with the root per image, then the batch mean",
            _mae_global("per_image"),
            _global_options(),
        ),
        TermInfo(
            "mae_global_channels",
            1e-4,
            "global MAE loss per channel over the tokens (batch-pooled W_p summed over channels)",
            _mae_global("channels"),
            _global_options(),
        ),
        TermInfo(
            "mae_global_sliced",
            1e-4,
            "sliced global MAE loss: tokens projected on random directions, W_p over tokens, summed",
            _mae_global("sliced"),
            _global_options(sliced=True),
        ),
        TermInfo(
            "vgg",
            1.0,
            "VGG19 perceptual loss on relu1_2..relu5_4, layer weights 1/32..1",
            _vgg,
            {"criterion": Option("choice", "l1", "distance between features", ("l1", "mse"))},
        ),
        TermInfo(
            "vgg_pool5",
            1e-4,
            "VGG19 pool5 MSE (the official repository's VGG variant)",
            _vgg_pool5,
            {"criterion": Option("choice", "mse", "distance between features", ("l1", "mse"))},
        ),
    )
}
_ALIASES = {"l2": "mse", "charb": "charbonnier", "mae": "mae_local", "perceptual": "vgg"}


def describe_terms() -> str:
    """A human-readable list of the terms, their default weights and options."""
    lines = []
    for info in LOSS_TERMS.values():
        opts = ", ".join(f"{k}={_format_value(o.default)}" for k, o in info.options.items())
        lines.append(f"{info.name}({opts})  [weight {info.default_weight:g}]  {info.summary}")
    return "\n".join(lines)


# -- option checking --------------------------------------------------------------------------------
def _coerce(spec: str, term: TermSpec, key: str, option: Option, value: Any) -> Any:
    pos = term.option_pos.get(key, term.pos)

    def fail(expected: str) -> UsageError:
        return spec_error(
            spec, pos, f"{term.name}: option {key} must be {expected}, got {_format_value(value)}"
        )

    kind = option.kind
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if kind == "ratio":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise fail("a number in [0, 1)")
        return float(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("a whole number")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise fail("a name or a quoted string")
        return value
    if kind == "choice":
        if value not in option.choices or isinstance(value, bool):
            raise fail("one of " + ", ".join(map(str, option.choices)))
        return value
    if kind == "blocks":
        if isinstance(value, Range):
            return value.as_tuple()
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        if (
            isinstance(value, tuple)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return value
        raise fail("block numbers like 1-6, 3 or [1,3,5]")
    raise AssertionError(f"unknown option kind {kind}")


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        if len(value) > 1 and value == tuple(range(value[0], value[-1] + 1)):
            return f"{value[0]}-{value[-1]}"
        return "[" + ",".join(map(str, value)) + "]"
    if isinstance(value, Range):
        return f"{value.start}-{value.stop}"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _lookup(spec: str, term: TermSpec) -> TermInfo:
    name = _ALIASES.get(term.name, term.name)
    if name in LOSS_TERMS:
        return LOSS_TERMS[name]
    close = difflib.get_close_matches(term.name, [*LOSS_TERMS, *_ALIASES], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if "-" in term.name and not close:
        hint = " (join terms with '+'; subtraction is not supported)"
    raise spec_error(spec, term.pos, f"unknown loss term {term.name!r}{hint}; known: {', '.join(LOSS_TERMS)}")


# -- the combined loss ------------------------------------------------------------------------------
class CompositeLoss(nn.Module):
    """A weighted sum of loss terms; ``terms`` keeps the last weighted value of each (detached).

    ``forward(restored, target, *, ids=None)``: ``ids`` (B × K patch indices) fixes the kept tokens of
    every MAE term (tests, reproducibility); by default each call draws fresh ones.
    """

    def __init__(self, terms: list[tuple[str, float, nn.Module]], spec: str = "") -> None:
        super().__init__()
        if not terms:
            raise UsageError("a loss needs at least one term")
        self.spec = spec
        self.losses = nn.ModuleDict({name: module for name, _, module in terms})
        self.weights: dict[str, float] = {name: float(weight) for name, weight, _ in terms}
        self.terms: dict[str, torch.Tensor] = {}

    def _feature_groups(self) -> dict[tuple[int, float], tuple[ViTEncoder, tuple[int, ...]]]:
        groups: dict[tuple[int, float], tuple[ViTEncoder, tuple[int, ...]]] = {}
        for module in self.losses.values():
            if isinstance(module, MAEPerceptualTerm):
                key = (id(module.encoder), module.ratio)
                blocks = groups.get(key, (module.encoder, ()))[1]
                groups[key] = (module.encoder, tuple(sorted(set(blocks) | set(module.blocks))))
        return groups

    def forward(
        self, restored: torch.Tensor, target: torch.Tensor, *, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair(restored, target)
        groups = self._feature_groups()
        shared: dict[tuple[int, float], tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]] = {}
        total: torch.Tensor | None = None
        values: dict[str, torch.Tensor] = {}
        for name, module in self.losses.items():
            if isinstance(module, MAEPerceptualTerm):
                key = (id(module.encoder), module.ratio)
                if key not in shared:
                    encoder, blocks = groups[key]
                    feats_r, feats_t, _ = encoder.features_pair(
                        restored, target, blocks=blocks, ratio=module.ratio, ids=ids
                    )
                    shared[key] = (
                        dict(zip(blocks, feats_r, strict=True)),
                        dict(zip(blocks, feats_t, strict=True)),
                    )
                by_block_r, by_block_t = shared[key]
                value = module.from_features(
                    [by_block_r[b] for b in module.blocks], [by_block_t[b] for b in module.blocks]
                )
            else:
                value = module(restored, target)
            contribution = self.weights[name] * at_least_fp32(value)
            values[name] = contribution.detach()
            total = contribution if total is None else total + contribution
        self.terms = values
        assert total is not None
        return total

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


def build_loss(
    spec: str,
    *,
    encoder: ViTEncoder | None = None,
    vgg: VGGFeatures | None = None,
    device: str | torch.device | None = None,
) -> CompositeLoss:
    """Parse a loss spec and build the module that computes it.

    ``encoder``: the frozen encoder for MAE terms that name none (default: ``load_encoder()``, i.e.
    ``mae-vit-base`` from the Hub); ``vgg``: the VGG19 features for ``vgg``/``vgg_pool5`` (default:
    the zoo's ``vgg19``). ``device``: move the built module there. Bad specs raise a one-line
    :class:`~deblurkit.errors.DeblurkitError` pointing at the problem.
    """
    parsed = parse_spec(spec)
    # check everything before loading any encoder
    checked: list[tuple[TermSpec, TermInfo, dict[str, Any]]] = []
    for term in parsed:
        info = _lookup(spec, term)
        for key in term.options:
            if key not in info.options:
                known = ", ".join(info.options) or "none"
                close = difflib.get_close_matches(key, list(info.options), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise spec_error(
                    spec,
                    term.option_pos[key],
                    f"{info.name} has no option {key!r}{hint}; its options: {known}",
                )
        opts = {key: option.default for key, option in info.options.items()}
        for key, value in term.options.items():
            opts[key] = _coerce(spec, term, key, info.options[key], value)
        if term.weight is not None and term.weight <= 0:
            raise spec_error(spec, term.pos, f"the weight of {info.name} must be positive")
        checked.append((term, info, opts))

    context = _Context(encoder, vgg)
    built: list[tuple[str, float, nn.Module]] = []
    counts: dict[str, int] = {}
    for term, info, opts in checked:
        try:
            module = info.build(opts, context)
        except _OptionError as err:
            raise spec_error(spec, term.option_pos.get(err.option, term.pos), f"{info.name}: {err}") from None
        except DeblurkitError as err:
            located = spec_error(spec, term.pos, f"{info.name}: {err}")
            raise type(err)(str(located)) from None
        counts[info.name] = counts.get(info.name, 0) + 1
        name = info.name if counts[info.name] == 1 else f"{info.name}_{counts[info.name]}"
        weight = info.default_weight if term.weight is None else term.weight
        built.append((name, weight, module))
    loss = CompositeLoss(built, spec)
    return loss if device is None else loss.to(device)
