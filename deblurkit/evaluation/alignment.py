"""RealBlur's alignment of a restored image to its reference, done before RealBlur's PSNR/SSIM.

The RealBlur pairs are only approximately registered, so the official evaluation
(rimchang/RealBlur ``evaluation_RealBlur_ecc.py``, function ``image_align``, itself after Köhler et
al.'s benchmark code) first maps the restored image onto the reference. :func:`align_realblur` does
the same steps with the same float32 arithmetic, for x the reference and z the restored image, both
H×W×3 float32 in [0, 1]:

1. intensity matching: ``z_s = (Σ x·z / Σ z·z) · z``, the sums over every pixel and channel
   (numpy float32 sums, as in the script);
2. an ECC homography (Evangelidis & Psarakis 2008) from OpenCV ``findTransformECC``: template
   ``gray(x)``, input ``gray(z_s)`` with OpenCV's RGB→gray (0.299 R + 0.587 G + 0.114 B), identity
   start, ``MOTION_HOMOGRAPHY``, criteria ``TERM_CRITERIA_EPS | TERM_CRITERIA_COUNT`` with 100
   iterations and epsilon 0 (so 100 iterations unless the update vanishes), no mask,
   ``gaussFiltSize`` 5;
3. ``warpPerspective`` of ``z_s`` with the found matrix as an inverse map (``WARP_INVERSE_MAP``),
   bicubic, ``BORDER_REFLECT``, onto the reference's size; a float32 H×W×3 array of ones warped the
   same way with nearest-neighbour sampling and a constant 0 border is the valid mask;
4. the warped restored image and the reference are both multiplied by the mask.

OpenCV is an optional dependency (``pip install "deblurkit[realblur]"``), imported only when needed.
The official script pins opencv-python 4.2.0.32; other OpenCV versions may differ in the last digits
of the ECC solution and so of the scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DeblurkitError

__all__ = [
    "REALBLUR_INSTALL_HINT",
    "Alignment",
    "AlignmentError",
    "OpenCVUnavailableError",
    "align_realblur",
    "require_cv2",
]

REALBLUR_INSTALL_HINT = 'pip install "deblurkit[realblur]"'

ECC_ITERATIONS = 100
ECC_EPSILON = 0.0
ECC_GAUSS_FILTER_SIZE = 5


class OpenCVUnavailableError(DeblurkitError):
    """OpenCV (``cv2``), which RealBlur's alignment needs, cannot be imported."""


class AlignmentError(DeblurkitError):
    """The ECC alignment cannot be computed for this pair (e.g. a flat image, or no convergence)."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def require_cv2() -> Any:
    """The ``cv2`` module, or :class:`OpenCVUnavailableError` with the install command."""
    try:
        import cv2
    except ImportError as err:
        raise OpenCVUnavailableError(
            f"the realblur protocol needs OpenCV ({_one_line(err)}); install it with: {REALBLUR_INSTALL_HINT}"
        ) from None
    return cv2


@dataclass(frozen=True)
class Alignment:
    """The outcome of :func:`align_realblur`; every array is float32.

    ``restored`` is the intensity-matched, warped restored image times ``mask``; ``reference`` is the
    reference times ``mask``; ``mask`` is H×W×3 with 1 where the warped image has samples and 0
    where the warp left the frame; ``warp`` is the 3×3 homography ECC found (used as an inverse map:
    reference pixel → restored pixel); ``gain`` is the intensity-matching factor; ``ecc`` is the
    final correlation coefficient.
    """

    restored: np.ndarray
    reference: np.ndarray
    mask: np.ndarray
    warp: np.ndarray
    gain: float
    ecc: float


def align_realblur(restored: np.ndarray, reference: np.ndarray) -> Alignment:
    """Align ``restored`` to ``reference`` (H×W×3 float32 in [0, 1]) as RealBlur's evaluation does."""
    cv2 = require_cv2()
    z = np.ascontiguousarray(restored, dtype=np.float32)
    x = np.ascontiguousarray(reference, dtype=np.float32)
    if z.shape != x.shape or z.ndim != 3 or z.shape[2] != 3:
        raise ValueError(f"expected two H×W×3 arrays of one shape, got {z.shape} and {x.shape}")
    energy = np.sum(z * z)
    if not energy > 0:
        raise AlignmentError("realblur alignment: the restored image is black (nothing to match)")
    gain = np.sum(x * z) / energy
    zs = gain * z
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPSILON)
    try:
        ecc, warp = cv2.findTransformECC(
            cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
            cv2.cvtColor(zs, cv2.COLOR_RGB2GRAY),
            np.eye(3, 3, dtype=np.float32),
            cv2.MOTION_HOMOGRAPHY,
            criteria,
            None,
            ECC_GAUSS_FILTER_SIZE,
        )
    except cv2.error as err:
        raise AlignmentError(f"realblur alignment: OpenCV's ECC failed: {_one_line(err)}") from None
    size = (x.shape[1], x.shape[0])
    warped = cv2.warpPerspective(
        zs, warp, size, flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )
    mask = cv2.warpPerspective(
        np.ones_like(zs, dtype=np.float32),
        warp,
        size,
        flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return Alignment(
        restored=warped * mask,
        reference=x * mask,
        mask=mask,
        warp=warp,
        gain=float(gain),
        ecc=float(ecc),
    )
