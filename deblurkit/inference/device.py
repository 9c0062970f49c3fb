"""Device selection shared by every command."""

from __future__ import annotations

import torch

from ..errors import UsageError

__all__ = ["DeviceError", "resolve_device"]


_TYPES = ("cpu", "cuda", "mps")
_KINDS = "use auto, cpu, cuda, cuda:N or mps"


class DeviceError(UsageError):
    """A device that does not exist here (a usage error)."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an explicit device must exist."""
    if isinstance(spec, torch.device):
        return spec
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r} ({_KINDS})") from None
    if device.type not in _TYPES:  # meta, xpu, xla, vulkan...: torch names them, deblurkit runs on none
        raise DeviceError(f"device {spec!r} is not supported ({_KINDS})")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' asked for, but Apple MPS is not available here")
    return device
