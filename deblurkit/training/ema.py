"""An exponential moving average of a network's weights, with an optional decay warm-up."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """A frozen copy of ``network`` whose floating-point parameters and buffers track an EMA.

    ``decay``: the steady-state decay. ``warmup``: use ``min(decay, (1 + n) / (10 + n))`` at the n-th
    update, so the average is not dominated by the random initial weights. ``module`` is the averaged
    network (eval mode, no gradients), ready to validate or save.
    """

    def __init__(self, network: nn.Module, decay: float, *, warmup: bool = True) -> None:
        self.module = copy.deepcopy(network).eval().requires_grad_(False)
        self.decay, self.warmup, self.updates = float(decay), warmup, 0

    def current_decay(self) -> float:
        """The decay the next update will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Move the average towards ``network``'s current weights: ``avg.lerp_(new, 1 - decay)`` for every
        floating-point tensor, as one ``torch._foreach_lerp_`` per device and dtype; other tensors
        (counters) are copied."""
        weight = 1.0 - self.current_decay()
        source = network.state_dict()
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for name, target in self.module.state_dict().items():
            value = source[name].detach()
            if target.is_floating_point():
                targets, values = groups.setdefault((target.device, target.dtype), ([], []))
                targets.append(target)
                values.append(value.to(device=target.device, dtype=target.dtype))
            else:
                target.copy_(value)
        for targets, values in groups.values():
            torch._foreach_lerp_(targets, values, weight)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (names as the network's)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore the averaged weights and the number of updates made."""
        self.module.load_state_dict(state, strict=True)
        self.updates = updates
