"""The golden reference files (``shared/golden`` beside the repository) and what a test does without
them: it skips, unless ``DEBLURKIT_CI=1`` (CI has them), where it fails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"


def missing(reason: str) -> NoReturn:
    """Skip the test for a missing reference file; fail it under ``DEBLURKIT_CI=1``."""
    if os.environ.get("DEBLURKIT_CI") == "1":
        pytest.fail(f"{reason}; DEBLURKIT_CI=1 requires the golden reference files", pytrace=False)
    pytest.skip(reason)


def golden_file(name: str) -> Path:
    """The golden file ``name``; skips (or fails under ``DEBLURKIT_CI=1``) when it is missing."""
    path = GOLDEN / name
    if not path.exists():
        missing(f"golden data {path} not found (clone the shared/ folder beside the repository)")
    return path
