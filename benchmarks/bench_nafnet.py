"""Time deblurkit's NAFNet-width32 TLC forward against a re-implementation of the official one.

The reference below mirrors megvii-research/NAFNet's computation step by step (channels-first
features, the LayerNormFunction arithmetic and its hand-written backward, the SCA conv on the full
replicate-padded map, the local mean from a zero-padded double cumsum, window sizes measured on a
dummy forward at training size) and loads the same random weights. ``ReferenceNAFNet`` is the plain
(global-pool) network, the one trained; ``bench_losses.py --network official`` trains it. Usage::

    python benchmarks/bench_nafnet.py [--height 720] [--width 1280] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from deblurkit.archs.nafnet import NAFNetLocal

GOPRO_WIDTH32 = {
    "width": 32,
    "middle_blk_num": 1,
    "enc_blk_nums": (1, 1, 1, 28),
    "dec_blk_nums": (1, 1, 1, 1),
}


class _OfficialLayerNormFunction(torch.autograd.Function):
    """The official LayerNormFunction: two-pass channel statistics, a hand-written backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + eps).sqrt()
        ctx.eps = eps
        ctx.save_for_backward(y, var, weight)
        return weight.view(1, -1, 1, 1) * y + bias.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        y, var, weight = ctx.saved_tensors
        g = grad_output * weight.view(1, -1, 1, 1)
        mean_g = g.mean(dim=1, keepdim=True)
        mean_gy = (g * y).mean(dim=1, keepdim=True)
        grad_x = (g - y * mean_gy - mean_g) / torch.sqrt(var + ctx.eps)
        return grad_x, (grad_output * y).sum(dim=(0, 2, 3)), grad_output.sum(dim=(0, 2, 3)), None


class ReferenceLayerNorm2d(nn.Module):
    """The official LayerNorm2d (LayerNormFunction: statistics in the input dtype)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _OfficialLayerNormFunction.apply(x, self.weight, self.bias, self.eps)


class ReferenceLocalPool(nn.Module):
    """The official TLC AvgPool2d (fast_imp=False): the window is fixed on the first call."""

    def __init__(self, base_size: tuple[int, int], train_size: tuple[int, int]) -> None:
        super().__init__()
        self.base_size = base_size
        self.train_size = train_size
        self.kernel_size: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.kernel_size is None:
            self.kernel_size = (
                h * self.base_size[0] // self.train_size[0],
                w * self.base_size[1] // self.train_size[1],
            )
        if self.kernel_size[0] >= h and self.kernel_size[1] >= w:
            return F.adaptive_avg_pool2d(x, 1)
        s = F.pad(x.cumsum(dim=-1).cumsum_(dim=-2), (1, 0, 1, 0))
        k1, k2 = min(h, self.kernel_size[0]), min(w, self.kernel_size[1])
        out = (s[:, :, k1:, k2:] + s[:, :, :-k1, :-k2] - s[:, :, :-k1, k2:] - s[:, :, k1:, :-k2]) / (k1 * k2)
        out_h, out_w = out.shape[-2:]
        pads = ((w - out_w) // 2, (w - out_w + 1) // 2, (h - out_h) // 2, (h - out_h + 1) // 2)
        return F.pad(out, pads, mode="replicate")


class ReferenceBlock(nn.Module):
    """The official NAFBlock forward, same parameter names."""

    def __init__(self, c: int, pool: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.conv3 = nn.Conv2d(c, c, 1)
        self.sca = nn.Sequential(pool, nn.Conv2d(c, c, 1))
        self.conv4 = nn.Conv2d(c, 2 * c, 1)
        self.conv5 = nn.Conv2d(c, c, 1)
        self.norm1 = ReferenceLayerNorm2d(c)
        self.norm2 = ReferenceLayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return x1 * x2

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.gate(self.conv2(self.conv1(self.norm1(inp))))
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma


class ReferenceNAFNet(nn.Module):
    """The official NAFNet forward (pads to a multiple of 2**levels internally, then crops); the SCA
    pools globally, or with ``pool`` (a factory of pooling modules)."""

    def __init__(
        self,
        width: int,
        middle_blk_num: int,
        enc_blk_nums,
        dec_blk_nums,
        pool: Callable[[], nn.Module] = lambda: nn.AdaptiveAvgPool2d(1),
    ) -> None:
        super().__init__()

        def stage(c: int, n: int) -> nn.Sequential:
            return nn.Sequential(*(ReferenceBlock(c, pool()) for _ in range(n)))

        self.intro = nn.Conv2d(3, width, 3, padding=1)
        self.ending = nn.Conv2d(width, 3, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        chan = width
        for n in enc_blk_nums:
            self.encoders.append(stage(chan, n))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, 2))
            chan *= 2
        self.middle_blks = stage(chan, middle_blk_num)
        for n in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(stage(chan, n))
        self.padder = 2 ** len(enc_blk_nums)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        inp = F.pad(inp, (0, (-w) % self.padder, 0, (-h) % self.padder))
        x = self.intro(inp)
        encs = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            encs.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, encs[::-1], strict=True):
            x = decoder(up(x) + skip)
        return (self.ending(x) + inp)[:, :, :h, :w]


class ReferenceNAFNetLocal(ReferenceNAFNet):
    """The official NAFNetLocal: TLC pools whose windows are fixed by a dummy forward at train size."""

    def __init__(self, width: int, middle_blk_num: int, enc_blk_nums, dec_blk_nums, train: int = 256) -> None:
        base = int(train * 1.5)
        super().__init__(
            width,
            middle_blk_num,
            enc_blk_nums,
            dec_blk_nums,
            pool=lambda: ReferenceLocalPool((base, base), (train, train)),
        )
        with torch.no_grad():
            self(torch.rand(1, 3, train, train))  # fixes every pool's window, as the official code does


def randomize(model: nn.Module, seed: int = 0) -> None:
    """Random weights with non-trivial norms and residual scales (beta/gamma are zero at init)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("beta", "gamma")) or "norm" in name:
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(param.std() * torch.randn(param.shape, generator=generator))


def best_time(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    """Fastest of ``repeats`` runs after one warm-up, and the last output."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours = NAFNetLocal(**GOPRO_WIDTH32, train_size=256).eval()
    randomize(ours)
    reference = ReferenceNAFNetLocal(**GOPRO_WIDTH32).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    image = torch.rand(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(1))

    with torch.inference_mode():
        t_ref, out_ref = best_time(lambda: reference(image), args.repeats)
        t_ours, out_ours = best_time(lambda: ours(image), args.repeats)
    print(
        f"NAFNet-width32 TLC, {args.height}×{args.width}, fp32, {args.threads} threads, "
        f"best of {args.repeats}"
    )
    print(f"official (reference): {t_ref:.3f} s")
    print(f"deblurkit:            {t_ours:.3f} s")
    print(f"speed-up: {t_ref / t_ours:.2f}× ({100 * (1 - t_ours / t_ref):.1f}% less time)")
    print(f"max abs difference: {(out_ours - out_ref).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
