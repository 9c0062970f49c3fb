"""Build a real Hugging Face Hub cache layout offline, the way ``hf_hub_download`` leaves it.

``models--{org}--{name}/blobs/{etag}``, ``snapshots/{commit}/{file}`` linking to the blob, and
``refs/{branch}`` holding the commit. For LFS files the etag is the file's sha256, as on the Hub.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub import constants


def add_to_hub_cache(
    repo_id: str,
    files: dict[str, bytes],
    *,
    revision: str = "main",
    lfs: bool = True,
    commit: str | None = None,
) -> str:
    """Put ``files`` into the Hub cache as ``repo_id`` at ``revision``; return the commit hash."""
    repo_dir = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    commit = commit or hashlib.sha1(repr((repo_id, sorted(files))).encode()).hexdigest()
    for name, data in files.items():
        etag = hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(data).hexdigest()
        blob = repo_dir / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo_dir / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, link.parent), link)
    refs = repo_dir / "refs" / revision
    refs.parent.mkdir(parents=True, exist_ok=True)
    if len(revision) != 40:
        refs.write_text(commit)
    return commit


def blob_path(repo_id: str, data: bytes) -> Path:
    """Where the cache keeps the blob of ``data`` for ``repo_id``."""
    repo_dir = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    return repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
