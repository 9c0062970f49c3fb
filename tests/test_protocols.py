"""Benchmark protocols against independent transcriptions of the official evaluation scripts."""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deblurkit.errors import DeblurkitError
from deblurkit.evaluation import alignment
from deblurkit.evaluation.protocols import (
    PROTOCOLS,
    Protocol,
    ProtocolInputError,
    UnknownProtocolError,
    get_protocol,
    protocol_names,
    to_uint8,
)
from deblurkit.evaluation.score import score_paths


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


REFERENCE = data.astronaut()[90:186, 170:290]  # 96×120 RGB, uint8: face, helmet edges, flat areas


def degrade(image: np.ndarray, sigma: float, noise: float, seed: int, peak: float = 255.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blurred = ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0))
    return np.clip(blurred + rng.normal(0, noise, image.shape), 0, peak).round()


RESTORED = degrade(REFERENCE, 1.2, 4.0, seed=1).astype(np.uint8)


# --- registry -------------------------------------------------------------------------------------


def test_registry_names_and_lookup() -> None:
    assert protocol_names() == ["gopro", "hide", "dpdd", "realblur", "plain"]
    assert get_protocol(" GoPro ") is PROTOCOLS["gopro"]
    for name in protocol_names():
        protocol = get_protocol(name)
        assert isinstance(protocol, Protocol)
        assert protocol.name == name
        assert protocol.description
        assert protocol.source
    assert get_protocol("dpdd").reference_bit_depth == 16
    assert get_protocol("gopro").reference_bit_depth == 8
    assert get_protocol("dpdd").metrics == ("psnr", "ssim", "mae")
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_protocol("gopro").name = "other"  # type: ignore[misc]


def test_unknown_protocol_is_a_usage_error_listing_the_names() -> None:
    with pytest.raises(UnknownProtocolError) as info:
        get_protocol("gopr0")
    assert isinstance(info.value, DeblurkitError)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message
    for name in protocol_names():
        assert name in message


def test_bad_pairs_are_refused() -> None:
    score = get_protocol("plain").score
    with pytest.raises(ProtocolInputError, match="sizes differ"):
        score(RESTORED[:-1], REFERENCE)
    with pytest.raises(ProtocolInputError, match="channels differ"):
        score(RESTORED[..., 0], REFERENCE)
    with pytest.raises(ProtocolInputError, match="sample type"):
        score(RESTORED.astype(np.int32), REFERENCE.astype(np.int32))
    with pytest.raises(ProtocolInputError, match="RGB"):
        get_protocol("dpdd").score(RESTORED[..., 0], REFERENCE[..., 0])
    assert ProtocolInputError.exit_code == 1


# --- gopro / hide: MATLAB psnr and ssim on 8-bit RGB ---------------------------------------------


def matlab_psnr(a: np.ndarray, ref: np.ndarray) -> float:
    """MATLAB psnr(A, ref) for uint8: peak 255, immse in double over every sample."""
    mse = np.mean((a.astype(np.float64) - ref.astype(np.float64)) ** 2)
    return 10.0 * math.log10(255.0**2 / mse)


def matlab_ssim(a: np.ndarray, ref: np.ndarray) -> float:
    """MATLAB ssim(A, ref) with defaults: an N-D array is one volume, imgaussfilt3-style Gaussian
    (σ = 1.5, FilterSize 2·ceil(3σ)+1 = 11) with replicate padding, L = 255 for uint8, map mean."""

    def blur(v: np.ndarray) -> np.ndarray:
        # truncate 3.5 → radius int(3.5·1.5 + 0.5) = 5, i.e. 11 taps; 'nearest' is replicate padding
        return ndimage.gaussian_filter(v, sigma=1.5, truncate=3.5, mode="nearest")

    x, y = a.astype(np.float64), ref.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mux, muy = blur(x), blur(y)
    sx2, sy2, sxy = blur(x * x) - mux**2, blur(y * y) - muy**2, blur(x * y) - mux * muy
    num = (2 * mux * muy + c1) * (2 * sxy + c2)
    den = (mux**2 + muy**2 + c1) * (sx2 + sy2 + c2)
    return float(np.mean(num / den))


@pytest.mark.parametrize("name", ["gopro", "hide"])
def test_gopro_hide_match_matlab_psnr_and_3d_ssim(name: str) -> None:
    values = get_protocol(name).score(RESTORED, REFERENCE)
    assert set(values) == {"psnr", "ssim"}
    assert values["psnr"] == pytest.approx(matlab_psnr(RESTORED, REFERENCE), abs=1e-10)
    assert values["ssim"] == pytest.approx(matlab_ssim(RESTORED, REFERENCE), abs=1e-10)
    per_channel = structural_similarity(
        RESTORED, REFERENCE, channel_axis=-1, gaussian_weights=True, use_sample_covariance=False
    )
    assert abs(values["ssim"] - per_channel) > 1e-3  # the volume SSIM is not the per-channel one


