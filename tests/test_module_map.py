"""The README's module map is generated from the modules' docstrings and must match the code."""

from __future__ import annotations

import importlib.util
import pkgutil
from pathlib import Path

import deblurkit

ROOT = Path(__file__).resolve().parent.parent


def _module_map():
    spec = importlib.util.spec_from_file_location("module_map", ROOT / "tools" / "module_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_module_has_a_row_and_every_row_a_module():
    rows = dict(_module_map().module_rows())
    modules = {"deblurkit"} | {
        info.name
        for info in pkgutil.walk_packages(deblurkit.__path__, "deblurkit.")
        if info.name.rsplit(".", 1)[-1] not in ("_version", "__main__")
    }
    assert set(rows) == modules
    assert all(job and not job.startswith(" ") for job in rows.values())


def test_the_readme_shows_the_current_map():
    module_map = _module_map()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert module_map.updated_readme(readme) == readme, "run: python tools/module_map.py"


def test_first_sentence_keeps_abbreviations_and_markup_readable():
    first = _module_map().first_sentence
    assert first("LPIPS (Zhang et al. 2018) via lpips.\n\nMore.") == "LPIPS (Zhang et al. 2018) via lpips."
    assert first("Runs :func:`~a.b.c` on\n``x``. Then more.") == "Runs `a.b.c` on `x`."
