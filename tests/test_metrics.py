"""Each metric against its reference implementation on real photographs under synthetic degradations."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deblurkit.metrics import (
    Metric,
    MetricUnavailableError,
    UnknownMetricError,
    crop_border,
    get_metric,
    metric_names,
    register,
    resolve_metrics,
    rgb_to_y,
)
from deblurkit.metrics import lpips as lpips_metric
from deblurkit.metrics.ssim import GAUSS_11, MS_SSIM_WEIGHTS


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small tensors: intra-op threads only add contention on a shared CI machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


PHOTOS = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}


def degrade(image: np.ndarray, sigma: float, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blurred = ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0))
    return np.clip(blurred + rng.normal(0, noise, image.shape), 0, 255).round().astype(np.uint8)


CASES = [(name, sigma, noise) for name in PHOTOS for sigma, noise in ((0.8, 2.0), (2.5, 8.0))]


def batch(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 2:
        array = array[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype == torch.uint16:
        tensor = tensor.to(torch.int32)
    return tensor.permute(2, 0, 1).unsqueeze(0).contiguous()


def value(name: str, restored: np.ndarray, reference: np.ndarray, data_range: float) -> float:
    return float(get_metric(name).compute(batch(restored), batch(reference), data_range)[0])


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-blur{c[1]}-noise{c[2]}")
def pair(request) -> tuple[np.ndarray, np.ndarray]:
    name, sigma, noise = request.param
    reference = PHOTOS[name]
    return degrade(reference, sigma, noise, seed=len(name)), reference


def test_psnr_equals_skimage(pair) -> None:
    restored, reference = pair
    assert value("psnr", restored, reference, 255) == pytest.approx(
        peak_signal_noise_ratio(reference, restored), abs=1e-6
    )


def test_ssim_skimage_equals_skimage_default(pair) -> None:
    restored, reference = pair
    expected = structural_similarity(restored, reference, channel_axis=-1, data_range=255)
    assert value("ssim-skimage", restored, reference, 255) == pytest.approx(expected, abs=1e-6)


def test_ssim_equals_gaussian_skimage(pair) -> None:
    restored, reference = pair
    expected = structural_similarity(
        restored,
        reference,
        channel_axis=-1,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert value("ssim", restored, reference, 255) == pytest.approx(expected, abs=1e-6)


def test_16bit_and_float_samples() -> None:
    reference8 = PHOTOS["coffee"][:200, :300]
    restored8 = degrade(reference8, 1.2, 3.0, seed=3)
    reference16 = reference8.astype(np.uint16) * 257 + 11
    restored16 = restored8.astype(np.uint16) * 257
    assert value("psnr", restored16, reference16, 65535) == pytest.approx(
        peak_signal_noise_ratio(reference16, restored16), abs=1e-6
    )
    assert value("ssim-skimage", restored16, reference16, 65535) == pytest.approx(
        structural_similarity(restored16, reference16, channel_axis=-1, data_range=65535), abs=1e-6
    )
    restored_f = restored8.astype(np.float64) / 255
    reference_f = reference8.astype(np.float64) / 255
    assert value("ssim", restored_f, reference_f, 1.0) == pytest.approx(
        value("ssim", restored8, reference8, 255)
    )
    assert value("psnr", restored_f, reference_f, 1.0) == pytest.approx(
        peak_signal_noise_ratio(reference_f, restored_f, data_range=1.0), abs=1e-6
    )


def matlab_ssim_reference(restored: np.ndarray, reference: np.ndarray, data_range: float) -> float:
    """MATLAB ssim on an H×W×C array, written plainly: a 3-D kernel, replicate ('nearest') padding."""
    g = np.array(GAUSS_11)
    kernel = g[:, None, None] * g[None, :, None] * g[None, None, :]
    if restored.ndim == 2:
        kernel = kernel.sum(axis=2)

    def filt(v: np.ndarray) -> np.ndarray:
        return ndimage.correlate(v, kernel, mode="nearest")

    a, b = restored.astype(np.float64), reference.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    ssim_map = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def test_ssim_matlab_is_the_3d_volume_ssim() -> None:
    reference = PHOTOS["chelsea"][100:180, 150:250]
    restored = degrade(reference, 1.5, 4.0, seed=5)
    expected = matlab_ssim_reference(restored, reference, 255)
    assert value("ssim-matlab", restored, reference, 255) == pytest.approx(expected, abs=1e-12)
    gray_ref, gray_res = reference[..., 1], restored[..., 1]
    expected_2d = matlab_ssim_reference(gray_res, gray_ref, 255)
    assert value("ssim-matlab", gray_res, gray_ref, 255) == pytest.approx(expected_2d, abs=1e-12)


def ms_ssim_reference(x: torch.Tensor, y: torch.Tensor, data_range: float) -> float:
    """pytorch_msssim.ms_ssim's algorithm with a float64 window, written with conv2d."""
    channels = x.shape[1]
    win = torch.tensor(GAUSS_11, dtype=torch.float64).view(1, 1, 1, -1).repeat(channels, 1, 1, 1)

    def blur(v: torch.Tensor) -> torch.Tensor:
        v = F.conv2d(v, win, groups=channels)
        return F.conv2d(v, win.transpose(2, 3), groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x, y = x.double(), y.double()
    factors = []
    for level in range(5):
        mu_x, mu_y = blur(x), blur(y)
        sxx, syy, sxy = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
        cs_map = (2 * sxy + c2) / (sxx + syy + c2)
        ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
        if level < 4:
            factors.append(torch.relu(cs_map.flatten(2).mean(-1)))
            pad = (x.shape[2] % 2, x.shape[3] % 2)
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
    factors.append(torch.relu(ssim_map.flatten(2).mean(-1)))
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64).view(-1, 1, 1)
    return float(torch.prod(torch.stack(factors) ** weights, dim=0).mean())


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_ms_ssim_matches_pytorch_msssim_algorithm(name: str) -> None:
    reference = PHOTOS[name][:171, :183]  # odd sides exercise the padded pooling
    restored = degrade(reference, 1.5, 4.0, seed=9)
    expected = ms_ssim_reference(batch(restored), batch(reference), 255)
    assert value("ms-ssim", restored, reference, 255) == pytest.approx(expected, abs=1e-12)


