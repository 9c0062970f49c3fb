"""Exceptions that carry a one-line message meant for the user (the CLI prints it, no traceback)."""

from __future__ import annotations

__all__ = ["DeblurkitError", "ImageReadError", "ModelNotFoundError", "WeightsError"]


class DeblurkitError(Exception):
    """An expected failure: bad input, missing weights, a refused file. ``str(err)`` is one line."""

    exit_code = 1


class ModelNotFoundError(DeblurkitError):
    """A model reference names no zoo entry, Hub model, file or folder."""


class WeightsError(DeblurkitError):
    """Weights cannot be had or cannot be trusted: offline and not cached, not found, sha256 mismatch,
    unpublished, or a pickle that holds more than plain tensors."""


class ImageReadError(DeblurkitError):
    """An image file cannot be read: missing, empty, truncated, not an image, or too large."""
