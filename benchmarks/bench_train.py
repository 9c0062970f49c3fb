"""Training throughput (samples/s) of ``deblurkit train``: the whole loop (data synthesis in the
DataLoader workers, forward, loss, backward, AdamW), not just the network.

Configurations: NAFNet narrow (CPU) or width 32/64 (GPU, GoPro configuration), each with the L1 loss
and with L1 + 0.1·local MAE (a ViT-B/16 with random weights in place of the MAE checkpoint: timing
does not depend on the weights), and on a GPU in bf16 and fp32. Each run trains ``--steps`` steps on
scikit-image's photographs with ``--synthesize``; the figure is the median of the logged samples/s
after the first ``--warmup`` steps.

    python benchmarks/bench_train.py                  # CPU: narrow NAFNet, 128² crops, batch 4
    python benchmarks/bench_train.py --quick          # a few steps, to check it runs
    python benchmarks/bench_train.py --device cuda    # GPU: width 32 and 64, 256² crops, batch 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from deblurkit.synthesis.pairs import write_sample_photos
from deblurkit.training import TrainConfig, train

NARROW = {
    "img_channel": 3,
    "width": 16,
    "middle_blk_num": 1,
    "enc_blk_nums": [1, 1, 1],
    "dec_blk_nums": [1, 1, 1],
}
GOPRO = {"img_channel": 3, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 28], "dec_blk_nums": [1, 1, 1, 1]}


def _random_vit_b(folder: Path) -> Path:
    """ViT-B/16 weights with random values (the shapes of the MAE checkpoint)."""
    path = folder / "vit-b-random.safetensors"
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    return path


def _samples_per_s(run: Path, warmup: int) -> float:
    records = [json.loads(line) for line in (run / "train" / "log.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if r["kind"] == "train" and r["step"] > warmup]
    return statistics.median(rates)


def _configs(device: str, quick: bool) -> list[tuple[str, dict, str]]:
    if device == "cpu":
        nets = [("NAFNet width 16 (narrow)", NARROW)]
        precisions = ["fp32"]
    else:
        nets = [("NAFNet width 32", {**GOPRO, "width": 32}), ("NAFNet width 64", {**GOPRO, "width": 64})]
        precisions = ["bf16", "fp32"]
    if quick:
        nets = nets[:1]
    return [(f"{name}, {precision}", net, precision) for name, net in nets for precision in precisions]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--crop", type=int, default=0, help="default: 128 on CPU, 256 on a GPU")
    parser.add_argument("--batch-size", type=int, default=0, help="default: 4 on CPU, 8 on a GPU")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cpu = args.device == "cpu"
    steps, warmup = (6, 2) if args.quick else (args.steps, args.warmup)
    crop = args.crop or (128 if cpu else 256)
    batch = args.batch_size or (4 if cpu else 8)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photos = folder / "photos"
        write_sample_photos(photos)
        encoder = _random_vit_b(folder)
        print(
            f"device {args.device}, crop {crop}, batch {batch}, {steps} steps ({warmup} warm-up), "
            f"{args.workers} workers, {torch.get_num_threads()} threads"
        )
        print(f"{'configuration':<32} {'L1':>12} {'L1 + MAE':>12}  samples/s")
        for label, net, precision in _configs(args.device, args.quick):
            rates = []
            for loss in ("l1", "l1 + 0.1*mae_local"):
                run = folder / f"run-{len(list(folder.iterdir()))}"
                config = TrainConfig(
                    architecture="nafnet", arch_config=net, data=str(photos), synthesize=True, crop=crop,
                    batch_size=batch, workers=args.workers, steps=steps, loss=loss, encoder="mae-vit-base",
                    encoder_weights=str(encoder), log_every=1, val_every=0, save_every=steps,
                    precision=precision, device=args.device, channels_last=not cpu, output=str(run),
                )  # fmt: skip
                train(config)
                rates.append(_samples_per_s(run, warmup))
            print(f"{label:<32} {rates[0]:>12.2f} {rates[1]:>12.2f}")


if __name__ == "__main__":
    main()
