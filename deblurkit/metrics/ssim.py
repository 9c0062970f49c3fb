"""SSIM in its published variants, computed in float64 and matched to each reference implementation.

* ``ssim``: 11×11 Gaussian (σ = 1.5) per channel, valid filtering (the 5-pixel border of the map
  dropped), channels averaged: BasicSR's ``calculate_ssim`` and Wang et al.'s MATLAB ``ssim_index``;
  equal to ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``.
* ``ssim-skimage``: scikit-image's default, a 7×7 uniform window with sample covariance (N/(N-1)),
  3-pixel border of the map dropped, channels averaged.
* ``ssim-matlab``: MATLAB's ``ssim(A, ref)`` on the whole H×W×3 array, i.e. one 3-D volume
  (Restormer's ``evaluate_gopro_hide.m``, NAFNet's ``ssim3d``): an 11×11×11 Gaussian (σ = 1.5) over
  rows, columns and channels, replicate padding, the full map averaged.
* ``ms-ssim``: Wang et al. 2003 as in ``pytorch_msssim``: five scales, 2×2 average pooling.

The local moments come from separable filtering done as small banded matrix products on row
strips, so the work stays in cache; all arithmetic is float64.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from . import Metric, register

__all__ = ["gaussian_taps", "ms_ssim", "ssim_gaussian", "ssim_matlab", "ssim_skimage"]

K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_BLOCK = 16  # columns per block of the horizontal pass
_STRIP_ELEMENTS = 40_000  # input samples per map and channel in one strip (keeps a strip in cache)


def gaussian_taps(size: int = 11, sigma: float = 1.5) -> tuple[float, ...]:
    """A normalised 1-D Gaussian of ``size`` taps (``cv2.getGaussianKernel``, ``fspecial``)."""
    half = size // 2
    weights = [math.exp(-((i - half) ** 2) / (2.0 * sigma * sigma)) for i in range(size)]
    total = sum(weights)
    return tuple(w / total for w in weights)


GAUSS_11 = gaussian_taps(11, 1.5)
UNIFORM_7 = tuple([1.0 / 7.0] * 7)


@lru_cache(maxsize=64)
def _horizontal_bands(taps: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices so that, for a signal cut into rows of ``_BLOCK``, ``row @ A + next_row[:k-1] @ B``
    is the valid correlation with ``taps`` at those positions."""
    k = len(taps)
    t = torch.tensor(taps, dtype=torch.float64)
    i = torch.arange(_BLOCK).view(-1, 1)
    j = torch.arange(_BLOCK).view(1, -1)
    d = i - j
    a = torch.where((d >= 0) & (d < k), t[d.clamp(0, k - 1)], torch.zeros((), dtype=torch.float64))
    i2 = torch.arange(k - 1).view(-1, 1) + _BLOCK
    d2 = i2 - j
    b = torch.where((d2 >= 0) & (d2 < k), t[d2.clamp(0, k - 1)], torch.zeros((), dtype=torch.float64))
    return a.to(device), b.to(device)


@lru_cache(maxsize=64)
def _vertical_band(taps: tuple[float, ...], rows_out: int, device: torch.device) -> torch.Tensor:
    """The rows_out × (rows_out + k - 1) matrix of valid correlation along rows."""
    k = len(taps)
    t = torch.tensor(taps, dtype=torch.float64)
    d = torch.arange(rows_out + k - 1).view(1, -1) - torch.arange(rows_out).view(-1, 1)
    band = torch.where((d >= 0) & (d < k), t[d.clamp(0, k - 1)], torch.zeros((), dtype=torch.float64))
    return band.to(device)


@lru_cache(maxsize=16)
def _channel_mix(taps: tuple[float, ...], channels: int, device: torch.device) -> torch.Tensor:
    """C×C matrix of the Gaussian along the channel axis with replicate padding (MATLAB's 3-D SSIM)."""
    half = len(taps) // 2
    mix = torch.zeros(channels, channels, dtype=torch.float64)
    for c in range(channels):
        for t, w in enumerate(taps):
            mix[c, min(max(c + t - half, 0), channels - 1)] += w
    return mix.to(device)


