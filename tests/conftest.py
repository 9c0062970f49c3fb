"""Test set-up: every test runs offline against a private Hugging Face cache.

The variables are set before anything imports huggingface_hub, which reads them at import time, so
tests exercise the same ``hf_hub_download`` path a user runs with ``HF_HUB_OFFLINE=1``.
"""

import os
import tempfile
from pathlib import Path

_HF_HOME = Path(tempfile.mkdtemp(prefix="deblurkit-tests-hf-"))
os.environ["HF_HOME"] = str(_HF_HOME)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)
os.environ.pop("DEBLURKIT_CACHE", None)
# Under pytest-xdist each worker gets one thread, so workers do not fight over the cores.
_THREADS = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"
os.environ.setdefault("OMP_NUM_THREADS", _THREADS)

import pytest  # noqa: E402
import torch  # noqa: E402
from golden_files import GOLDEN, missing  # noqa: E402

torch.set_num_threads(int(_THREADS))


@pytest.fixture
def hf_home() -> Path:
    """The HF_HOME every test shares (its hub cache is ``hf_home / "hub"``)."""
    return _HF_HOME


@pytest.fixture
def golden() -> Path:
    """The folder of golden reference files (``shared/golden`` beside the repository)."""
    if not GOLDEN.is_dir():
        missing(f"golden reference data not found at {GOLDEN}")
    return GOLDEN
