"""Benchmark protocols: one (restored, reference) pair scored the way a benchmark's published tables are.

A :class:`Protocol` names the official evaluation script it follows (``source``) and scores one pair
of numpy arrays as read from files (uint8, uint16 or float; H×W×3, grayscale where the protocol
allows it) into a dict of floats. Every protocol takes the pair as it comes off disk: any rounding,
scaling or alignment the official script does happens inside ``score``.

* ``gopro``, ``hide``: MATLAB's ``psnr(A, ref)`` and ``ssim(A, ref)`` on the two 8-bit RGB images, as
  Restormer's ``Motion_Deblurring/evaluate_gopro_hide.m`` (and MPRNet's ``evaluate_GOPRO_HIDE.m``)
  call them. PSNR: data range 255, MSE over every pixel and channel, no crop. SSIM: MATLAB treats an
  H×W×3 array as a 3-D volume (its default ``DataFormat`` "SSS"), so the SSIM is one 3-D SSIM: an
  11×11×11 Gaussian (σ = 1.5) over rows, columns and channels, replicate padding, K1 = 0.01,
  K2 = 0.03, L = 255, the mean of the full map (:func:`deblurkit.metrics.ssim.ssim_matlab`). It is
  not the per-channel SSIM and reads higher than it.
* ``dpdd``: Restormer's ``Defocus_Deblurring/test_dual_pixel_defocus_deblur.py`` (the
  single-image script scores the same way) with the metrics of its ``utils.py``, which follow
  DPDD's own ``DPDNet/metrics.py``: both images as float32 in [0, 1] (16-bit / 65535); PSNR = 10·log10(1/MSE)
  with MSE the float32 mean over all samples (100 when the images are identical); SSIM =
  scikit-image ``structural_similarity(data_range=1, multichannel=True)`` with its defaults (7×7
  uniform window, sample covariance, per channel, channels averaged, float64 inside as in
  scikit-image ≤ 0.18); MAE = scikit-learn ``mean_absolute_error`` per channel, channels averaged.
* ``realblur``: rimchang/RealBlur ``evaluation_RealBlur_ecc.py`` (MPRNet's
  ``Deblurring/evaluate_RealBlur.py`` copies its metrics): both images float32 / 255, the restored
  one aligned to the reference (:mod:`deblurkit.evaluation.alignment`: intensity matching, ECC
  homography, masked), then PSNR = 10·log10(1/MSE) with MSE = Σ(x_r − z_r)² / Σ mask over all
  channels, and SSIM =
  scikit-image's Gaussian SSIM (11 taps, σ = 1.5, population covariance, L = 1, float64) whose map
  is multiplied by the mask, its 5-pixel border dropped, summed per channel and divided by the
  mask's sum over the same region, channels averaged (float64 as in the pinned scikit-image 0.17.2;
  scikit-image ≥ 0.19 would compute it in float32). Needs OpenCV.
* ``plain``: what ``deblurkit score`` reports by default (``psnr`` and ``ssim`` of
  :mod:`deblurkit.metrics`, no crop, all channels, in the file's own sample range).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DeblurkitError, UsageError
from ..imaging.reading import data_range, to_float
from ..metrics.psnr import psnr as _psnr
from ..metrics.ssim import GAUSS_11, K1, K2, ssim_matlab, ssim_skimage
from .alignment import OpenCVUnavailableError, align_realblur, require_cv2

__all__ = [
    "PROTOCOLS",
    "OpenCVUnavailableError",
    "Protocol",
    "ProtocolInputError",
    "UnknownProtocolError",
    "get_protocol",
    "protocol_names",
    "score_dpdd",
    "score_matlab_8bit",
    "score_plain",
    "score_realblur",
    "to_uint8",
]

ScoreFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]


class UnknownProtocolError(UsageError):
    """A protocol name that is not registered (a usage error)."""


class ProtocolInputError(DeblurkitError):
    """A pair a protocol cannot score: sizes or channels differ, an unsupported sample type."""


@dataclass(frozen=True)
class Protocol:
    """One benchmark's scoring.

    ``score(restored, reference)`` takes the two arrays as read from files and returns the
    benchmark's numbers, keyed as in ``metrics``; ``source`` is the official script it follows;
    ``reference_bit_depth`` is the bit depth of the benchmark's reference files (``None``: any);
    ``check`` raises up front when an optional dependency is missing.
    """

    name: str
    description: str
    source: str
    score: ScoreFn
    reference_bit_depth: int | None
    metrics: tuple[str, ...] = ("psnr", "ssim")
    check: Callable[[], None] | None = None


def _as_hwc(array: np.ndarray, role: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ProtocolInputError(f"{role}: expected a numpy array, got {type(array).__name__}")
    if not (array.dtype in (np.uint8, np.uint16) or np.issubdtype(array.dtype, np.floating)):
        raise ProtocolInputError(f"{role}: unsupported sample type {array.dtype} (uint8, uint16 or float)")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ProtocolInputError(f"{role}: expected H×W×3 or H×W samples, got shape {array.shape}")
    return array


def _pair(restored: np.ndarray, reference: np.ndarray, *, rgb: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_hwc(restored, "restored"), _as_hwc(reference, "reference")
    if a.shape[:2] != b.shape[:2]:
        raise ProtocolInputError(
            f"sizes differ: restored {a.shape[1]}×{a.shape[0]}, reference {b.shape[1]}×{b.shape[0]} "
            "(no resizing is done)"
        )
    if a.shape[2] != b.shape[2]:
        raise ProtocolInputError("channels differ: one image is grayscale, the other RGB")
    if rgb and a.shape[2] != 3:
        raise ProtocolInputError("this protocol scores RGB images; got grayscale")
    return a, b


def _batch(array: np.ndarray) -> torch.Tensor:
    """H×W×C numpy → 1×C×H×W tensor (uint16 widened to int32, which torch computes with)."""
    if array.dtype == np.uint16:
        array = array.astype(np.int32)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """8-bit samples as the benchmark files hold them: uint8 unchanged; uint16 and float in [0, 1]
    scaled to 0..255 and rounded half to even (floats clipped to [0, 1] first), as
    ``skimage.img_as_ubyte`` does when Restormer/MPRNet save their results."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.rint(array.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    return np.rint(np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def score_matlab_8bit(restored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """MATLAB ``psnr(A, ref)`` and ``ssim(A, ref)`` on the 8-bit images (see the module docstring)."""
    a, b = _pair(restored, reference, rgb=False)
    x, y = _batch(to_uint8(a)), _batch(to_uint8(b))
    return {
        "psnr": float(_psnr(x, y, 255.0)[0]),
        "ssim": float(ssim_matlab(x, y, 255.0)[0]),
    }


def _min_side(a: np.ndarray, side: int, what: str) -> None:
    if min(a.shape[:2]) < side:
        raise ProtocolInputError(
            f"{what} needs images of at least {side}×{side} px, got {a.shape[1]}×{a.shape[0]}"
        )


def score_dpdd(restored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Restormer's / DPDD's defocus-deblurring PSNR, SSIM and MAE (see the module docstring)."""
    a, b = _pair(restored, reference, rgb=True)
    _min_side(a, 7, "dpdd's SSIM")
    # float32 in [0, 1] exactly as np.float32(cv2.imread(path, -1)) / 65535. (or / 255. for 8-bit)
    img_c, img_r = to_float(b), to_float(a)
    diff = img_c - img_r  # float32, as in the script
    mse = float(np.mean(diff * diff))  # numpy's float32 mean
    psnr = 100.0 if mse == 0 else 10.0 * math.log10(1.0 / mse)
    # sklearn mean_absolute_error on an H×W channel: the mean of each column, then of the columns
    absolute = np.abs(diff)
    mae = float(np.mean([np.mean(np.mean(absolute[:, :, c], axis=0)) for c in range(3)]))
    # scikit-image ≤ 0.18 (the scripts' era) converts the float32 images to float64 inside
    x = _batch(img_r.astype(np.float64))
    y = _batch(img_c.astype(np.float64))
    ssim = float(ssim_skimage(x, y, 1.0)[0])
    return {"psnr": psnr, "ssim": ssim, "mae": mae}


