"""Training-step cost of the perceptual losses, as ratios to an L1-only step measured in the same run.

A NAFNet (default: width 32, GoPro configuration enc [1,1,1,28], middle 1, dec [1,1,1,1]) is trained
with AdamW on random 256×256 batches of 2 with:

    l1 | l1 + 0.1*mae_local (r=0.5) | the same loss as the official code computes it
    | l1 + 0.1*mae_local(ratio=0) | l1 + 1e-4*mae_global (r=0.5) | the official code's global loss
    | l1 + 1e-4*mae_global(ratio=0) | l1 + vgg (relu1_2..relu5_4) | l1 + 1e-4*vgg_pool5

The official rows run ``tests/official_mae.py``, a step-by-step transcription of the official loss
(erfect2020/TransformerPerceptualLoss: both images through the first six blocks of timm 0.3.2's
explicit-attention blocks, the global loss as a Python loop over token positions), on the same
weights. ``--network official`` trains the official NAFNet instead of deblurkit's (the reference of
``bench_nafnet.py``, with the official LayerNormFunction backward), so that the official loss is
also measured against the official L1 step. The encoder is a ViT-B/16 with random weights (timing
does not depend on the weights), VGG19 likewise.
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
    python benchmarks/bench_losses.py --network official --only "L1 + local MAE (r=0.5)" \
        "L1 + local MAE, official code"                # the official pair, on the official NAFNet
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from bench_nafnet import ReferenceNAFNet
from torch import nn

from deblurkit.archs import get_architecture
from deblurkit.losses import VGGFeatures, build_loss
from deblurkit.losses.encoders import ViTEncoder


def _tests_module(name: str) -> types.ModuleType:
    """A helper module of the test suite (``tests/<name>.py``: reference code, not part of deblurkit)."""
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[1] / "tests" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_official_mae = _tests_module("official_mae")
OfficialLoss, OfficialMAEEncoder = _official_mae.OfficialLoss, _official_mae.OfficialMAEEncoder

# label, loss: a deblurkit loss spec, or "official:local" / "official:global" for the official code
CONFIGS = (
    ("L1", "l1"),
    ("L1 + local MAE (r=0.5)", "l1 + 0.1*mae_local"),
    ("L1 + local MAE, official code", "official:local"),
    ("L1 + local MAE (r=0)", "l1 + 0.1*mae_local(ratio=0)"),
    ("L1 + global MAE (r=0.5)", "l1 + 1e-4*mae_global"),
    ("L1 + global MAE, official code", "official:global"),
    ("L1 + global MAE (r=0)", "l1 + 1e-4*mae_global(ratio=0)"),
    ("L1 + VGG19 relu1_2..5_4", "l1 + vgg"),
    ("L1 + VGG19 pool5 (official)", "l1 + 1e-4*vgg_pool5"),
)
# (deblurkit's row, the official code's row) compared in the summary
PAIRS = (
    ("L1 + local MAE (r=0.5)", "L1 + local MAE, official code"),
    ("L1 + global MAE (r=0.5)", "L1 + global MAE, official code"),
)


def build_net(args: argparse.Namespace) -> tuple[nn.Module, str]:
    config = {
        "width": args.width,
        "enc_blk_nums": args.enc_blocks,
        "middle_blk_num": 1,
        "dec_blk_nums": [1, 1, 1, 1],
    }
    shape = f"width {args.width}, enc {args.enc_blocks}, middle 1, dec [1,1,1,1]"
    if args.network == "official":
        return ReferenceNAFNet(**config), f"official NAFNet (reference transcription), {shape}"
    return get_architecture("nafnet").build(**config), f"deblurkit NAFNet, {shape}"


def build_criterion(spec: str, encoder: ViTEncoder, vgg: VGGFeatures, size: int) -> nn.Module:
    """deblurkit's loss for a spec, or the official code's for ``official:local|global``."""
    if spec.startswith("official:"):
        official = OfficialMAEEncoder(
            encoder.vit.state_dict(), img_size=size, heads=encoder.vit.blocks[0].attn.num_heads
        ).to(encoder.vit.pos_embed.device)
        return OfficialLoss(official, kind=spec.split(":", 1)[1])
    return build_loss(spec, encoder=encoder, vgg=vgg)


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


def make_loss_only(loss: nn.Module, restored: torch.Tensor, target: torch.Tensor) -> Callable[[], float]:
    def run() -> float:
        value = loss(restored.detach().requires_grad_(True), target)
        value.backward()
        return float(value.detach())

    return run


def time_interleaved(
    runs: dict[str, Callable[[], float]], rounds: int, device: torch.device, what: str
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU seconds of each run, ``rounds`` times, round robin."""
    wall: dict[str, list[float]] = {label: [] for label in runs}
    cpu: dict[str, list[float]] = {label: [] for label in runs}
    for i in range(rounds):
        for label, run in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[label].append(time.perf_counter() - t0)
            cpu[label].append(time.process_time() - c0)
        print(f"  {what}: round {i + 1}/{rounds} done", file=sys.stderr, flush=True)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--enc-blocks", type=int, nargs=4, default=[1, 1, 1, 28])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument(
        "--loss-repeats", type=int, default=10, help="timed runs of each loss alone (forward + backward)"
    )
    parser.add_argument(
        "--warmup", type=int, default=0, help="untimed rounds (the memory round warms up too)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--network",
        choices=("deblurkit", "official"),
        default="deblurkit",
        help="the NAFNet trained: deblurkit's, or the official one (bench_nafnet.py's reference)",
    )
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
        args.width, args.enc_blocks, args.steps, args.warmup, args.loss_repeats = 8, [1, 1, 1, 2], 1, 0, 1

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
    criteria = {label: build_criterion(spec, encoder, vgg, args.size) for label, spec in configs}
    steps = {label: make_step(net, criterion, opt, x, y) for label, criterion in criteria.items()}

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
    params += [p for criterion in criteria.values() for p in criterion.parameters()]
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
    wall, cpu = time_interleaved(steps, args.steps, device, "training steps")
    # the loss alone (forward and backward on a fixed restored batch): the part that differs between
    # configurations, short enough to repeat until the comparison is tight
    restored = net(x).detach()
    alone = {label: make_loss_only(criterion, restored, y) for label, criterion in criteria.items()}
    wall_alone, cpu_alone = time_interleaved(alone, args.loss_repeats, device, "losses alone")

    # CUDA: median wall time; CPU: the least process CPU time of the timed runs (least disturbed)
    def typical(times: tuple[dict[str, list[float]], dict[str, list[float]]], label: str) -> float:
        return statistics.median(times[0][label]) if device.type == "cuda" else min(times[1][label])

    step_times, alone_times = (wall, cpu), (wall_alone, cpu_alone)
    base, base_alone, base_mem = typical(step_times, "L1"), typical(alone_times, "L1"), memory["L1"]

    def extra(label: str) -> float:
        """Seconds the loss adds to an L1 step, from the loss-alone timings."""
        return typical(alone_times, label) - base_alone

    mem_kind = "peak allocated" if device.type == "cuda" else "saved for backward"
    stat = "median wall" if device.type == "cuda" else "least process CPU"
    print(f"\n(step s, loss s: {stat} time of a training step, of the loss alone; wall s: median wall time)")
    print(
        f"\n{'configuration':30s} {'wall s':>7s} {'step s':>7s} {'ratio':>6s} {'loss s':>7s} "
        f"{'extra s':>8s} {'overhead':>9s} {mem_kind + ' MiB':>24s}"
    )
    for label in steps:
        mem = memory[label]
        print(
            f"{label:30s} {statistics.median(wall[label]):7.2f} {typical(step_times, label):7.2f} "
            f"{typical(step_times, label) / base:6.3f} {typical(alone_times, label):7.3f} "
            f"{extra(label):8.3f} {100 * extra(label) / base:+8.1f}% "
            f"{f'{mem:9.1f} (+{mem - base_mem:7.1f})':>24s}"
        )
    print(
        f"\nratio: step time / the L1 step's ({args.steps} steps each); extra: loss time − the L1 loss's "
        f"({args.loss_repeats} runs each); overhead: extra / the L1 step. All interleaved."
    )
    for ours, official in PAIRS:
        if ours in steps and official in steps:
            print(
                f"{ours}: adds {extra(ours):.3f} s ({100 * extra(ours) / base:+.1f}%), the official code "
                f"{extra(official):.3f} s ({100 * extra(official) / base:+.1f}%): "
                f"{extra(ours) / extra(official):.2f}× the official overhead"
            )
    local_r5, local_r0 = "L1 + local MAE (r=0.5)", "L1 + local MAE (r=0)"
    if local_r5 in steps and local_r0 in steps:
        print(
            f"token sampling: local MAE overhead r=0.5 {extra(local_r5):.3f} s "
            f"vs r=0 {extra(local_r0):.3f} s "
            f"({extra(local_r5) / extra(local_r0):.2f}× the time; "
            f"memory +{memory[local_r5] - base_mem:.0f} vs +{memory[local_r0] - base_mem:.0f} MiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
