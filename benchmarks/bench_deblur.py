"""Throughput and memory of the deblurring engine (random weights, synthetic photo-like images).

Three measurements, each (model, setting) in a fresh subprocess so its peak resident memory is its own:

* ``throughput``: megapixels/s of every zoo architecture at 1280×720 through ``Deblurrer`` (auto tiling,
  as ``deblurkit deblur`` runs it); on CUDA also bf16 and ``torch.compile``. ``--official`` adds
  NAFNet-width32 TLC through the engine against the official forward of ``bench_nafnet.py``, runs
  alternated in one process (the fair comparison on a shared machine).
* ``tiling``: one model at 1280×720 whole, with the default (auto) tiling and with small explicit
  tiles (batched through the network): seconds and the ratio to the whole image.
* ``memory``: NAFNet-width32 at 3840×2160, auto tiling against the whole image: peak RSS (or CUDA
  peak), megapixels/s, and the PSNR between the two outputs.

Usage::

    python benchmarks/bench_deblur.py throughput [--device cuda] [--official]
    python benchmarks/bench_deblur.py tiling [--model maxim-s1-fast] [--tiles 256 512]
    python benchmarks/bench_deblur.py memory [--size 3840x2160]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARCH_MODELS = (
    "nafnet-gopro-width32",
    "nafnet-gopro-width64",
    "restormer-motion",
    "uformer-b-gopro",
    "maxim-gopro",
)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like uint8 RGB test image: gradients, soft blobs and a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width, y / height, 0.5 + 0.25 * np.sin((x + y) / 97.0)], axis=2)
    for _ in range(24):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(20, 200)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[:, :, None]
        image += 0.3 * blob * rng.uniform(-1, 1, 3).astype(np.float32)
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)


def randomize(model, seed: int = 0) -> None:
    """Random weights with the residual scales (zero at init) small but non-zero, so blocks act."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith(("beta", "gamma")):
                param.copy_(0.1 * noise)
            elif "norm" in name:
                param.copy_(1 + 0.1 * noise)
            else:
                param.copy_(param.std().clamp_min(1e-3) * noise)


def _model(name: str, device: str):
    import torch

    from deblurkit.archs import get_architecture
    from deblurkit.zoo.cards import get_entry
    from deblurkit.zoo.models import build_network
    from deblurkit.zoo.restorer import Restorer

    entry = get_entry(name)
    torch.manual_seed(0)  # randomize() scales by each tensor's init std: seed it, so every process agrees
    network = build_network(entry.architecture, entry.config)
    randomize(network)
    restorer = Restorer(network, get_architecture(entry.architecture), entry.config, name=name)
    return restorer.eval().requires_grad_(False).to(torch.device(device))


def _peak_mib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(args: argparse.Namespace) -> dict:
    """One measurement in this process."""
    import torch

    from deblurkit.inference.deblurrer import Deblurrer

    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    image = photo(height, width)
    model = _model(args.model, args.device)
    tile = "auto" if args.tile == "auto" else int(args.tile)
    deblurrer = Deblurrer(model, tile=tile, precision=args.precision, compile=args.compile)
    if args.warmup:
        deblurrer(image)
    _sync(args.device)
    start = time.perf_counter()
    result = deblurrer(image)
    _sync(args.device)
    seconds = time.perf_counter() - start
    if args.save:
        np.save(args.save, result.pixels)
    return {
        "model": args.model,
        "size": args.size,
        "device": args.device,
        "precision": result.precision,
        "compile": args.compile,
        "tile": "whole" if result.tile is None else "×".join(map(str, result.tile)),
        "seconds": seconds,
        "megapixels_per_s": width * height / 1e6 / seconds,
        "peak_mib": round(_peak_mib(args.device)),
    }


def measure_official(args: argparse.Namespace) -> dict:
    """NAFNet-width32 TLC through the engine against the official forward (``bench_nafnet.py``'s
    reference, same weights), alternated in one process so both see the same machine load."""
    import torch
    from bench_nafnet import GOPRO_WIDTH32, ReferenceNAFNetLocal  # the script's own folder

    from deblurkit.inference.deblurrer import Deblurrer

    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    ours = _model("nafnet-gopro-width32", args.device)
    reference = ReferenceNAFNetLocal(**GOPRO_WIDTH32).eval().to(args.device)
    reference.load_state_dict(ours.network.state_dict(), strict=True)
    image = photo(height, width)
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(args.device)
    deblurrer = Deblurrer(ours, tile="auto")
    deblurrer.prepare()
    times: dict[str, list[float]] = {"engine": [], "official": []}
    for _ in range(args.repeat):
        for label, run in (("engine", lambda: deblurrer(image)), ("official", lambda: reference(tensor))):
            _sync(args.device)
            start = time.perf_counter()
            with torch.inference_mode():
                run()
            _sync(args.device)
            times[label].append(time.perf_counter() - start)
    engine, official = min(times["engine"]), min(times["official"])
    return {
        "model": "nafnet-gopro-width32: engine vs official",
        "size": args.size,
        "device": args.device,
        "precision": "fp32",
        "compile": False,
        "tile": "whole" if deblurrer(image[:16, :16]).tile is None else "auto",
        "seconds": engine,
        "megapixels_per_s": width * height / 1e6 / engine,
        "peak_mib": round(_peak_mib(args.device)),
        "official_seconds": official,
    }