_STRIP_SAMPLES = 1 << 19  # SSIM-map samples per channel in one strip of the masked SSIM


def _valid_correlate(values: torch.Tensor, taps: tuple[float, ...], dim: int) -> torch.Tensor:
    """The valid part of correlating ``values`` with ``taps`` along ``dim`` (shifted multiply-adds)."""
    count = values.shape[dim] - len(taps) + 1
    out = values.narrow(dim, 0, count) * taps[0]
    for shift in range(1, len(taps)):
        out.add_(values.narrow(dim, shift, count), alpha=taps[shift])
    return out


def _masked_ssim(reference: np.ndarray, restored: np.ndarray, mask: np.ndarray) -> float:
    """RealBlur's masked SSIM of H×W×3 float32 arrays (data range 1), computed in float64 row strips.

    The scikit-image map at a pixel 5 or more pixels from the border only sees samples inside the
    image, so the script's reflect padding never matters once it drops that border; here the map is
    the valid part of the filtering directly.
    """
    k = len(GAUSS_11)
    half = k // 2
    height, width, channels = reference.shape
    _min_side(reference, k, "realblur's SSIM")
    c1, c2 = K1**2, K2**2
    xs = torch.from_numpy(np.ascontiguousarray(reference)).permute(2, 0, 1)
    zs = torch.from_numpy(np.ascontiguousarray(restored)).permute(2, 0, 1)
    ms = torch.from_numpy(np.ascontiguousarray(mask)).permute(2, 0, 1)
    rows_out = height - k + 1
    strip = max(1, _STRIP_SAMPLES // width)
    weighted = torch.zeros(channels, dtype=torch.float64)
    area = torch.zeros(channels, dtype=torch.float64)
    for top in range(0, rows_out, strip):
        rows = min(strip, rows_out - top)
        a = xs[:, top : top + rows + k - 1].to(torch.float64)
        b = zs[:, top : top + rows + k - 1].to(torch.float64)
        maps = torch.stack([a, b, a * a, b * b, a * b])  # 5 × C × (rows + k - 1) × W
        f = _valid_correlate(_valid_correlate(maps, GAUSS_11, -2), GAUSS_11, -1)
        mu_a, mu_b, aa, bb, ab = f.unbind(0)
        var_a = aa - mu_a * mu_a
        var_b = bb - mu_b * mu_b
        cov = ab - mu_a * mu_b
        s = (
            (2.0 * mu_a * mu_b + c1)
            * (2.0 * cov + c2)
            / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
        )
        m = ms[:, top + half : top + half + rows, half : width - half].to(torch.float64)
        weighted += (s * m).sum(dim=(1, 2))
        area += m.sum(dim=(1, 2))
    if bool((area == 0).any()):
        raise DeblurkitError("realblur: the alignment left no valid pixels to score")
    return float((weighted / area).mean())


def score_realblur(restored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RealBlur's aligned, masked PSNR and SSIM (see the module docstring); needs OpenCV."""
    a, b = _pair(restored, reference, rgb=True)
    aligned = align_realblur(to_float(a), to_float(b))
    xr, zr, cr = aligned.reference, aligned.restored, aligned.mask
    err = np.sum((xr - zr) ** 2, dtype=np.float64) / np.sum(cr)
    psnr = math.inf if err == 0 else float(10.0 * np.log10(1.0 / err))
    return {"psnr": psnr, "ssim": _masked_ssim(xr, zr, cr)}


def score_plain(restored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """``deblurkit score``'s default metrics and sample convention (:mod:`deblurkit.evaluation.score`)."""
    from ..metrics import get_metric
    from .score import DEFAULT_METRICS

    a, b = _pair(restored, reference, rgb=False)
    if a.dtype == b.dtype:
        x, y, peak = _batch(a), _batch(b), data_range(b.dtype)
    else:  # different sample types: both in [0, 1] float64
        x = _batch(a.astype(np.float64) / data_range(a.dtype))
        y = _batch(b.astype(np.float64) / data_range(b.dtype))
        peak = 1.0
    values = {}
    for name in DEFAULT_METRICS:
        metric = get_metric(name)
        _min_side(a, metric.min_size, name)
        values[name] = float(metric.compute(x, y, peak)[0])
    return values


def _check_realblur() -> None:
    require_cv2()


_RESTORMER = "https://github.com/swz30/Restormer/blob/main"
_MATLAB_DESCRIPTION = (
    "MATLAB psnr/ssim on the 8-bit RGB images as published tables use: PSNR with peak 255 over all "
    "pixels and channels, no crop; SSIM of the H×W×3 array as one 3-D volume (11×11×11 Gaussian "
    "σ=1.5, replicate padding, full map mean)"
)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        *(
            Protocol(
                name=name,
                description=f"{test_set} test set: " + _MATLAB_DESCRIPTION,
                source=f"{_RESTORMER}/Motion_Deblurring/evaluate_gopro_hide.m",
                score=score_matlab_8bit,
                reference_bit_depth=8,
            )
            for name, test_set in (("gopro", "GoPro"), ("hide", "HIDE"))
        ),
        Protocol(
            name="dpdd",
            description=(
                "DPDD defocus deblurring: 16-bit images in [0, 1] (float32), PSNR with peak 1 (100 when "
                "identical), scikit-image default SSIM (7×7 uniform window, per channel), MAE"
            ),
            source=(
                f"{_RESTORMER}/Defocus_Deblurring/test_dual_pixel_defocus_deblur.py "
                f"(metrics in {_RESTORMER}/Defocus_Deblurring/utils.py)"
            ),
            score=score_dpdd,
            reference_bit_depth=16,
            metrics=("psnr", "ssim", "mae"),
        ),
        Protocol(
            name="realblur",
            description=(
                "RealBlur: intensity matching and ECC homography alignment (OpenCV), then PSNR and "
                "Gaussian SSIM inside the valid mask, images in [0, 1]"
            ),
            source="https://github.com/rimchang/RealBlur/blob/master/evaluation_RealBlur_ecc.py",
            score=score_realblur,
            reference_bit_depth=8,
            check=_check_realblur,
        ),
        Protocol(
            name="plain",
            description=(
                "deblurkit score's defaults: PSNR and Gaussian SSIM (11×11, σ=1.5, valid map, channel "
                "mean) in the file's own sample range, no crop, all channels"
            ),
            source="deblurkit/score.py (DEFAULT_METRICS) with deblurkit/metrics/psnr.py and ssim.py",
            score=score_plain,
            reference_bit_depth=None,
        ),
    )
}


def protocol_names() -> list[str]:
    """The registered protocol names, in registration order."""
    return list(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (case and surrounding spaces ignored); a usage error otherwise."""
    key = name.strip().lower()
    if key not in PROTOCOLS:
        raise UnknownProtocolError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[key]
