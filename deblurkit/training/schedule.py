"""The learning-rate schedule: linear warm-up, then a cosine decay to a floor."""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(step: int, *, lr: float, min_lr: float, steps: int, warmup: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``steps``.

    Warm-up: ``lr · (step + 1) / warmup`` for the first ``warmup`` steps; then a half cosine from
    ``lr`` to ``min_lr`` over the remaining steps. A pure function of the step, so a resumed run
    needs no scheduler state.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