def test_y_channel_is_bt601_as_matlab() -> None:
    image = PHOTOS["astronaut"]
    y = rgb_to_y(batch(image), 255.0)[0, 0].numpy()
    np.testing.assert_allclose(y, color.rgb2ycbcr(image)[..., 0], atol=1e-9)
    gray = batch(image[..., :1])
    assert rgb_to_y(gray, 255.0) is gray


def test_identical_images_and_crop() -> None:
    image = PHOTOS["coffee"]
    assert math.isinf(value("psnr", image, image, 255))
    for name in ("ssim", "ssim-skimage", "ssim-matlab", "ms-ssim"):
        assert value(name, image, image, 255) == pytest.approx(1.0, abs=1e-12)
    cropped = crop_border(batch(image), 4)
    assert cropped.shape[-2:] == (image.shape[0] - 8, image.shape[1] - 8)
    assert crop_border(batch(image), 0).shape == batch(image).shape


def test_batches_give_one_value_per_image() -> None:
    reference = PHOTOS["chelsea"][:100, :120]
    restored = [degrade(reference, s, 2.0, seed=1) for s in (0.5, 2.0)]
    x = torch.cat([batch(r) for r in restored])
    y = torch.cat([batch(reference)] * 2)
    for name in ("psnr", "ssim", "ssim-skimage"):
        values = get_metric(name).compute(x, y, 255.0)
        assert values.dtype == torch.float64 and values.shape == (2,)
        assert values[0].item() == pytest.approx(value(name, restored[0], reference, 255), abs=1e-12)


def test_registry() -> None:
    assert {"psnr", "ssim", "ssim-skimage", "ssim-matlab", "ms-ssim", "lpips-squeeze"} <= set(metric_names())
    assert [m.name for m in resolve_metrics("psnr, ssim,psnr")] == ["psnr", "ssim"]
    assert get_metric("LPIPS").name == "lpips-squeeze"
    with pytest.raises(UnknownMetricError, match="unknown metric 'nope'"):
        resolve_metrics("psnr,nope")
    custom = Metric(
        "test-mean-abs", lambda x, y, r: (x.double() - y.double()).abs().mean((1, 2, 3)) / r, "t", False
    )
    register(custom, replace=True)
    assert get_metric("test-mean-abs") is custom
    with pytest.raises(ValueError, match="already registered"):
        register(custom)


def test_lpips_without_package_says_how_to_enable(monkeypatch: pytest.MonkeyPatch) -> None:
    lpips_metric._model.cache_clear()
    monkeypatch.setitem(sys.modules, "lpips", None)
    with pytest.raises(MetricUnavailableError, match="pip install lpips") as info:
        get_metric("lpips-alex").check()
    assert "\n" not in str(info.value)
    lpips_metric._model.cache_clear()


def test_lpips_scales_to_minus_one_one(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net: str, version: str, verbose: bool) -> None:
            super().__init__()
            seen["net"] = net

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            seen["range"] = (a.min().item(), a.max().item(), a.shape[1])
            return (a - b).abs().mean((1, 2, 3), keepdim=True)

    fake = type(sys)("lpips")
    fake.LPIPS = FakeLPIPS
    lpips_metric._model.cache_clear()
    monkeypatch.setitem(sys.modules, "lpips", fake)
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    out = get_metric("lpips").compute(x, torch.zeros_like(x), 255.0)
    assert seen == {"net": "squeeze", "range": (-1.0, 1.0, 3)}
    assert out.tolist() == [1.0]
    lpips_metric._model.cache_clear()