def _ssim_means(
    x: torch.Tensor,
    y: torch.Tensor,
    taps: tuple[float, ...],
    data_range: float,
    *,
    cov_norm: float = 1.0,
    channel_taps: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel means of the SSIM map and of its contrast-structure map for one C×H×W pair.

    The maps are the valid part of the filtering (border of k//2 dropped); ``cov_norm`` scales the
    (co)variances (N/(N-1) for sample covariance); ``channel_taps`` also filters along channels.
    """
    channels, height, width = x.shape
    k = len(taps)
    h_out, w_out = height - k + 1, width - k + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"image of {width}×{height} is smaller than the {k}×{k} SSIM window")
    device = x.device
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    strip = max(1, min(h_out, _STRIP_ELEMENTS // width - (k - 1)))
    rows_in = strip + k - 1
    maps_in = torch.empty(4, channels, rows_in, width, dtype=torch.float64, device=device)
    size = 4 * channels * strip * width
    padded = -(-size // _BLOCK) * _BLOCK
    vert = torch.zeros(padded, dtype=torch.float64, device=device)
    horiz = torch.empty(padded, dtype=torch.float64, device=device)
    band_a, band_b = _horizontal_bands(taps, device)
    mix = _channel_mix(taps, channels, device) if channel_taps else None
    ssim_sum = torch.zeros(channels, dtype=torch.float64, device=device)
    cs_sum = torch.zeros(channels, dtype=torch.float64, device=device)
    for top in range(0, h_out, strip):
        rows = min(strip, h_out - top)
        n_in = rows + k - 1
        m = maps_in[:, :, :n_in]
        m[0].copy_(x[:, top : top + n_in])
        m[1].copy_(y[:, top : top + n_in])
        torch.mul(m[0], m[0], out=m[2])
        m[2].addcmul_(m[1], m[1])
        torch.mul(m[0], m[1], out=m[3])
        if mix is not None:
            m = torch.matmul(mix, m.reshape(4, channels, -1)).view(4, channels, n_in, width)
        used = 4 * channels * rows * width
        flat_len = -(-used // _BLOCK) * _BLOCK
        vert[used:flat_len] = 0.0
        torch.matmul(
            _vertical_band(taps, rows, device),
            m.reshape(4 * channels, n_in, width),
            out=vert[:used].view(4 * channels, rows, width),
        )
        blocks = vert[:flat_len].view(-1, _BLOCK)
        out = horiz[:flat_len].view(-1, _BLOCK)
        torch.mm(blocks, band_a, out=out)
        out[:-1].addmm_(blocks[1:, : k - 1], band_b)
        f = horiz[:used].view(4, channels, rows, width)[..., :w_out]
        mu_x, mu_y, sq_sum, xy = f.unbind(0)
        p = mu_x * mu_y
        q = mu_x * mu_x
        q.addcmul_(mu_y, mu_y)
        # cs = (2 n (xy - p) + C2) / (n (sq - q) + C2) = 2 (xy - p + C2/2n) / (sq - q + C2/n)
        xy.sub_(p).add_(c2 / (2.0 * cov_norm))
        sq_sum.sub_(q).add_(c2 / cov_norm)
        xy.div_(sq_sum)
        cs_sum += xy.sum(dim=(-1, -2))
        # l = (2 p + C1) / (q + C1) = 2 (p + C1/2) / (q + C1)
        p.add_(c1 / 2.0).div_(q.add_(c1)).mul_(xy)
        ssim_sum += p.sum(dim=(-1, -2))
    count = float(h_out * w_out)
    return ssim_sum * (4.0 / count), cs_sum * (2.0 / count)


def _per_image(x: torch.Tensor, y: torch.Tensor, fn) -> torch.Tensor:
    return torch.stack([fn(a, b) for a, b in zip(x, y, strict=True)]).to(torch.float64)


def ssim_gaussian(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """BasicSR / Wang et al.: 11×11 Gaussian σ=1.5, valid map, channel mean."""
    return _per_image(x, y, lambda a, b: _ssim_means(a, b, GAUSS_11, data_range)[0].mean())


def ssim_skimage(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """scikit-image's default: 7×7 uniform window, sample covariance, 3-pixel map border dropped."""
    n = 49.0
    return _per_image(
        x, y, lambda a, b: _ssim_means(a, b, UNIFORM_7, data_range, cov_norm=n / (n - 1.0))[0].mean()
    )


def ssim_matlab(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """MATLAB ``ssim`` on the H×W×C array: 3-D Gaussian σ=1.5, replicate padding, full map."""
    half = len(GAUSS_11) // 2

    def one(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pad = (half, half, half, half)
        a = F.pad(a.to(torch.float64).unsqueeze(0), pad, mode="replicate")[0]
        b = F.pad(b.to(torch.float64).unsqueeze(0), pad, mode="replicate")[0]
        return _ssim_means(a, b, GAUSS_11, data_range, channel_taps=True)[0].mean()

    return _per_image(x, y, one)


MS_SSIM_MIN_SIZE = (len(GAUSS_11) - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """MS-SSIM (``pytorch_msssim.ms_ssim``): per channel, negative values clamped to 0, channel mean."""
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64, device=x.device)

    def one(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = a.to(torch.float64)
        b = b.to(torch.float64)
        factors = []
        for level in range(len(MS_SSIM_WEIGHTS)):
            ssim_c, cs_c = _ssim_means(a, b, GAUSS_11, data_range)
            if level < len(MS_SSIM_WEIGHTS) - 1:
                factors.append(cs_c.clamp_min(0.0))
                pad = (a.shape[-2] % 2, a.shape[-1] % 2)
                a = F.avg_pool2d(a, kernel_size=2, padding=pad)
                b = F.avg_pool2d(b, kernel_size=2, padding=pad)
        factors.append(ssim_c.clamp_min(0.0))
        stacked = torch.stack(factors)  # levels × C
        return torch.prod(stacked ** weights.view(-1, 1), dim=0).mean()

    return _per_image(x, y, one)


register(
    Metric(
        name="ssim",
        compute=ssim_gaussian,
        convention=(
            "SSIM of BasicSR calculate_ssim / Wang et al.'s MATLAB ssim_index: 11×11 Gaussian window "
            "σ=1.5, K1=0.01, K2=0.03, C=(K·data range)², population (co)variances, valid filtering "
            "(5-px border of the SSIM map dropped), mean per channel then over channels, float64; equals "
            "skimage structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)"
        ),
        higher_is_better=True,
        min_size=len(GAUSS_11),
    )
)
register(
    Metric(
        name="ssim-skimage",
        compute=ssim_skimage,
        convention=(
            "SSIM of scikit-image structural_similarity defaults (as Uformer reports): 7×7 uniform "
            "window, sample covariance N/(N-1), K1=0.01, K2=0.03, 3-px border of the SSIM map dropped, "
            "mean per channel then over channels, float64"
        ),
        higher_is_better=True,
        min_size=len(UNIFORM_7),
    )
)
register(
    Metric(
        name="ssim-matlab",
        compute=ssim_matlab,
        convention=(
            "MATLAB ssim(A, ref) on the H×W×C array as one volume (Restormer's evaluate_gopro_hide.m, "
            "NAFNet's ssim3d): 11×11×11 Gaussian σ=1.5 over rows, columns and channels, replicate "
            "padding, K1=0.01, K2=0.03, mean of the full map, float64 (NAFNet ran it in float32 on "
            "CUDA); on grayscale or --y-channel input it is MATLAB's 2-D ssim"
        ),
        higher_is_better=True,
    )
)
register(
    Metric(
        name="ms-ssim",
        compute=ms_ssim,
        convention=(
            "MS-SSIM (Wang et al. 2003) as pytorch_msssim.ms_ssim: 5 scales with weights "
            "0.0448/0.2856/0.3001/0.2363/0.1333, 11×11 Gaussian σ=1.5 valid filtering, 2×2 average "
            "pooling (odd sides zero-padded), contrast-structure at scales 1-4 and SSIM at scale 5 "
            "clamped at 0, per channel then channel mean, float64; needs sides of at least "
            f"{MS_SSIM_MIN_SIZE} px"
        ),
        higher_is_better=True,
        min_size=MS_SSIM_MIN_SIZE,
    )
)