def _spawn(args: argparse.Namespace, **overrides) -> dict:
    settings = {**vars(args), **overrides}
    command = [sys.executable, __file__, "one", "--model", settings["model"], "--size", settings["size"]]
    command += [
        "--device",
        settings["device"],
        "--precision",
        settings["precision"],
        "--tile",
        str(settings["tile"]),
    ]
    command += ["--threads", str(settings["threads"]), "--repeat", str(settings["repeat"])]
    for flag in ("compile", "warmup", "official"):
        if settings.get(flag):
            command.append(f"--{flag}")
    if settings.get("save"):
        command += ["--save", settings["save"]]
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        return {"model": settings["model"], "error": (run.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(run.stdout)


def _row(r: dict) -> str:
    if "error" in r:
        return f"{r['model']:42} failed: {r['error']}"
    name = r["model"] + (" +compile" if r["compile"] else "")
    return (
        f"{name:42} {r['device']:>6} {r['precision']:>5} {r['tile']:>10} {r['seconds']:>8.2f} "
        f"{r['megapixels_per_s']:>7.3f} {r['peak_mib']:>8}M"
    )


HEADER = f"{'model':42} {'device':>6} {'prec':>5} {'tile':>10} {'seconds':>8} {'MP/s':>7} {'peak':>9}"


def throughput(args: argparse.Namespace) -> None:
    print(f"throughput at {args.size}, {args.threads} threads\n{HEADER}", flush=True)
    settings = [{"precision": "fp32"}]
    if args.device.startswith("cuda"):
        settings += [{"precision": "bf16"}, {"precision": "bf16", "compile": True}]
    for model in args.models:
        for setting in settings:
            print(_row(_spawn(args, model=model, official=False, **setting)), flush=True)
    if args.official:
        result = _spawn(args, model="nafnet-gopro-width32", official=True)
        if "error" in result:
            print(_row(result))
            return
        speed_up = result["official_seconds"] / result["seconds"]
        print(
            f"NAFNet-width32 TLC at {args.size}, best of {args.repeat} alternated runs: engine "
            f"{result['seconds']:.2f} s, official forward {result['official_seconds']:.2f} s "
            f"({100 * (1 - 1 / speed_up):.0f}% less time, {speed_up:.2f}×)"
        )


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def memory(args: argparse.Namespace) -> None:
    print(f"{args.model} at {args.size}, {args.threads} threads\n{HEADER}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        runs = {}
        for label, tile in (("auto", "auto"), ("whole", "0")):
            save = str(Path(folder) / f"{label}.npy")
            runs[label] = _spawn(args, tile=tile, save=save)
            print(_row(runs[label]), flush=True)
        if all("error" not in r for r in runs.values()):
            auto, whole = (np.load(Path(folder) / f"{label}.npy") for label in ("auto", "whole"))
            ratio = runs["auto"]["megapixels_per_s"] / runs["whole"]["megapixels_per_s"]
            print(f"tiled / whole-image throughput: {ratio:.2f}")
            print(f"peak memory, whole / tiled: {runs['whole']['peak_mib'] / runs['auto']['peak_mib']:.1f}×")
            print(f"PSNR tiled vs whole image: {_psnr(auto, whole):.1f} dB")
            width, height = (int(v) for v in args.size.split("x"))
            change = np.abs(whole.astype(np.int16) - photo(height, width)).mean()
            print(f"(mean |output - input| of the random-weight network: {change:.1f} / 255)")


def tiling(args: argparse.Namespace) -> None:
    print(f"{args.model} at {args.size}, {args.threads} threads\n{HEADER}", flush=True)
    whole = _spawn(args, tile="0")
    print(_row(whole), flush=True)
    for tile in ("auto", *map(str, args.tiles)):
        run = _spawn(args, tile=tile)
        failed = "error" in run or "error" in whole
        print(_row(run) + ("" if failed else f"  {run['seconds'] / whole['seconds']:.2f}× whole"), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["throughput", "tiling", "memory", "one"])
    parser.add_argument("--models", nargs="*", default=ARCH_MODELS, help="none: only --official")
    parser.add_argument("--model", default="nafnet-gopro-width32")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT (1280x720 or 3840x2160 by default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--tile", default="auto")
    parser.add_argument("--tiles", type=int, nargs="*", default=[256, 512], help="tiling: explicit sides")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warmup", action="store_true", help="time a second run (first run warms up)")
    parser.add_argument("--official", action="store_true")
    parser.add_argument("--repeat", type=int, default=2, help="alternated runs for --official")
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.size = args.size or ("3840x2160" if args.what == "memory" else "1280x720")
    if args.what == "one":
        print(json.dumps(measure_official(args) if args.official else measure(args)))
    elif args.what == "throughput":
        throughput(args)
    elif args.what == "tiling":
        tiling(args)
    else:
        memory(args)


if __name__ == "__main__":
    main()
