"""Build a real Hugging Face Hub cache layout offline, the way ``hf_hub_download`` leaves it.

``models--{org}--{name}/blobs/{etag}``, ``snapshots/{commit}/{file}`` linking to the blob, and
``refs/{branch}`` holding the commit. The etag is what the Hub sends: the file's sha256 for an LFS
file, its git blob id (sha1 of ``blob <size>\\0`` + content) for a file kept in git. Two other layouts
huggingface_hub writes: without symlinks (``symlinks=False``: the file is copied into ``snapshots/``
and its blob moved away, as on Windows without developer mode) and with the shared blob store of
huggingface_hub 2.x (``shared=True``: ``blobs/{etag}`` itself links to ``<cache>/blobs/xx/<xet hash>``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub import constants


def repo_dir(repo_id: str) -> Path:
    """The cache folder of model repository ``repo_id``."""
    return Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def etag_of(data: bytes, *, lfs: bool = True) -> str:
    """The ETag the Hub sends for ``data``: its sha256 (LFS) or its git blob id."""
    if lfs:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_to_hub_cache(
    repo_id: str,
    files: dict[str, bytes],
    *,
    revision: str = "main",
    lfs: bool = True,
    commit: str | None = None,
    symlinks: bool = True,
    shared: bool = False,
) -> str:
    """Put ``files`` into the Hub cache as ``repo_id`` at ``revision``; return the commit hash."""
    folder = repo_dir(repo_id)
    commit = commit or hashlib.sha1(repr((repo_id, sorted(files))).encode()).hexdigest()
    for name, data in files.items():
        link = folder / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        if not symlinks:
            link.write_bytes(data)
            continue
        blob = folder / "blobs" / etag_of(data, lfs=lfs)
        blob.parent.mkdir(parents=True, exist_ok=True)
        if shared:
            xet = hashlib.sha256(b"xet" + data).hexdigest()  # a Xet hash is not the file's sha256
            stored = Path(constants.HF_HUB_CACHE) / "blobs" / xet[:2] / xet
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.write_bytes(data)
            if blob.exists() or blob.is_symlink():
                blob.unlink()
            os.symlink(os.path.relpath(stored, blob.parent), blob)
        else:
            blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, link.parent), link)
    refs = folder / "refs" / revision
    refs.parent.mkdir(parents=True, exist_ok=True)
    if len(revision) != 40:
        refs.write_text(commit)
    return commit


def blob_path(repo_id: str, data: bytes) -> Path:
    """Where the cache keeps the blob of LFS file ``data`` for ``repo_id``."""
    return repo_dir(repo_id) / "blobs" / hashlib.sha256(data).hexdigest()
