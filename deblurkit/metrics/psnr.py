"""PSNR: 10·log10(R² / MSE) with the MSE over all pixels and channels."""

from __future__ import annotations

import torch

from . import Metric, register

__all__ = ["psnr"]


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """PSNR per image of B×C×H×W batches; ``inf`` for identical images.

    Integer samples give an exact integer sum of squared errors; floats are differenced in float64.
    """
    if not x.is_floating_point() and not y.is_floating_point():
        diff = x.to(torch.int64) - y.to(torch.int64)
        sse = (diff * diff).sum(dim=(1, 2, 3)).to(torch.float64)
    else:
        diff = x.to(torch.float64) - y.to(torch.float64)
        sse = (diff * diff).sum(dim=(1, 2, 3))
    mse = sse / float(x[0].numel())
    return 10.0 * torch.log10((data_range * data_range) / mse)


register(
    Metric(
        name="psnr",
        compute=psnr,
        convention=(
            "PSNR = 10·log10(R²/MSE), MSE in float64 (exact integer sums for 8/16-bit files) over all "
            "pixels and channels, R = data range of the sample type (255 for 8-bit, 65535 for 16-bit, "
            "1 for float); identical images give inf; equals skimage peak_signal_noise_ratio"
        ),
        higher_is_better=True,
        decimals=4,
    )
)