def test_gopro_rounds_other_sample_types_to_8_bit() -> None:
    score = get_protocol("gopro").score
    expected = score(RESTORED, REFERENCE)
    as_float = RESTORED.astype(np.float32) / 255 + np.float32(0.4 / 255)  # rounds back to RESTORED
    assert score(as_float, REFERENCE) == expected
    assert score(RESTORED.astype(np.uint16) * 257, REFERENCE) == expected
    assert np.array_equal(to_uint8(np.array([0.0, 0.3 / 255, 1.7 / 255, 2.0, -1.0])), [0, 0, 2, 255, 0])
    gray = score(RESTORED[..., 1], REFERENCE[..., 1])
    assert gray["ssim"] == pytest.approx(matlab_ssim(RESTORED[..., 1], REFERENCE[..., 1]), abs=1e-10)
    identical = score(REFERENCE, REFERENCE)
    assert math.isinf(identical["psnr"])
    assert identical["ssim"] == pytest.approx(1.0, abs=1e-12)


# --- dpdd: Restormer's test_single_image_defocus_deblur.py on 16-bit images ----------------------

REFERENCE_16 = np.clip(REFERENCE.astype(np.float64) * 257 + np.arange(3) * 11, 0, 65535).astype(np.uint16)
RESTORED_16 = degrade(REFERENCE_16, 1.5, 700.0, seed=2, peak=65535.0).astype(np.uint16)


def test_dpdd_matches_a_hand_computation_on_16_bit_data() -> None:
    values = get_protocol("dpdd").score(RESTORED_16, REFERENCE_16)
    target, restored = REFERENCE_16 / 65535.0, RESTORED_16 / 65535.0
    diff = target - restored
    psnr = 10 * math.log10(1.0 / np.mean(diff**2))
    mae = np.mean(np.abs(diff))
    # utils.SSIM: structural_similarity(img1, img2, data_range=1, multichannel=True), defaults otherwise
    ssim = structural_similarity(target, restored, data_range=1.0, channel_axis=-1)
    assert values["psnr"] == pytest.approx(psnr, abs=2e-5)
    assert values["mae"] == pytest.approx(mae, rel=2e-5)
    assert values["ssim"] == pytest.approx(ssim, abs=1e-6)
    # all three in [0, 1] units: 16-bit samples / 65535, not / 255
    assert 20 < values["psnr"] < 60
    assert 0 < values["mae"] < 0.1


def test_dpdd_identical_images_score_100_db() -> None:
    values = get_protocol("dpdd").score(REFERENCE_16, REFERENCE_16)
    assert values == {"psnr": 100.0, "ssim": pytest.approx(1.0, abs=1e-12), "mae": 0.0}


# --- realblur: evaluation_RealBlur_ecc.py ---------------------------------------------------------


