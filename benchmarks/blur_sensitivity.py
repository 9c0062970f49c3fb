"""The property the MAE perceptual loss rests on: blur moves MAE features more than noise or a shift.

For a sharp image I and a degraded copy D at the same PSNR, compare the encoder's feature distance
``Σ_{l=1..6} mean |φ_l(D) − φ_l(I)|`` (the local MAE loss without λ, all tokens kept) for

* D = Gaussian blur of strength σ,
* D = I + Gaussian noise scaled to exactly the blur's MSE,
* D = I translated by a sub-pixel amount t (bilinear), t found by bisection to match the blur's PSNR.

With a pre-trained MAE encoder the blur distance should grow with σ faster than the noise and shift
distances at equal PSNR (their ratio grows with σ). This needs the real weights (``mae-vit-base`` from
the Hub, or ``--weights FILE``). Offline, or with ``--random``, a randomly initialised ViT-B/16 is
used and the script says loudly that its numbers mean nothing.

    python benchmarks/blur_sensitivity.py                       # mae-vit-base from the Hub
    python benchmarks/blur_sensitivity.py --weights mae_pretrain_vit_base.pth
    python benchmarks/blur_sensitivity.py --image photo.png --encoder dino-vit-base
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch
from torch.nn import functional as F

from deblurkit.errors import DeblurkitError
from deblurkit.losses.encoders import ViTEncoder, load_encoder

MEANINGLESS = (
    "WARNING: the encoder has RANDOM weights; the distances below say nothing about MAE features "
    "and the verdict is MEANINGLESS. Run where the Hub is reachable or pass --weights."
)


def load_image(path: str | None, size: int) -> torch.Tensor:
    """A 1×3×size×size image in [0, 1]: the given file (centre crop), or scikit-image's astronaut."""
    if path:
        from PIL import Image

        array = np.asarray(Image.open(path).convert("RGB"))
    else:
        from skimage import data

        array = data.astronaut()
    image = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    height, width = image.shape[-2:]
    if min(height, width) < size + 16:
        scale = (size + 16) / min(height, width)
        image = F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    return image


def centre_crop(image: torch.Tensor, size: int, dx: float = 0.0) -> torch.Tensor:
    """The centre size×size crop, its window moved right by ``dx`` pixels (bilinear for fractions)."""
    height, width = image.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    whole = math.floor(dx)
    frac = dx - whole
    a = image[..., top : top + size, left + whole : left + whole + size]
    if frac == 0:
        return a
    b = image[..., top : top + size, left + whole + 1 : left + whole + 1 + size]
    return (1 - frac) * a + frac * b


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a, b)))


def distance(encoder: ViTEncoder, a: torch.Tensor, b: torch.Tensor) -> float:
    with torch.no_grad():
        fa, fb = encoder(a), encoder(b)
    return float(sum(F.l1_loss(x, y) for x, y in zip(fa, fb, strict=True)))


def shift_for_psnr(image: torch.Tensor, sharp: torch.Tensor, size: int, target: float) -> float | None:
    """The sub-pixel shift whose PSNR equals ``target`` (bisection), or None when out of reach."""
    low, high = 0.0, 8.0
    if psnr(centre_crop(image, size, high), sharp) > target:
        return None
    for _ in range(40):
        mid = (low + high) / 2
        if psnr(centre_crop(image, size, mid), sharp) > target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def random_encoder() -> ViTEncoder:
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    return ViTEncoder(vit, name="random ViT-B/16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="mae-vit-base", help="zoo encoder name")
    parser.add_argument("--weights", help="local weights file (skips the Hub)")
    parser.add_argument("--image", help="a sharp photo (default: scikit-image's astronaut)")
    parser.add_argument("--size", type=int, default=224, help="crop side, a multiple of the patch size")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--random", action="store_true", help="use a random encoder (meaningless; a dry run)")
    args = parser.parse_args()

    meaningful = not args.random
    if args.random:
        encoder = random_encoder()
    else:
        try:
            encoder = load_encoder(args.encoder, weights=args.weights)
        except DeblurkitError as err:
            print(f"cannot load {args.encoder!r}: {err}", file=sys.stderr)
            print("falling back to a random encoder", file=sys.stderr)
            encoder, meaningful = random_encoder(), False
    if not meaningful:
        print(MEANINGLESS)

    image = load_image(args.image, args.size)
    sharp = centre_crop(image, args.size)
    blurred_whole = {sigma: gaussian_blur(image, sigma) for sigma in args.sigmas}
    generator = torch.Generator().manual_seed(0)
    unit_noise = torch.randn(sharp.shape, generator=generator)

    print(f"encoder: {encoder.name}; feature distance Σ_l mean|φ_l(D) − φ_l(I)|, blocks 1-6, all tokens")
    print(
        f"{'sigma':>6s} {'PSNR dB':>8s} {'d_blur':>9s} {'d_noise':>9s} {'d_shift':>9s} {'shift px':>8s} "
        f"{'blur/noise':>10s} {'blur/shift':>10s}"
    )
    rows = []
    for sigma in args.sigmas:
        blurred = centre_crop(blurred_whole[sigma], args.size)
        level = psnr(blurred, sharp)
        mse = F.mse_loss(blurred, sharp)
        noisy = sharp + unit_noise * torch.sqrt(mse / unit_noise.pow(2).mean())
        shift = shift_for_psnr(image, sharp, args.size, level)
        d_blur = distance(encoder, blurred, sharp)
        d_noise = distance(encoder, noisy, sharp)
        d_shift = (
            distance(encoder, centre_crop(image, args.size, shift), sharp) if shift is not None else math.nan
        )
        rows.append((sigma, d_blur / d_noise, d_blur / d_shift))
        shift_text = f"{shift:8.3f}" if shift is not None else "     n/a"
        print(
            f"{sigma:6.2f} {level:8.2f} {d_blur:9.4f} {d_noise:9.4f} {d_shift:9.4f} {shift_text} "
            f"{d_blur / d_noise:10.3f} {d_blur / d_shift:10.3f}"
        )

    def grows(values: list[float]) -> bool:
        finite = [v for v in values if math.isfinite(v)]
        return len(finite) >= 2 and finite[-1] > finite[0]

    vs_noise = grows([r[1] for r in rows])
    vs_shift = grows([r[2] for r in rows])
    print(
        f"blur distance grows faster than noise distance at equal PSNR: {'yes' if vs_noise else 'no'}; "
        f"faster than shift distance: {'yes' if vs_shift else 'no'}"
    )
    if not meaningful:
        print(MEANINGLESS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
