"""The no-reference sharpness measure: ordering under blur, invariances, sample types, the formula."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from deblurkit.errors import DeblurkitError
from deblurkit.metrics.sharpness import sharpness


def natural_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An RGB float image in [0, 1] with a 1/f amplitude spectrum (as natural photos have) and
    correlated but different channels."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    channels = []
    base = rng.normal(size=(height, width // 2 + 1)) + 1j * rng.normal(size=(height, width // 2 + 1))
    for _ in range(3):
        own = rng.normal(size=base.shape) + 1j * rng.normal(size=base.shape)
        channels.append(np.fft.irfft2((base + 0.3 * own) / radius, s=(height, width)))
    image = np.stack(channels, axis=-1)
    image -= image.min()
    return image / image.max()


SHARP = natural_like(192, 256)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, (sigma, sigma, 0), mode="reflect")


def as_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("kind", ["float", "uint8", "uint16"])
def test_sharpness_drops_as_blur_grows(kind: str) -> None:
    convert = {
        "float": lambda v: v.astype(np.float32),
        "uint8": as_uint8,
        "uint16": lambda v: np.clip(v * 65535, 0, 65535).round().astype(np.uint16),
    }[kind]
    values = [sharpness(convert(SHARP))] + [sharpness(convert(blur(SHARP, s))) for s in (1.0, 2.0, 4.0)]
    assert values[0] > values[1] > values[2] > values[3] > 0
    assert values[0] > 3 * values[1]  # removing a σ=1 blur is a big step, not a rounding error


def test_sharpness_ignores_global_brightness_scale_and_offset() -> None:
    base = sharpness(SHARP)
    assert sharpness(SHARP * 0.5) == pytest.approx(base, rel=1e-5)
    assert sharpness(SHARP * 0.6 + 0.3) == pytest.approx(base, rel=1e-5)
    # through 8-bit files (rounding adds a little noise): within a percent
    assert sharpness(as_uint8(SHARP * 0.7)) == pytest.approx(sharpness(as_uint8(SHARP)), rel=0.01)


def test_sharpness_is_the_documented_formula() -> None:
    image = as_uint8(natural_like(700, 90, seed=3))  # taller than one strip of rows
    rgb = image.astype(np.float64) / 255
    y = rgb @ np.array([0.299, 0.587, 0.114])
    laplacian = ndimage.convolve(y, np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float))[1:-1, 1:-1]
    expected = laplacian.var() / y[1:-1, 1:-1].var()
    assert sharpness(image) == pytest.approx(expected, rel=1e-5)
    assert sharpness(image) == sharpness(image)  # deterministic


def test_sharpness_sample_types_and_layouts_agree() -> None:
    image = as_uint8(SHARP)
    base = sharpness(image)
    assert sharpness(image.astype(np.uint16) * 257) == pytest.approx(base, rel=1e-6)
    assert sharpness(image.astype(np.float64) / 255) == pytest.approx(base, rel=1e-6)
    gray = image[..., 1]
    assert sharpness(gray) == sharpness(gray[..., None])
    assert sharpness(np.repeat(gray[..., None], 3, axis=2)) == pytest.approx(sharpness(gray), rel=1e-5)


def test_sharpness_edge_cases() -> None:
    assert sharpness(np.full((40, 50, 3), 0.4, np.float32)) == 0.0
    assert sharpness(np.zeros((3, 3), np.uint8)) == 0.0
    with pytest.raises(DeblurkitError):
        sharpness(np.zeros((2, 50, 3), np.uint8))
    with pytest.raises(ValueError):
        sharpness(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(TypeError):
        sharpness(np.zeros((10, 10, 3), np.int32))
