"""LPIPS (Zhang et al. 2018) through the optional ``lpips`` package, one metric per backbone.

``lpips-alex``, ``lpips-vgg`` and ``lpips-squeeze`` (``lpips`` is short for ``lpips-squeeze``, the
backbone the deblurkit paper used). The package ships the linear heads; the backbone's ImageNet
weights come from torchvision's cache (downloaded once when online). When either is missing the
metric refuses with one line that says how to enable it: no number is ever made up.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from . import OPTION_CROP_BORDER, Metric, MetricUnavailableError, register

__all__ = ["BACKBONES", "lpips_distance"]

BACKBONES = ("alex", "vgg", "squeeze")
_ENABLE = "pip install lpips (it ships the LPIPS v0.1 heads; torchvision fetches the backbone once)"


@lru_cache(maxsize=6)
def _model(backbone: str, device: str) -> torch.nn.Module:
    try:
        import lpips
    except ImportError:
        raise MetricUnavailableError(
            f"lpips-{backbone} needs the optional 'lpips' package: {_ENABLE}"
        ) from None
    try:
        model = lpips.LPIPS(net=backbone, version="0.1", verbose=False)
    except Exception as err:  # download / file errors of torchvision or lpips
        reason = " ".join(str(err).split()) or type(err).__name__
        raise MetricUnavailableError(
            f"lpips-{backbone}: cannot load the {backbone} backbone weights (torchvision cache, "
            f"~/.cache/torch/hub/checkpoints; needs one online run): {reason}"
        ) from err
    return model.eval().requires_grad_(False).to(device)


def lpips_distance(x: torch.Tensor, y: torch.Tensor, data_range: float, backbone: str) -> torch.Tensor:
    """LPIPS v0.1 per image; inputs scaled to [-1, 1], grayscale repeated to three channels."""
    model = _model(backbone, str(x.device))
    a = x.to(torch.float32) * (2.0 / data_range) - 1.0
    b = y.to(torch.float32) * (2.0 / data_range) - 1.0
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    with torch.no_grad():
        return model(a, b).reshape(-1).to(torch.float64)


def _make(backbone: str) -> Metric:
    def compute(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
        return lpips_distance(x, y, data_range, backbone)

    def check() -> None:
        _model(backbone, "cpu")

    return Metric(
        name=f"lpips-{backbone}",
        compute=compute,
        convention=(
            f"LPIPS v0.1 with the {backbone} backbone (lpips package, linear heads, spatial mean), RGB "
            "in [-1, 1] in float32, grayscale repeated to RGB, never on the Y channel; lower is better"
        ),
        higher_is_better=False,
        options=frozenset({OPTION_CROP_BORDER}),
        check=check,
    )


for _backbone in BACKBONES:
    register(_make(_backbone), aliases=("lpips",) if _backbone == "squeeze" else ())
