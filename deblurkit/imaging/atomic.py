"""Atomic file writes: a hidden temporary file beside the target, renamed over it once complete.

An interrupted run never leaves a truncated file, and the last good version survives a crash. Files
get the usual permissions (the process umask), like any file the user writes.

Temporary names are unique to the writer: ``.NAME.HOST-PID-TOKEN.tmp`` (a tag of the host name, the
process id and a random token per write), so runs writing into one folder at once, and threads of one
run, never touch each other's temporaries. A write removes its own temporary on failure; the
temporaries of a killed earlier run on this host (its process gone) are removed by the next write of
the same target. :func:`check_writable` proves a folder takes files before a run starts.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import secrets
import socket
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import DeblurkitError, UsageError

__all__ = ["atomic_path", "check_writable", "is_disk_full", "write_atomic", "write_text_atomic"]

_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
_OWNER = re.compile(r"(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[0-9a-f]+")
# ".NAME." + "HOST-PID-TOKEN" (8 + 1 + up to 10 + 1 + 16 bytes) + ".tmp" fits in a 255-byte file name
_STEM_BYTES = 255 - 2 - 36 - 4
_DISK_FULL = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)


def is_disk_full(err: BaseException) -> bool:
    """True for an ``OSError`` saying the disk (or the user's quota) is full."""
    return isinstance(err, OSError) and err.errno in _DISK_FULL


def _stem(path: Path) -> str:
    """The part of ``path``'s name its temporaries carry: all of it, or as much as keeps a temporary's
    name within the 255 bytes file systems allow (a long but valid name must stay writable)."""
    name = os.fsencode(path.name)
    return path.name if len(name) <= _STEM_BYTES else os.fsdecode(name[:_STEM_BYTES])


def _temporary(path: Path) -> Path:
    """A hidden temporary name beside ``path`` that no other process or thread uses."""
    return path.parent / f".{_stem(path)}.{_HOST}-{os.getpid()}-{secrets.token_hex(8)}.tmp"


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (assumed so where that cannot be asked safely)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to another user
        return True
    return True


def _is_abandoned(temp: Path, name: str) -> bool:
    """True for a temporary of ``name`` that no running writer owns: left by a killed process on this
    host, or named by an older scheme. Another host's temporaries are never taken for abandoned, nor
    those of another target the pattern also matches (``NAME.x``)."""
    owner = temp.name[len(name) + 2 : -len(".tmp")]
    if "." in owner:
        return False
    match = _OWNER.fullmatch(owner)
    if match is None:
        return True
    return match["host"] == _HOST and not _running(int(match["pid"]))


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    Temporaries a killed earlier run left for the same target are removed first; on failure this
    write's temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():  # os.replace would fail with a message naming the temporary
        raise DeblurkitError(f"cannot write {path}: a folder of that name is in the way")
    stem = _stem(path)
    for stale in path.parent.glob(f".{glob.escape(stem)}.*.tmp"):
        if _is_abandoned(stale, stem):
            with contextlib.suppress(OSError):
                stale.unlink()
    temp = _temporary(path)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        with contextlib.suppress(OSError):  # never hide the error that brought us here
            temp.unlink(missing_ok=True)


def write_atomic(path: str | Path, save: Callable[[BinaryIO], None]) -> None:
    """Call ``save`` on an open temporary file beside ``path``, then rename it to ``path``."""
    with atomic_path(path) as temp, open(temp, "xb") as handle:
        save(handle)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def check_writable(folder: str | Path) -> None:
    """Create ``folder`` if needed and write (then remove) a small probe file in it.

    Raises :class:`DeblurkitError` when the disk is full, :class:`UsageError` when the folder cannot
    be made or written (read-only, no permission, a file in the way); one line naming the folder.
    """
    folder = Path(folder)
    probe = _temporary(folder / "deblurkit-probe")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(probe, "xb") as handle:
                handle.write(b"deblurkit")
        finally:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)
    except OSError as err:
        reason = "a file is in the way" if isinstance(err, FileExistsError) else err.strerror or str(err)
        if is_disk_full(err):
            raise DeblurkitError(f"cannot write into the output folder {folder}: {reason}") from None
        raise UsageError(f"cannot write into the output folder {folder}: {reason}") from None
