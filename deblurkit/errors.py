"""Exceptions that carry a one-line message meant for the user (the CLI prints it, no traceback).

Two kinds: :class:`DeblurkitError` is a failure (exit code 1); :class:`UsageError` is a request that
cannot be carried out as asked (exit code 2, like a command-line usage error). Every error class of the
library derives from one of them, and :func:`one_line` is how any other exception is put into a message.
"""

from __future__ import annotations

__all__ = [
    "DeblurkitError",
    "ImageReadError",
    "ModelNotFoundError",
    "UsageError",
    "WeightsError",
    "describe",
    "one_line",
]


class DeblurkitError(Exception):
    """An expected failure: bad input, missing weights, a refused file. ``str(err)`` is one line."""

    exit_code = 1


class UsageError(DeblurkitError):
    """A bad option, config or data layout: the request cannot be carried out as asked."""

    exit_code = 2


class ModelNotFoundError(DeblurkitError):
    """A model reference names no zoo entry, Hub model, file or folder."""


class WeightsError(DeblurkitError):
    """Weights cannot be had or cannot be trusted: offline and not cached, not found, sha256 mismatch,
    unpublished, or a pickle that holds more than plain tensors."""


class ImageReadError(DeblurkitError):
    """An image file cannot be read: missing, empty, truncated, not an image, or too large."""


def one_line(err: BaseException) -> str:
    """The first non-empty line of an error's message, whitespace collapsed; its type name when empty."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[0].split()) if lines else type(err).__name__


def describe(err: BaseException) -> str:
    """:func:`one_line`, prefixed with the exception's type unless it is one of deblurkit's own."""
    return one_line(err) if isinstance(err, DeblurkitError) else f"{type(err).__name__}: {one_line(err)}"
