"""Forward time and peak memory of each zoo architecture at 256×256 and 1280×720 (random weights).

Each (model, size) runs in a fresh subprocess so its peak resident memory is its own. Times are the
best of ``--repeat`` inference-mode forwards after one warm-up, through the full inference
procedure (padding, TLC, crop). Usage::

    python benchmarks/bench_archs.py                      # every deblurring card, CPU
    python benchmarks/bench_archs.py --models nafnet-gopro-width32 --sizes 256x256 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

DEFAULT_MODELS = (
    "nafnet-gopro-width32",
    "nafnet-gopro-width64",
    "restormer-motion",
    "uformer-b-gopro",
    "maxim-gopro",
    "maxim-s1-fast",
)
DEFAULT_SIZES = ("256x256", "1280x720")


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(model_name: str, size: str, device: str, repeat: int, threads: int) -> dict:
    """One measurement, in this process."""
    import torch

    from deblurkit.archs import get_architecture
    from deblurkit.zoo.cards import get_entry
    from deblurkit.zoo.models import build_network
    from deblurkit.zoo.restorer import Restorer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    entry = get_entry(model_name)
    network = build_network(entry.architecture, entry.config)
    working = {k: entry.inference[k] for k in ("work_pixels", "min_work_scale") if k in entry.inference}
    model = Restorer(network, get_architecture(entry.architecture), entry.config, **working).eval().to(device)
    width, height = (int(v) for v in size.split("x"))
    x = torch.rand(1, 3, height, width, device=device)
    before = _rss_mib()
    times = []
    with torch.inference_mode():
        for _ in range(repeat + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "model": model_name,
        "size": size,
        "device": device,
        "seconds": min(times[1:]),
        "megapixels_per_s": width * height / 1e6 / min(times[1:]),
        "peak_rss_mib": round(peak),
        "forward_extra_mib": round(peak - before),
        "parameters_m": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
    }
    if device.startswith("cuda"):
        result["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.models[0], args.sizes[0], args.device, args.repeat, args.threads)))
        return
    header = ("size", "params(M)", "seconds", "MP/s", "peak RSS", "fwd +MiB")
    print(f"{'model':24} " + " ".join(f"{h:>9}" for h in header), flush=True)
    for model in args.models:
        for size in args.sizes:
            command = [sys.executable, __file__, "--one", "--models", model, "--sizes", size]
            command += ["--device", args.device, "--repeat", str(args.repeat), "--threads", str(args.threads)]
            run = subprocess.run(command, capture_output=True, text=True, check=False)
            if run.returncode != 0:
                print(f"{model:24} {size:>10} failed: {run.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(run.stdout)
            cells = (size, r["parameters_m"], f"{r['seconds']:.3f}", f"{r['megapixels_per_s']:.3f}")
            cells += (f"{r['peak_rss_mib']}M", f"{r['forward_extra_mib']}M")
            print(f"{model:24} " + " ".join(f"{c:>9}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
