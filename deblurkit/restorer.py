"""The inference wrapper every loaded model is: any input size in, the same size out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .archs import Architecture, SizeRule

__all__ = ["Restorer"]


class Restorer(nn.Module):
    """A deblurring network plus its architecture's official inference procedure.

    ``forward`` takes a B×3×H×W float tensor in [0, 1] of any H and W, pads it the way the
    architecture's official test code does (``size_rule``), runs the network and crops back.
    The bare network is ``self.network`` (official state-dict names), which is what training uses
    and what checkpoints hold.
    """

    def __init__(
        self,
        network: nn.Module,
        architecture: Architecture,
        config: Mapping[str, Any],
        name: str = "",
    ) -> None:
        super().__init__()
        self.network = network
        self.architecture = architecture
        self.config = dict(config)
        self.name = name or architecture.name
        self.size_rule: SizeRule = architecture.size_rule_for(config)

    @property
    def precisions(self) -> tuple[str, ...]:
        """Autocast precisions this network is safe in."""
        return self.architecture.precisions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a B×C×H×W tensor, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        padded, (top, left) = self.size_rule.pad(x)
        out = self.network(padded)
        return out[..., top : top + height, left : left + width]

    def extra_repr(self) -> str:
        return f"name={self.name!r}, size_rule={self.size_rule}"
