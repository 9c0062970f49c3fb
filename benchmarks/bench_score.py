"""Images/s of ``score_pairs`` (psnr + ssim, decoding included) against scikit-image on the same pairs.

Makes N pairs of 1280×720 PNGs from scikit-image's bundled photographs (tiled, blurred, noised) in
a temporary folder, then times deblurkit's library call against ``skimage.io.imread`` +
``peak_signal_noise_ratio`` + ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` (BasicSR's SSIM), and reports the largest deviations.

    python benchmarks/bench_score.py [--pairs 100] [--workers N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data, io
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deblurkit.evaluation.score import Pair, score_pairs

WIDTH, HEIGHT = 1280, 720


def make_pairs(folder: Path, count: int) -> list[Pair]:
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(count):
        photo = photos[i % len(photos)]
        reps = (-(-HEIGHT // photo.shape[0]), -(-WIDTH // photo.shape[1]), 1)
        sharp = np.roll(np.tile(photo, reps), shift=(7 * i, 13 * i), axis=(0, 1))[:HEIGHT, :WIDTH]
        sigma = 0.6 + 0.2 * (i % 8)
        blurred = ndimage.gaussian_filter(sharp.astype(np.float64), (sigma, sigma, 0))
        degraded = np.clip(blurred + rng.normal(0, 3.0, sharp.shape), 0, 255).round().astype(np.uint8)
        pair = Pair(folder / f"restored_{i:03d}.png", folder / f"sharp_{i:03d}.png")
        Image.fromarray(degraded).save(pair.restored, compress_level=1)
        Image.fromarray(sharp).save(pair.reference, compress_level=1)
        pairs.append(pair)
    return pairs


def skimage_scores(pairs: list[Pair]) -> list[tuple[float, float]]:
    scores = []
    for pair in pairs:
        restored, reference = io.imread(pair.restored), io.imread(pair.reference)
        psnr = peak_signal_noise_ratio(reference, restored)
        ssim = structural_similarity(
            restored,
            reference,
            channel_axis=-1,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        scores.append((psnr, ssim))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = make_pairs(Path(tmp), args.pairs)
        score_pairs(pairs[:2], "psnr,ssim", device="cpu", workers=args.workers)  # warm-up
        start = time.perf_counter()
        ours = score_pairs(pairs, "psnr,ssim", device="cpu", workers=args.workers)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        reference = skimage_scores(pairs)
        ref_s = time.perf_counter() - start
    psnr_dev = max(abs(p.values["psnr"] - r[0]) for p, r in zip(ours.pairs, reference, strict=True))
    ssim_dev = max(abs(p.values["ssim"] - r[1]) for p, r in zip(ours.pairs, reference, strict=True))
    print(f"pairs: {len(pairs)} of {WIDTH}×{HEIGHT} RGB PNG, metrics psnr+ssim, decoding included")
    print(f"deblurkit score_pairs: {len(pairs) / ours_s:8.2f} images/s ({ours_s:.2f} s)")
    print(f"scikit-image:          {len(pairs) / ref_s:8.2f} images/s ({ref_s:.2f} s)")
    print(f"speed-up: {ref_s / ours_s:.2f}×")
    print(f"max |Δ psnr| = {psnr_dev:.2e} (limit 1e-6), max |Δ ssim| = {ssim_dev:.2e} (limit 1e-4)")
    if psnr_dev > 1e-6 or ssim_dev > 1e-4:
        raise SystemExit("values differ from scikit-image beyond the limits")


if __name__ == "__main__":
    main()
