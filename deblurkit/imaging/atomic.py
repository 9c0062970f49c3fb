"""Atomic file writes: a hidden temporary file beside the target, renamed over it once complete.

An interrupted run never leaves a truncated file, and the last good version survives a crash. Files
get the usual permissions (the process umask), like any file the user writes.
"""

from __future__ import annotations

import glob
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_path", "write_atomic", "write_text_atomic"]


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    Temporary files a killed earlier run left for the same target are removed first; on failure the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    temp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_atomic(path: str | Path, save: Callable[[BinaryIO], None]) -> None:
    """Call ``save`` on an open temporary file beside ``path``, then rename it to ``path``."""
    with atomic_path(path) as temp, open(temp, "xb") as handle:
        save(handle)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))
