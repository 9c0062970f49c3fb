"""A no-reference sharpness measure: the normalised Laplacian energy of the luma.

For photos without a sharp reference, reported beside PSNR/SSIM. With samples scaled to [0, 1]
(uint8 / 255, uint16 / 65535, floats as they are):

    Y = 0.299 R + 0.587 G + 0.114 B                      (BT.601 luma; a grayscale image is Y)
    L[i, j] = (Y[i-1, j] + Y[i+1, j]) + (Y[i, j-1] + Y[i, j+1]) - 4 Y[i, j]
              for every interior pixel (1 <= i <= H-2, 1 <= j <= W-2; no padding)
    sharpness = Var(L) / Var(Y_interior)                 (population variances over those pixels)

i.e. the variance of the 4-neighbour Laplacian (Pech-Pacheco et al. 2000) divided by the variance
of the luma it was taken from; a flat image scores 0. Dividing by Var(Y) makes it invariant to any
global affine change of brightness, Y → a·Y + b (a ≠ 0), up to clipping and quantisation, so an
exposure difference between two restorations does not change it. In frequency terms it is the mean
of the Laplacian's squared response, weighted by the image's power spectrum, which Gaussian blur
tilts towards low frequencies: the value drops as blur grows. It is only comparable between images
of the same scene and size (it is not an absolute quality score), and noise raises it.

Computed in float32 row strips with float64 reductions (strip moments merged with Chan et al.'s
pairwise formula), so it is deterministic and stays within a few strips of memory on a 12 MP image.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import DeblurkitError

__all__ = ["LUMA_WEIGHTS", "sharpness"]

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_STRIP_ROWS = 256


def _unit_scale(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise TypeError(f"unsupported sample type {dtype} (uint8, uint16 or float)")


def _luma(rows: np.ndarray, scale: float) -> np.ndarray:
    """float32 luma in [0, 1] of an R×W×C block (C = 1 or 3)."""
    block = rows.astype(np.float32)
    if block.shape[2] == 1:
        y = block[:, :, 0]
    else:
        r, g, b = (np.float32(w) for w in LUMA_WEIGHTS)
        y = block[:, :, 0] * r + block[:, :, 1] * g + block[:, :, 2] * b
    if scale != 1.0:
        y *= np.float32(1.0 / scale)
    return y


def _moments(values: np.ndarray) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations (float64) of a float32 block."""
    n = values.size
    mean = float(np.sum(values, dtype=np.float64)) / n
    centred = values.astype(np.float64) - mean
    return n, mean, float(np.dot(centred.ravel(), centred.ravel()))


def _merge(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    """Chan et al.'s combination of two (count, mean, M2) summaries."""
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * nb / n, sa + sb + delta * delta * na * nb / n


def sharpness(image: np.ndarray) -> float:
    """Normalised Laplacian energy Var(∇²Y) / Var(Y) of an H×W, H×W×1 or H×W×3 image (module doc)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    scale = _unit_scale(image.dtype)
    array = image[:, :, None] if image.ndim == 2 else image
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"expected an H×W, H×W×1 or H×W×3 image, got shape {image.shape}")
    height, width = array.shape[:2]
    if height < 3 or width < 3:
        raise DeblurkitError(f"sharpness needs an image of at least 3×3 px, got {width}×{height}")
    lap_parts, luma_parts = [], []
    for top in range(1, height - 1, _STRIP_ROWS):
        bottom = min(top + _STRIP_ROWS, height - 1)  # interior rows top..bottom-1
        y = _luma(array[top - 1 : bottom + 1], scale)
        centre = y[1:-1, 1:-1]
        lap = (y[:-2, 1:-1] + y[2:, 1:-1]) + (y[1:-1, :-2] + y[1:-1, 2:]) - np.float32(4.0) * centre
        lap_parts.append(_moments(lap))
        luma_parts.append(_moments(centre))
    lap_stats, luma_stats = functools.reduce(_merge, lap_parts), functools.reduce(_merge, luma_parts)
    var_luma = luma_stats[2] / luma_stats[0]
    var_lap = lap_stats[2] / lap_stats[0]
    if not var_luma > 0.0:
        return 0.0
    return float(var_lap / var_luma)
