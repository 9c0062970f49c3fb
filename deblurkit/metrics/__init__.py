"""Full-reference image metrics, each with one exactly stated convention.

A :class:`Metric` computes one number per image pair from batched B×C×H×W tensors holding the
file's own sample values (integers for 8/16-bit files, floats for float files) plus the data range
those values live in. The runner (:mod:`deblurkit.evaluation.score`) crops borders and converts to the Y
channel first, for the metrics whose ``options`` name those steps. New metrics (e.g. the MAE
feature distances) join with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from ..errors import DeblurkitError, UsageError

__all__ = [
    "Metric",
    "MetricUnavailableError",
    "UnknownMetricError",
    "crop_border",
    "get_metric",
    "metric_names",
    "register",
    "resolve_metrics",
    "rgb_to_y",
]

ComputeFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

OPTION_CROP_BORDER = "crop_border"
OPTION_Y_CHANNEL = "y_channel"


class UnknownMetricError(UsageError):
    """A metric name that is not registered (a usage error)."""


class MetricUnavailableError(DeblurkitError):
    """A metric whose optional backend or weights cannot be had; the message says how to enable it."""


@dataclass(frozen=True)
class Metric:
    """One named metric.

    ``compute(restored, reference, data_range)`` takes B×C×H×W tensors on the scoring device and
    returns B float64 values. ``options`` lists the preprocessing steps it honours
    (``"crop_border"``, ``"y_channel"``); ``check`` raises :class:`MetricUnavailableError` up front
    when a backend is missing; ``min_size`` is the smallest height/width it accepts.
    """

    name: str
    compute: ComputeFn
    convention: str
    higher_is_better: bool
    options: frozenset[str] = field(default=frozenset({OPTION_CROP_BORDER, OPTION_Y_CHANNEL}))
    decimals: int = 6
    min_size: int = 1
    check: Callable[[], None] | None = None


_REGISTRY: dict[str, Metric] = {}
_ALIASES: dict[str, str] = {}


def register(metric: Metric, *, aliases: Iterable[str] = (), replace: bool = False) -> Metric:
    """Add ``metric`` to the registry (``replace=True`` to override an existing entry)."""
    if not replace and metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} is already registered")
    _REGISTRY[metric.name] = metric
    for alias in aliases:
        _ALIASES[alias] = metric.name
    return metric


def metric_names() -> list[str]:
    """Registered metric names, in registration order."""
    _load_builtins()
    return list(_REGISTRY)


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (or an alias of it)."""
    _load_builtins()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownMetricError(f"unknown metric {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def resolve_metrics(names: str | Iterable[str]) -> list[Metric]:
    """Metrics from a comma list or an iterable of names, duplicates dropped, order kept."""
    if isinstance(names, str):
        names = names.split(",")
    metrics: list[Metric] = []
    for name in names:
        if not name.strip():
            continue
        metric = get_metric(name)
        if metric not in metrics:
            metrics.append(metric)
    if not metrics:
        raise UnknownMetricError("no metric given")
    return metrics


def crop_border(x: torch.Tensor, border: int) -> torch.Tensor:
    """Drop ``border`` pixels from each edge of a …×H×W tensor."""
    if border <= 0:
        return x
    return x[..., border:-border, border:-border]


# ITU-R BT.601 luma with studio swing, as MATLAB's rgb2ycbcr: Y = 16 + (65.481 R + 128.553 G + 24.966 B)
# for R, G, B in [0, 1], scaled to [0, 255] (here: to the data range).
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)


def rgb_to_y(x: torch.Tensor, data_range: float) -> torch.Tensor:
    """Y of BT.601 (MATLAB ``rgb2ycbcr``) in float64 on the same scale; grayscale passes through."""
    if x.shape[-3] == 1:
        return x
    xf = x.to(torch.float64)
    r, g, b = xf.unbind(-3)
    y = r * _Y_WEIGHTS[0] + g * _Y_WEIGHTS[1] + b * _Y_WEIGHTS[2] + 16.0 / 255.0 * data_range
    return y.unsqueeze(-3)


_LOADED = False


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import lpips, mae, psnr, ssim  # noqa: F401  (registering on import)
