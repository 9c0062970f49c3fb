"""Training-step cost of the perceptual losses, as ratios to an L1-only step measured in the same run.

A NAFNet (default: width 32, GoPro configuration enc [1,1,1,28], middle 1, dec [1,1,1,1]) is trained
with AdamW on random 256×256 batches of 2 with:

    l1 | l1 + 0.1*mae_local (r=0.5) | l1 + 0.1*mae_local(ratio=0) | l1 + 1e-4*mae_global (r=0.5)
    | l1 + 1e-4*mae_global(ratio=0) | l1 + vgg (relu1_2..relu5_4) | l1 + 1e-4*vgg_pool5

The encoder is a ViT-B/16 with random weights (timing does not depend on the weights), VGG19 likewise.
Steps of the configurations are interleaved (round robin) so that drift in machine load hits all of
them alike. On CUDA the ratios use the median wall time; on CPU the least process CPU time of the
timed steps (robust to other processes sharing the cores, especially with ``--threads 1``: OpenMP
threads burn CPU spinning while a partner thread is descheduled). Median wall time is printed too.
Memory: on CUDA the peak allocated memory of a step; on CPU the activation memory autograd
keeps for the backward pass (bytes of saved tensors, parameters excluded), the dominant part of the
training-step footprint.

    python benchmarks/bench_losses.py                 # NAFNet-width32, 256², batch 2 (slow on CPU)
    python benchmarks/bench_losses.py --threads 1     # on a shared/busy CPU machine
    python benchmarks/bench_losses.py --quick         # a narrow NAFNet, to check it runs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from deblurkit.encoders import ViTEncoder
from deblurkit.losses import VGGFeatures, build_loss

CONFIGS = (
    ("L1", "l1"),
    ("L1 + local MAE (r=0.5)", "l1 + 0.1*mae_local"),
    ("L1 + local MAE (r=0)", "l1 + 0.1*mae_local(ratio=0)"),
    ("L1 + global MAE (r=0.5)", "l1 + 1e-4*mae_global"),
    ("L1 + global MAE (r=0)", "l1 + 1e-4*mae_global(ratio=0)"),
    ("L1 + VGG19 relu1_2..5_4", "l1 + vgg"),
    ("L1 + VGG19 pool5 (official)", "l1 + 1e-4*vgg_pool5"),
)


class _SmallNet(nn.Module):
    """Fallback when deblurkit's NAFNet is not available: a residual conv net."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.GELU(),
            *[m for _ in range(4) for m in (nn.Conv2d(width, width, 3, padding=1), nn.GELU())],
            nn.Conv2d(width, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build_net(args: argparse.Namespace) -> tuple[nn.Module, str]:
    try:
        from deblurkit.archs import get_architecture, nafnet  # noqa: F401  (nafnet registers itself)

        try:
            arch = get_architecture("nafnet")
        except (ImportError, KeyError):
            from deblurkit.archs import ARCHITECTURES

            arch = ARCHITECTURES["nafnet"]
        net = arch.build(
            width=args.width,
            enc_blk_nums=args.enc_blocks,
            middle_blk_num=1,
            dec_blk_nums=[1, 1, 1, 1],
        )
        return net, f"NAFNet width {args.width}, enc {args.enc_blocks}, middle 1, dec [1,1,1,1]"
    except Exception as err:  # the NAFNet module may be missing or broken while it is being written
        return _SmallNet(args.width), f"fallback conv net width {args.width} (NAFNet unavailable: {err})"


def vit_b16(seed: int = 0) -> ViTEncoder:
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    return ViTEncoder(vit, name="vit-b/16 (random weights)")


class SavedBytes:
    """Counts the bytes of tensors autograd saves for backward (distinct storages, parameters excluded)."""

    def __init__(self, exclude: list[torch.Tensor]) -> None:
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.seen: set[int] = set()
        self.bytes = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.exclude and ptr not in self.seen:
            self.seen.add(ptr)
            self.bytes += storage.nbytes()
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor


def make_step(
    net: nn.Module, loss: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], float]:
    def step() -> float:
        opt.zero_grad(set_to_none=True)
        value = loss(net(x), y)
        value.backward()
        opt.step()
        return float(value.detach())

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--enc-blocks", type=int, nargs=4, default=[1, 1, 1, 28])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument(
        "--warmup", type=int, default=0, help="untimed rounds (the memory round warms up too)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default). With other processes on the cores, 1 thread makes "
        "CPU time a stable measure (OpenMP threads spin while waiting for a descheduled partner)",
    )
    parser.add_argument("--only", nargs="*", help="labels or specs to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="narrow NAFNet (width 8, enc [1,1,1,2]), 1 step")
    args = parser.parse_args()
    if args.quick:
        args.width, args.enc_blocks, args.steps, args.warmup = 8, [1, 1, 1, 2], 1, 0

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, net_desc = build_net(args)
    net = net.to(device).train()
    encoder = vit_b16().to(device)
    vgg = VGGFeatures.random().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    y = torch.rand(args.batch, 3, args.size, args.size, device=device)

    configs = [c for c in CONFIGS if not args.only or c[0] in args.only or c[1] in args.only]
    if not any(spec == "l1" for _, spec in configs):
        configs.insert(0, CONFIGS[0])
    steps = {
        label: make_step(net, build_loss(spec, encoder=encoder, vgg=vgg), opt, x, y)
        for label, spec in configs
    }

    print(f"network: {net_desc}")
    print(
        f"input: batch {args.batch}, {args.size}×{args.size}, device {device}, "
        f"threads {torch.get_num_threads()}"
    )
    print("encoder: ViT-B/16 (random weights), blocks 1-6; VGG19 (random weights)")
    sys.stdout.flush()

    # memory, one step each
    memory: dict[str, float] = {}
    params = [*net.parameters(), *encoder.parameters(), *vgg.parameters()]
    for label, step in steps.items():
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            memory[label] = torch.cuda.max_memory_allocated() / 2**20
        else:
            counter = SavedBytes(params)
            with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
                step()
            memory[label] = counter.bytes / 2**20

    for _ in range(args.warmup):
        for step in steps.values():
            step()
    wall: dict[str, list[float]] = {label: [] for label in steps}
    cpu: dict[str, list[float]] = {label: [] for label in steps}
    for i in range(args.steps):
        for label, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[label].append(time.perf_counter() - t0)
            cpu[label].append(time.process_time() - c0)
        print(f"  round {i + 1}/{args.steps} done", file=sys.stderr, flush=True)

    # CUDA: median wall time; CPU: the least process CPU time of the timed steps (least disturbed)
    def typical(label: str) -> float:
        return statistics.median(wall[label]) if device.type == "cuda" else min(cpu[label])

    base = typical("L1")
    base_mem = memory["L1"]
    mem_kind = "peak allocated" if device.type == "cuda" else "saved for backward"
    clock = "wall" if device.type == "cuda" else "process CPU"
    print("\n(wall s: median wall time; cpu s: least process CPU time)")
    print(
        f"\n{'configuration':30s} {'wall s':>8s} {'cpu s':>8s} {'ratio':>7s} {'overhead':>9s} "
        f"{mem_kind + ' MiB':>24s}"
    )
    for label in steps:
        w, c = statistics.median(wall[label]), statistics.median(cpu[label])
        ratio = typical(label) / base
        mem = memory[label]
        mem_text = f"{mem:9.1f} (+{mem - base_mem:7.1f})"
        print(f"{label:30s} {w:8.2f} {c:8.2f} {ratio:7.3f} {100 * (ratio - 1):+8.1f}% {mem_text:>24s}")
    stat = "median" if device.type == "cuda" else "least"
    print(
        f"\nratios: {stat} {clock} time per step / the L1 step's, {args.steps} timed steps each, interleaved"
    )
    local_r5, local_r0 = "L1 + local MAE (r=0.5)", "L1 + local MAE (r=0)"
    if local_r5 in steps and local_r0 in steps:
        extra5 = typical(local_r5) - base
        extra0 = typical(local_r0) - base
        print(
            f"token sampling: local MAE overhead r=0.5 {extra5:.2f} s vs r=0 {extra0:.2f} s "
            f"({extra5 / extra0 if extra0 > 0 else float('nan'):.2f}× the time; "
            f"memory +{memory[local_r5] - base_mem:.0f} vs "
            f"+{memory[local_r0] - base_mem:.0f} MiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
