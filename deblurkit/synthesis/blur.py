"""Synthetic blur: random blur kernels and a seeded degradation pipeline that turns sharp images into
realistic blurry ones.

Kernels:

* :func:`motion_kernel`: camera shake, a random trajectory in the style of Boracchi & Foi (2012), as
  DeblurGAN generates them (inertia, random "anxiety" shakes, impulsive jerks, a centripetal pull),
  integrated over a random share of the exposure and rasterised with bilinear splatting;
* :func:`disk_kernel`: defocus, an anti-aliased disk;
* :func:`gaussian_kernel`: an isotropic Gaussian.

Every kernel sums to 1 and has its centre of mass at its centre pixel, so blurring does not shift the
image. :func:`degrade` applies one random kernel in linear light (the sRGB curve undone first), adds
Poisson-Gaussian sensor noise, goes back to sRGB, quantises and optionally JPEG-compresses. All
randomness comes from the ``numpy.random.Generator`` passed in, so a seed reproduces a pair exactly.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image

from ..errors import DeblurkitError, UsageError

__all__ = [
    "KERNEL_KINDS",
    "MAX_HIGHLIGHT_GAIN",
    "MAX_REACH",
    "Degradation",
    "add_camera_noise",
    "blur_image",
    "checked_range",
    "degrade",
    "disk_kernel",
    "gaussian_kernel",
    "linear_to_srgb",
    "load_kernel_bank",
    "motion_kernel",
    "quantise_and_compress",
    "random_kernel",
    "srgb_to_linear",
]

KERNEL_KINDS = ("motion", "defocus", "gaussian", "bank")
DEFAULT_KERNELS = ("motion", "defocus", "gaussian")
MAX_REACH = 512
"""Pixels a kernel may reach from its centre (:attr:`Degradation.margin`); larger ones are refused."""
MAX_HIGHLIGHT_GAIN = 1000.0
"""How many times brighter than white a light may be made."""


@dataclass(frozen=True)
class Degradation:
    """Settings of the degradation pipeline (ranges are ``(low, high)``, drawn uniformly).

    ``kernels``: the kinds to choose from, equally likely. ``motion_length``: trajectory length in
    pixels. ``defocus_radius``/``gaussian_sigma``: in pixels. ``linear_light``: blur and add noise in
    linear light (sRGB curve undone), as a camera integrates light. ``noise``: largest read-noise
    standard deviation, ``shot_noise``: largest shot-noise gain (variance = gain × signal), both in
    linear [0, 1] units. ``jpeg``: probability of JPEG compression, at a quality drawn from
    ``jpeg_quality``. ``bits``: quantise the blurry image to this many bits (0: keep floats).
    ``spatially_varying``: probability of a non-uniform blur (a 2×2 or 3×3 grid of random kernels
    blended smoothly across the image). ``highlights``: probability of making lights brighter than
    white (by a gain from ``highlight_gain``) before blurring, so they streak and clip.
    ``kernel_bank``: an ``.npz`` of measured kernels (e.g. Levin et al.'s eight) for the ``bank`` kind.
    """

    kernels: tuple[str, ...] = DEFAULT_KERNELS
    motion_length: tuple[float, float] = (8.0, 40.0)
    defocus_radius: tuple[float, float] = (1.5, 6.0)
    gaussian_sigma: tuple[float, float] = (0.8, 3.0)
    linear_light: bool = True
    noise: float = 0.003
    shot_noise: float = 0.001
    jpeg: float = 0.0
    jpeg_quality: tuple[float, float] = (60.0, 95.0)
    bits: int = 8
    spatially_varying: float = 0.0
    highlights: float = 0.0
    highlight_gain: tuple[float, float] = (1.5, 4.0)
    kernel_bank: str = ""

    def __post_init__(self) -> None:
        kernels = tuple(self.kernels)
        unknown = [k for k in kernels if k not in KERNEL_KINDS]
        if not kernels or unknown:
            raise UsageError(
                f"unknown blur kernel {unknown[0] if unknown else '(none)'!r}; choose from "
                + ", ".join(KERNEL_KINDS)
            )
        object.__setattr__(self, "kernels", kernels)
        for name in ("motion_length", "defocus_radius", "gaussian_sigma", "jpeg_quality"):
            object.__setattr__(self, name, checked_range(self, name, 100 if name == "jpeg_quality" else None))
        if not (0 <= self.noise < math.inf and 0 <= self.shot_noise < math.inf and 0 <= self.jpeg <= 1):
            raise UsageError("synthesis noise must be ≥ 0 and the JPEG probability in [0, 1]")
        low, high = _range(self, "highlight_gain")
        if not 1 <= low <= high <= MAX_HIGHLIGHT_GAIN:
            raise UsageError(
                f"highlight gain must be 1 ≤ low ≤ high ≤ {MAX_HIGHLIGHT_GAIN:g}, got {low}, {high}"
            )
        object.__setattr__(self, "highlight_gain", (low, high))
        if not 0 <= self.spatially_varying <= 1 or not 0 <= self.highlights <= 1:
            raise UsageError("the spatially-varying and highlight probabilities must be in [0, 1]")
        if "bank" in kernels:
            load_kernel_bank(self.kernel_bank)
        if self.bits not in (0, 8, 16):
            raise UsageError(f"synthesis bits must be 0, 8 or 16, got {self.bits}")
        if self.margin > MAX_REACH:
            raise UsageError(
                f"synthesis kernels would reach {self.margin:.4g} px from their centre, more than "
                f"{MAX_REACH} (lower motion_length, defocus_radius or gaussian_sigma)"
            )

    @property
    def margin(self) -> int:
        """Pixels a kernel can reach from its centre: the context a crop needs around it."""
        return max(
            max(max(k.shape) for k in load_kernel_bank(self.kernel_bank)) // 2 + 1
            if "bank" in self.kernels
            else 0,
            math.ceil(self.motion_length[1] / 2) + 2 if "motion" in self.kernels else 0,
            math.ceil(self.defocus_radius[1]) + 1 if "defocus" in self.kernels else 0,
            math.ceil(3 * self.gaussian_sigma[1]) + 1 if "gaussian" in self.kernels else 0,
        )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The settings' names, in order."""
        return tuple(f.name for f in fields(cls))


def _range(settings: object, name: str) -> tuple[float, float]:
    value = getattr(settings, name)
    if len(value) != 2:
        raise UsageError(f"synthesis range {name} needs two numbers (low, high), got {list(value)}")
    return float(value[0]), float(value[1])


def checked_range(settings: object, name: str, most: float | None = None) -> tuple[float, float]:
    """The (low, high) range ``name`` of ``settings``, checked to be 0 ≤ low ≤ high (≤ ``most``)."""
    low, high = _range(settings, name)
    if not 0 <= low <= high <= (math.inf if most is None else most):
        bound = "" if most is None else f" ≤ {most:g}"
        raise UsageError(f"synthesis range {name} must be 0 ≤ low ≤ high{bound}, got {low:g}, {high:g}")
    return low, high


# -- kernels ----------------------------------------------------------------------------------------
@functools.cache
def load_kernel_bank(path: str) -> tuple[np.ndarray, ...]:
    """The 2-D kernels stored in an ``.npz`` (every array), each normalised to sum 1."""
    if not path:
        raise DeblurkitError("the 'bank' kernel kind needs a kernel bank: an .npz of 2-D kernels")
    try:
        with np.load(path) as archive:
            kernels = tuple(np.asarray(archive[name], np.float64) for name in archive.files)
    except (OSError, ValueError) as err:
        raise DeblurkitError(f"kernel bank {path} cannot be read ({err})") from None
    if not kernels or any(k.ndim != 2 or k.shape[0] != k.shape[1] or k.sum() <= 0 for k in kernels):
        raise DeblurkitError(f"kernel bank {path} must hold square 2-D kernels with a positive sum")
    return tuple((k / k.sum()).astype(np.float32) for k in kernels)


def _centre(kernel: np.ndarray) -> np.ndarray:
    """Normalise to sum 1 and shift (bilinearly) so the centre of mass is the centre pixel."""
    kernel = np.clip(kernel, 0, None)
    kernel = kernel / kernel.sum()
    size = kernel.shape[0]
    ys, xs = np.indices(kernel.shape)
    dy = (size - 1) / 2 - float((ys * kernel).sum())
    dx = (size - 1) / 2 - float((xs * kernel).sum())
    points_y, points_x = ys.ravel() + dy, xs.ravel() + dx
    return _splat(points_y, points_x, kernel.ravel(), size)


def _splat(ys: np.ndarray, xs: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly splat weighted points onto a size×size canvas, normalised to sum 1."""
    canvas = np.zeros((size, size), np.float64)
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = ys - y0, xs - x0
    for oy, ox, w in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = y0 + oy, x0 + ox
        inside = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
        np.add.at(canvas, (yy[inside], xx[inside]), (weights * w)[inside])
    return (canvas / canvas.sum()).astype(np.float32)


def _trajectory(rng: np.random.Generator, length: float, steps: int = 2000) -> np.ndarray:
    """A camera-shake trajectory (complex positions), Boracchi & Foi / DeblurGAN's random walk."""
    anxiety = 0.005 * rng.uniform()
    centripetal = 0.7 * rng.uniform()
    prob_big_shake = 0.2 * rng.uniform()
    gaussian_shake = 10 * rng.uniform()
    angle = rng.uniform(0, 2 * math.pi)
    unit = length / (steps - 1)
    velocity = complex(math.cos(angle), math.sin(angle)) * unit
    noise = rng.standard_normal((steps, 2))
    shakes = rng.uniform(size=steps)
    jerks = rng.uniform(size=steps)
    x = np.zeros(steps, np.complex128)
    for t in range(steps - 1):
        jerk = 0j
        if shakes[t] < prob_big_shake * anxiety:
            jerk = 2 * velocity * np.exp(1j * (math.pi + (jerks[t] - 0.5)))
        shake = gaussian_shake * complex(noise[t, 0], noise[t, 1]) - centripetal * x[t]
        velocity += jerk + anxiety * shake * unit
        velocity = velocity / abs(velocity) * unit
        x[t + 1] = x[t] + velocity
    return x


def motion_kernel(rng: np.random.Generator, length: float, *, exposure: float | None = None) -> np.ndarray:
    """A camera-shake kernel: a random trajectory of ``length`` pixels integrated over a random share
    (``exposure``, default uniform in [0.5, 1]) of the exposure, rasterised into an odd square."""
    if length <= 0:
        return np.ones((1, 1), np.float32)
    path = _trajectory(rng, float(length))
    share = rng.uniform(0.5, 1.0) if exposure is None else exposure
    path = path[: max(2, int(len(path) * share))]
    path = path - path.mean()
    size = 2 * math.ceil(np.abs(path).max()) + 3
    centre = (size - 1) / 2
    ys, xs = path.imag + centre, path.real + centre
    return _centre(_splat(ys, xs, np.ones(len(path)), size))


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Defocus: a disk of ``radius`` pixels, its edge anti-aliased by supersampling."""
    half = math.ceil(radius)
    size = 2 * half + 1
    offsets = (np.arange(size * supersample) + 0.5) / supersample - (size / 2)
    inside = (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2
    kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    if kernel.sum() == 0:
        kernel[half, half] = 1.0
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """An isotropic Gaussian of standard deviation ``sigma``, truncated at 3σ."""
    half = max(1, math.ceil(3 * sigma))
    axis = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(axis**2) / (2 * max(sigma, 1e-6) ** 2))
    kernel = np.outer(g, g)
    return (kernel / kernel.sum()).astype(np.float32)


def random_kernel(rng: np.random.Generator, settings: Degradation) -> tuple[np.ndarray, dict]:
    """One kernel of a kind drawn from ``settings.kernels``, and a description of it."""
    kind = settings.kernels[int(rng.integers(len(settings.kernels)))]
    if kind == "bank":
        bank = load_kernel_bank(settings.kernel_bank)
        index = int(rng.integers(len(bank)))
        kernel = np.rot90(bank[index], int(rng.integers(4)))
        return _centre(np.ascontiguousarray(kernel)), {"kind": kind, "index": index}
    if kind == "motion":
        length = rng.uniform(*settings.motion_length)
        return motion_kernel(rng, length), {"kind": kind, "length": round(float(length), 3)}
    if kind == "defocus":
        radius = rng.uniform(*settings.defocus_radius)
        return disk_kernel(radius), {"kind": kind, "radius": round(float(radius), 3)}
    sigma = rng.uniform(*settings.gaussian_sigma)
    return gaussian_kernel(sigma), {"kind": kind, "sigma": round(float(sigma), 3)}


# -- the pipeline ---------------------------------------------------------------------------------
def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """The inverse sRGB transfer curve (values in [0, 1])."""
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve (values in [0, 1])."""
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def blur_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve an H×W×C float image with a kernel (FFT, reflect-padded borders); same size out."""
    half_h, half_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    height, width = image.shape[:2]
    padded = np.pad(image, ((half_h, half_h), (half_w, half_w), (0, 0)), mode="symmetric")
    shape = padded.shape[:2]
    canvas = np.zeros(shape, np.float64)
    canvas[: kernel.shape[0], : kernel.shape[1]] = kernel
    canvas = np.roll(canvas, (-half_h, -half_w), axis=(0, 1))
    spectrum = np.fft.rfft2(canvas)[:, :, None]
    out = np.fft.irfft2(np.fft.rfft2(padded, axes=(0, 1)) * spectrum, s=shape, axes=(0, 1))
    return out[half_h : half_h + height, half_w : half_w + width].astype(np.float32)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    pixels = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(
        buffer, format="JPEG", quality=quality
    )
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32) / 255
    return decoded.reshape(image.shape)


def add_camera_noise(
    linear: np.ndarray, rng: np.random.Generator, noise: float, shot_noise: float
) -> tuple[np.ndarray, dict]:
    """Poisson-Gaussian sensor noise on a linear-light image: read noise up to ``noise`` and a shot
    gain up to ``shot_noise`` (variance = gain × signal), both drawn uniformly; clipped to [0, 1]."""
    read, gain = rng.uniform(0, noise), rng.uniform(0, shot_noise)
    sigma = np.sqrt(gain * np.clip(linear, 0, 1) + read**2)
    noisy = linear + sigma * rng.standard_normal(linear.shape).astype(np.float32)
    return np.clip(noisy, 0, 1).astype(np.float32), {
        "noise": round(float(read), 5),
        "shot_noise": round(float(gain), 6),
    }


def quantise_and_compress(
    image: np.ndarray, rng: np.random.Generator, bits: int, jpeg: float, quality: tuple[float, float]
) -> tuple[np.ndarray, dict]:
    """Quantise a display-referred image to ``bits`` (0: keep floats), then JPEG-compress it with
    probability ``jpeg`` at a quality drawn from ``quality``."""
    info: dict = {}
    if bits:
        top = float(2**bits - 1)
        image = np.rint(image * top) / top
    if rng.uniform() < jpeg:
        info["jpeg_quality"] = round(rng.uniform(*quality))
        image = _jpeg(image, info["jpeg_quality"])
    return image.astype(np.float32), info


def _boost_highlights(
    light: np.ndarray, rng: np.random.Generator, settings: Degradation
) -> tuple[np.ndarray, dict]:
    """Clipped lights get back a radiance above white (a random gain), so that blurring streaks them
    and the streaks clip, as saturated lights do in real shaken photos. Only pixels at the top of the
    range (linear level ≥ a threshold in [0.9, 0.98]) are boosted: what the sensor recorded below
    white stays as it was."""
    threshold = rng.uniform(0.9, 0.98)
    gain = rng.uniform(*settings.highlight_gain)
    level = light.max(axis=2, keepdims=True)
    boost = 1 + (gain - 1) * np.clip((level - threshold) / (1 - threshold), 0, 1)
    return light * boost.astype(np.float32), {"highlight_gain": round(float(gain), 3)}


def _grid_weights(height: int, width: int, cells: int) -> np.ndarray:
    """cells² smooth weight maps (bilinear hats on a cells×cells grid) that sum to 1 everywhere."""

    def hats(n: int) -> np.ndarray:
        position = np.linspace(0, cells - 1, n)
        return np.clip(1 - np.abs(position[None, :] - np.arange(cells)[:, None]), 0, 1)

    rows, cols = hats(height), hats(width)
    return (rows[:, None, :, None] * cols[None, :, None, :]).reshape(cells * cells, height, width)


def _blur(light: np.ndarray, rng: np.random.Generator, settings: Degradation) -> tuple[np.ndarray, dict]:
    """Blur with one random kernel, or (spatially varying) with a grid of them blended smoothly."""
    if not (settings.spatially_varying and rng.uniform() < settings.spatially_varying):
        kernel, info = random_kernel(rng, settings)
        return blur_image(light, kernel), info
    cells = int(rng.integers(2, 4))
    weights = _grid_weights(*light.shape[:2], cells)
    out = np.zeros(light.shape, np.float32)
    kinds = []
    for weight in weights:
        kernel, info = random_kernel(rng, settings)
        out += weight[:, :, None] * blur_image(light, kernel)
        kinds.append(info)
    return out, {"kind": "spatially varying", "grid": cells, "kernels": kinds}


def degrade(
    sharp: np.ndarray, rng: np.random.Generator, settings: Degradation = Degradation()
) -> tuple[np.ndarray, dict]:
    """A blurry version of an H×W×C float image in [0, 1] (sRGB), and what was done to it.

    Steps: (linear light) → brighter-than-white highlights with probability ``highlights`` → blur
    with a random kernel, or a smooth blend of a grid of kernels with probability
    ``spatially_varying`` → clip → Poisson-Gaussian noise → sRGB → quantisation → JPEG with
    probability ``jpeg``. The same generator state gives the same result.
    """
    light = srgb_to_linear(sharp) if settings.linear_light else np.clip(sharp, 0, 1).astype(np.float32)
    info: dict = {}
    if settings.highlights and rng.uniform() < settings.highlights:
        light, boosted = _boost_highlights(light, rng, settings)
        info.update(boosted)
    blurred, described = _blur(light, rng, settings)
    info = {**described, **info}
    blurred, noise = add_camera_noise(np.clip(blurred, 0, 1), rng, settings.noise, settings.shot_noise)
    info.update(noise)
    out = linear_to_srgb(blurred) if settings.linear_light else blurred
    out, compressed = quantise_and_compress(out, rng, settings.bits, settings.jpeg, settings.jpeg_quality)
    return out, {**info, **compressed}
