"""Registry of deblurring architectures.

Each network family registers an :class:`Architecture`: how to build it from a config dict, the
settings that config may hold (:class:`ConfigField`), the input sizes it accepts (:class:`SizeRule`),
the precisions it is safe in, and the smallest tile that keeps its official inference procedure
meaningful. Networks use the official state-dict names so
official checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ConfigField",
    "SizeRule",
    "get_architecture",
    "register",
]


@dataclass(frozen=True)
class SizeRule:
    """Input sizes a network accepts and how its official test code pads to them.

    ``multiple``: height and width must be multiples of it. ``square``: height must equal width.
    ``pad_mode``: ``"constant"`` (zeros) or ``"reflect"``. ``centred``: pad evenly on both sides
    (top/left get the floor half) instead of only bottom/right. ``even_first``: an odd side first gets
    one reflected row/column at the bottom/right, then the centred padding applies to the even image
    (MAXIM's official test code).
    """

    multiple: int = 1
    square: bool = False
    pad_mode: str = "constant"
    centred: bool = False
    even_first: bool = False

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The smallest accepted (height, width) that contains an image of the given size."""

        def up(n: int) -> int:
            return -(-n // self.multiple) * self.multiple

        if self.square:
            side = up(max(height, width))
            return side, side
        return up(height), up(width)

    def pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pad a B×C×H×W tensor to an accepted size; returns it and the (top, left) offset."""
        height, width = x.shape[-2:]
        target_h, target_w = self.padded_size(height, width)
        if self.even_first and (height % 2 or width % 2):
            x = self.pad_by(x, (0, width % 2, 0, height % 2))
            height, width = x.shape[-2:]
        extra_h, extra_w = target_h - height, target_w - width
        top, left = (extra_h // 2, extra_w // 2) if self.centred else (0, 0)
        pads = (left, extra_w - left, top, extra_h - top)
        if not any(pads):
            return x, (0, 0)
        return self.pad_by(x, pads), (top, left)

    def pad_by(self, x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
        """Pad by (left, right, top, bottom) in this rule's mode."""
        if self.pad_mode == "reflect":
            return _reflect_pad(x, pads)
        return F.pad(x, pads, mode=self.pad_mode)


def _reflect_pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect padding that also works when a pad exceeds the image side.

    ``F.pad(mode="reflect")`` needs each pad smaller than the side it mirrors; larger pads are applied
    as repeated reflections (what the official code would do had the image been big enough). A side of
    one pixel has nothing to mirror and is replicated.
    """
    left, right, top, bottom = pads
    while left or right or top or bottom:
        height, width = x.shape[-2:]
        if height == 1 or width == 1:
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        step = (min(left, width - 1), min(right, width - 1), min(top, height - 1), min(bottom, height - 1))
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (p - s for p, s in zip((left, right, top, bottom), step, strict=True))
    return x


@dataclass(frozen=True)
class ConfigField:
    """One setting of an architecture's config, as :func:`deblurkit.zoo.validation.validate_config` checks it.

    ``kind``: ``"int"``, ``"float"`` (an integer is accepted too), ``"bool"``, ``"str"`` (one of
    ``choices``), ``"ints"`` (a list of integers) or ``"int|ints"`` (either). ``low``/``high`` bound a
    number, or every entry of a list (inclusive); ``length`` is the (fewest, most) entries of a list;
    ``nullable`` also accepts ``null``. ``default`` is the constructor's default, used when the config
    omits the setting.
    """

    kind: str
    default: Any = None
    low: float = -math.inf
    high: float = math.inf
    length: tuple[int, int] = (0, 64)
    choices: tuple[str, ...] = ()
    nullable: bool = False


@dataclass(frozen=True)
class Architecture:
    """A registered network family.

    ``build(**config)`` returns the bare network (official state-dict names); its forward accepts
    inputs whose size obeys ``size_rule`` (a :class:`SizeRule`, or a function of the config) and
    returns the restored image. ``precisions`` lists the autocast dtypes the network is verified safe
    in (``"fp32"`` always). ``min_tile`` is the smallest tile side for which tiled inference still
    reproduces the official procedure sensibly.
    ``default_config`` documents the official configuration used when a card gives none.
    ``pixel_loss`` is the pixel loss of the official training recipe (the default of ``train``);
    ``channels_last``: a convolutional network that runs faster in that memory format on GPUs.
    ``config_schema`` lists every setting ``build`` accepts (a config naming another is refused; an
    empty schema checks none); ``check_config`` takes the config merged with the schema's defaults and
    returns what is wrong across settings (one line naming the setting in double quotes) or ``None``.
    """

    name: str
    build: Callable[..., nn.Module]
    size_rule: SizeRule | Callable[[Mapping[str, Any]], SizeRule]
    precisions: tuple[str, ...] = ("fp32",)
    min_tile: int = 64
    default_config: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    pixel_loss: str = "l1"
    channels_last: bool = False
    config_schema: Mapping[str, ConfigField] = field(default_factory=dict)
    check_config: Callable[[Mapping[str, Any]], str | None] | None = None

    def size_rule_for(self, config: Mapping[str, Any]) -> SizeRule:
        """The size rule of a particular configuration (some depend on the network's depth)."""
        if isinstance(self.size_rule, SizeRule):
            return self.size_rule
        return self.size_rule(config)


ARCHITECTURES: dict[str, Architecture] = {}

# The module that registers each architecture; imported on first lookup of one of its names, so
# loading a model imports only its own family (uformer pulls in timm, slow to import).
_ARCH_MODULES = {
    "nafnet": "nafnet",
    "nafnet-local": "nafnet",
    "restormer": "restormer",
    "uformer": "uformer",
    "maxim": "maxim",
}


def register(arch: Architecture) -> Architecture:
    """Add an architecture to the registry (names are unique)."""
    if arch.name in ARCHITECTURES:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    ARCHITECTURES[arch.name] = arch
    return arch


def _import_all() -> None:
    for module in sorted(set(_ARCH_MODULES.values())):
        importlib.import_module(f"{__name__}.{module}")


def get_architecture(name: str) -> Architecture:
    """Look up a registered architecture by name (e.g. ``"nafnet"``, ``"restormer"``)."""
    if name not in ARCHITECTURES:
        if name in _ARCH_MODULES:
            importlib.import_module(f"{__name__}.{_ARCH_MODULES[name]}")
        else:
            _import_all()
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise KeyError(f"unknown architecture {name!r}; known: {known}") from None


def all_architectures() -> dict[str, Architecture]:
    """Every registered architecture, by name."""
    _import_all()
    return dict(ARCHITECTURES)
