"""How much memory a tile may use, and how much a forward pass needs (measured, not guessed)."""

from __future__ import annotations

import re
from collections.abc import Callable

import psutil
import torch

__all__ = ["CPU_TILE_MEMORY", "host_available_memory", "peak_memory", "tile_memory_budget"]

CPU_TILE_MEMORY = 3 * 2**29
"""Most memory (bytes) an auto-sized tile may use on CPU: 1.5 GiB."""

_MEMORY_SAFETY = 0.8


def host_available_memory() -> int:
    """Bytes of RAM available to new allocations without swapping, on Linux, macOS and Windows alike
    (psutil's ``available``: MemAvailable on Linux, free + inactive on macOS)."""
    return int(psutil.virtual_memory().available)


def tile_memory_budget(device: torch.device) -> int:
    """Bytes a tile's forward may use: a share of the free device memory, capped on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * _MEMORY_SAFETY)
    return int(min(host_available_memory() * _MEMORY_SAFETY, CPU_TILE_MEMORY))


def _rss_and_peak() -> tuple[int, int]:
    with open("/proc/self/status", encoding="ascii") as handle:
        status = handle.read()
    rss, peak = (int(re.search(rf"{key}:\s+(\d+)", status).group(1)) * 1024 for key in ("VmRSS", "VmHWM"))
    return rss, peak


def peak_memory(run: Callable[[], object], device: torch.device) -> float | None:
    """Extra memory at the peak of ``run()``: CUDA allocator statistics, or the resident-set high-water
    mark on Linux (reset through ``/proc/self/clear_refs``); None where neither can be measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        base, _ = _rss_and_peak()
        run()
        return float(_rss_and_peak()[1] - base)
    except (OSError, AttributeError):
        return None