def official_realblur(deblurred_u8: np.ndarray, gt_u8: np.ndarray) -> tuple[float, float]:
    """rimchang/RealBlur evaluation_RealBlur_ecc.py for one pair, transcribed (scikit-image 0.17.2
    converted the float32 arrays to float64 inside structural_similarity: done here explicitly)."""
    cv2 = pytest.importorskip("cv2")
    z = deblurred_u8.astype("float32") / 255
    x = gt_u8.astype("float32") / 255
    zs = (np.sum(x * z) / np.sum(z * z)) * z
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 0)
    _, warp = cv2.findTransformECC(
        cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
        cv2.cvtColor(zs, cv2.COLOR_RGB2GRAY),
        np.eye(3, 3, dtype=np.float32),
        cv2.MOTION_HOMOGRAPHY,
        criteria,
        inputMask=None,
        gaussFiltSize=5,
    )
    shape = (x.shape[1], x.shape[0])
    flags_img, flags_mask = cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP, cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP
    zr = cv2.warpPerspective(zs, warp, shape, flags=flags_img, borderMode=cv2.BORDER_REFLECT)
    ones = np.ones_like(zs, dtype="float32")
    cr = cv2.warpPerspective(
        ones, warp, shape, flags=flags_mask, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    zr, xr = zr * cr, x * cr
    _, ssim_map = structural_similarity(
        xr.astype(np.float64),
        zr.astype(np.float64),
        channel_axis=-1,
        gaussian_weights=True,
        use_sample_covariance=False,
        data_range=1.0,
        full=True,
    )
    ssim_map = ssim_map * cr
    pad = 5
    ssim = np.mean(ssim_map[pad:-pad, pad:-pad].sum(axis=(0, 1)) / cr[pad:-pad, pad:-pad].sum(axis=(0, 1)))
    err = np.sum((xr - zr) ** 2, dtype=np.float64) / np.sum(cr)
    return float(10 * np.log10(1.0 / err)), float(ssim)


# A known homography: 0.35° rotation about the centre, a (0.6, -0.45) px shift, a faint perspective.
def known_homography(height: int, width: int) -> np.ndarray:
    angle = math.radians(0.35)
    cx, cy = width / 2, height / 2
    rotate = np.array(
        [
            [math.cos(angle), -math.sin(angle), cx - cx * math.cos(angle) + cy * math.sin(angle)],
            [math.sin(angle), math.cos(angle), cy - cx * math.sin(angle) - cy * math.cos(angle)],
            [0.0, 0.0, 1.0],
        ]
    )
    shift = np.array([[1.0, 0.0, 0.6], [0.0, 1.0, -0.45], [2e-6, -1e-6, 1.0]])
    return (shift @ rotate).astype(np.float32)


@pytest.fixture(scope="module")
def realblur_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cv2 = pytest.importorskip("cv2")
    gt = data.astronaut()[60:220, 140:320]  # 160×180
    h = known_homography(*gt.shape[:2])
    # restored(p) = gt(H⁻¹ p), i.e. restored(H q) = gt(q); a little darker, sharp otherwise
    moved = cv2.warpPerspective(
        gt.astype(np.float32),
        h,
        (gt.shape[1], gt.shape[0]),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    restored = np.clip(moved * 0.93, 0, 255).round().astype(np.uint8)
    return restored, gt, h


def test_realblur_matches_the_official_script(realblur_pair) -> None:
    restored, gt, _ = realblur_pair
    values = get_protocol("realblur").score(restored, gt)
    psnr, ssim = official_realblur(restored, gt)
    assert values["psnr"] == pytest.approx(psnr, abs=1e-9)
    assert values["ssim"] == pytest.approx(ssim, abs=1e-9)


def test_realblur_alignment_recovers_the_shift(realblur_pair) -> None:
    restored, gt, h = realblur_pair
    aligned = alignment.align_realblur(restored.astype(np.float32) / 255, gt.astype(np.float32) / 255)
    height, width = gt.shape[:2]
    points = np.array(
        [
            [0, 0, 1],
            [width - 1, 0, 1],
            [0, height - 1, 1],
            [width - 1, height - 1, 1],
            [width / 2, height / 2, 1],
        ],
        float,
    ).T

    def apply(m: np.ndarray) -> np.ndarray:
        p = m.astype(np.float64) @ points
        return p[:2] / p[2]

    error = np.hypot(*(apply(aligned.warp) - apply(h)))
    moved = np.hypot(*(apply(h) - points[:2]))
    assert moved[4] > 0.7  # the centre moved by 0.75 px, a corner by about 1.5 px
    assert moved.max() > 1.4
    assert error[4] < 0.03  # px, at the centre
    assert error[:4].max() < 0.2  # px, at the corners (8 parameters fitted on 160×180 px)
    assert aligned.ecc > 0.99
    assert aligned.gain == pytest.approx(1 / 0.93, rel=0.01)
    assert aligned.mask.shape == gt.shape
    assert set(np.unique(aligned.mask)) == {0.0, 1.0}
    assert aligned.mask.mean() > 0.95
    # aligned, the score is far higher than the same pair scored as is
    values = get_protocol("realblur").score(restored, gt)
    unaligned = get_protocol("plain").score(restored, gt)
    assert values["psnr"] > unaligned["psnr"] + 10
    assert values["ssim"] > unaligned["ssim"] + 0.1
    assert values["psnr"] > 35


def test_realblur_identical_images() -> None:
    pytest.importorskip("cv2")
    values = get_protocol("realblur").score(REFERENCE, REFERENCE)
    assert values["psnr"] > 100  # ECC's 100 iterations may move the identity by a hair
    assert values["ssim"] == pytest.approx(1.0, abs=1e-9)


def test_realblur_without_opencv_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    protocol = get_protocol("realblur")
    for call in (protocol.check, lambda: protocol.score(RESTORED, REFERENCE)):
        with pytest.raises(alignment.OpenCVUnavailableError) as info:
            call()
        assert isinstance(info.value, DeblurkitError)
        assert info.value.exit_code == 1
        message = str(info.value)
        assert "\n" not in message
        assert 'pip install "deblurkit[realblur]"' in message


def test_realblur_flat_black_restored_is_a_one_line_error() -> None:
    pytest.importorskip("cv2")
    with pytest.raises(alignment.AlignmentError):
        get_protocol("realblur").score(np.zeros_like(REFERENCE), REFERENCE)


# --- plain: deblurkit score's defaults ------------------------------------------------------------


def test_plain_equals_deblurkit_score_and_skimage(tmp_path) -> None:
    values = get_protocol("plain").score(RESTORED, REFERENCE)
    Image.fromarray(RESTORED).save(tmp_path / "restored.png")
    Image.fromarray(REFERENCE).save(tmp_path / "reference.png")
    result = score_paths(tmp_path / "restored.png", tmp_path / "reference.png", device="cpu", workers=1)
    assert values == result.pairs[0].values
    assert values["psnr"] == pytest.approx(peak_signal_noise_ratio(REFERENCE, RESTORED), abs=1e-10)
    ssim = structural_similarity(
        REFERENCE,
        RESTORED,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert values["ssim"] == pytest.approx(ssim, abs=1e-10)


def test_plain_mixed_sample_types_compare_in_unit_range() -> None:
    values = get_protocol("plain").score(RESTORED.astype(np.float32) / 255, REFERENCE)
    assert values["psnr"] == pytest.approx(peak_signal_noise_ratio(REFERENCE, RESTORED), abs=1e-4)
