"""Click parameter types shared by the commands."""

from __future__ import annotations

import math

import click

__all__ = ["MAX_SEED", "FiniteFloatRange", "PathType", "number_type"]

MAX_SEED = 2**32 - 1
"""The largest seed the commands take (every random generator they seed accepts it)."""


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses NaN and ±inf, which pass any bound check."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class PathType(click.Path):
    """A :class:`click.Path` that refuses an empty string, which would otherwise mean the current
    folder (an unset ``$OUT`` in ``-o "$OUT"`` must not write into wherever the command runs)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("an empty path is not a file or folder", param, ctx)
        return super().convert(value, param, ctx)


def number_type(
    kind: type,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
) -> click.ParamType:
    """A :class:`click.IntRange` (``kind`` int) or :class:`FiniteFloatRange` (``kind`` float)."""
    if kind is int:
        return click.IntRange(min, max, min_open=min_open, max_open=max_open)
    return FiniteFloatRange(min, max, min_open=min_open, max_open=max_open)
