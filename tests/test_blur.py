"""Blur kernels and the degradation pipeline: normalised, centred, seeded, realistic."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deblurkit.errors import DeblurkitError
from deblurkit.synthesis.blur import (
    Degradation,
    blur_image,
    degrade,
    disk_kernel,
    gaussian_kernel,
    linear_to_srgb,
    motion_kernel,
    random_kernel,
    srgb_to_linear,
)


def _centre_of_mass(kernel: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(kernel.shape)
    return float((ys * kernel).sum()), float((xs * kernel).sum())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), length=st.floats(1.0, 40.0))
def test_motion_kernels_are_normalised_centred_and_odd(seed, length):
    kernel = motion_kernel(np.random.default_rng(seed), length)
    size = kernel.shape[0]
    assert kernel.shape == (size, size) and size % 2 == 1
    assert kernel.min() >= 0 and abs(kernel.sum() - 1) < 1e-5
    assert np.allclose(_centre_of_mass(kernel), ((size - 1) / 2,) * 2, atol=1e-3)


def test_motion_kernel_extent_follows_the_length():
    rng = np.random.default_rng(0)
    short = [motion_kernel(rng, 5).shape[0] for _ in range(5)]
    long = [motion_kernel(rng, 40).shape[0] for _ in range(5)]
    assert max(short) < min(long) <= 2 * 40 + 3


@pytest.mark.parametrize("radius", [0.3, 1.5, 4.2])
def test_disk_kernel(radius):
    kernel = disk_kernel(radius)
    assert abs(kernel.sum() - 1) < 1e-6 and np.array_equal(kernel, kernel.T)
    assert np.array_equal(kernel, kernel[::-1, ::-1])


def test_gaussian_kernel_has_the_right_spread():
    kernel = gaussian_kernel(2.0)
    ys, _ = np.indices(kernel.shape)
    centre = (kernel.shape[0] - 1) / 2
    variance = float((((ys - centre) ** 2) * kernel).sum())
    assert abs(variance - 4.0) < 0.1


def test_blur_keeps_size_and_mean_and_a_delta_is_identity():
    image = np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)
    assert np.allclose(blur_image(image, np.ones((1, 1), np.float32)), image, atol=1e-6)
    blurred = blur_image(image, disk_kernel(3))
    assert blurred.shape == image.shape
    assert abs(blurred.mean() - image.mean()) < 0.01 and blurred.std() < image.std()


def test_blur_does_not_shift_the_image():
    image = np.zeros((61, 61, 1), np.float32)
    image[30, 30] = 1
    blurred = blur_image(image, motion_kernel(np.random.default_rng(3), 20))
    assert np.allclose(_centre_of_mass(blurred[:, :, 0] / blurred.sum()), (30, 30), atol=0.05)


def test_srgb_round_trip():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)


def test_degrade_is_seeded_and_reproducible():
    sharp = np.random.default_rng(1).random((48, 40, 3)).astype(np.float32)
    settings_ = Degradation(jpeg=0.5)
    a, info_a = degrade(sharp, np.random.default_rng(7), settings_)
    b, info_b = degrade(sharp, np.random.default_rng(7), settings_)
    c, _ = degrade(sharp, np.random.default_rng(8), settings_)
    assert np.array_equal(a, b) and info_a == info_b and not np.array_equal(a, c)
    assert a.shape == sharp.shape and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_degrade_quantises_and_adds_noise():
    sharp = np.full((32, 32, 3), 0.5, np.float32)
    out, info = degrade(sharp, np.random.default_rng(0), Degradation(noise=0.05, shot_noise=0.0))
    assert np.allclose(out * 255, np.rint(out * 255), atol=1e-4)  # 8-bit levels
    assert out.std() > 0 and info["noise"] > 0
    clean, _ = degrade(sharp, np.random.default_rng(0), Degradation(noise=0, shot_noise=0, bits=0))
    assert np.allclose(clean, 0.5, atol=1e-4)  # a flat image stays flat without noise


def test_linear_light_blur_brightens_highlights_next_to_shadows():
    edge = np.zeros((9, 40, 1), np.float32)
    edge[:, 20:] = 1.0
    settings_ = Degradation(kernels=("gaussian",), gaussian_sigma=(3, 3), noise=0, shot_noise=0, bits=0)
    linear, _ = degrade(edge, np.random.default_rng(0), settings_)
    plain = dataclasses.replace(settings_, linear_light=False)
    gamma, _ = degrade(edge, np.random.default_rng(0), plain)
    assert linear[4, 20] > gamma[4, 20]  # light is averaged, not sRGB values


def test_random_kernel_kinds_are_drawn_from_the_settings():
    rng = np.random.default_rng(0)
    kinds = {random_kernel(rng, Degradation(kernels=("defocus", "gaussian")))[1]["kind"] for _ in range(20)}
    assert kinds == {"defocus", "gaussian"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kernels": ("shake",)}, "unknown blur kernel 'shake'"),
        ({"motion_length": (10, 5)}, "motion_length must be 0 ≤ low ≤ high"),
        ({"jpeg": 2.0}, "JPEG probability"),
        ({"bits": 12}, "bits must be 0, 8 or 16"),
    ],
)
def test_bad_settings(options, message):
    with pytest.raises(DeblurkitError, match=message):
        Degradation(**options)
