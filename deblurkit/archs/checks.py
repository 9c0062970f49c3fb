"""Cross-setting config checks that several transformer architectures share.

Each returns what is wrong (one line naming the setting in double quotes) or ``None``, as
:attr:`~deblurkit.archs.Architecture.check_config` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["check_heads", "check_hidden"]


def check_heads(
    config: Mapping[str, Any], heads: str, width: str, unit: str, scale_of: Callable[[int], int]
) -> str | None:
    """Every entry of ``config[heads]`` splits its stage's channels evenly: ``config[width]`` times
    ``scale_of(index)``; ``unit`` names a stage in the message (``level``, ``stage``)."""
    base = config[width]
    for index, count in enumerate(config[heads]):
        scale = scale_of(index)
        if base * scale % count:
            return (
                f'"{heads}" entry {index + 1} ({count}) must divide the {base * scale} channels '
                f"of its {unit} ({width} × {scale})"
            )
    return None


def check_hidden(config: Mapping[str, Any], ratio: str, width: str) -> str | None:
    """The feed-forward keeps at least one hidden channel: ``int(config[width] * config[ratio]) >= 1``."""
    if int(config[width] * config[ratio]) < 1:
        return f'"{ratio}" leaves no hidden channel with {width} {config[width]}'
    return None
