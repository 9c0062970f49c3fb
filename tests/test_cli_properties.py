"""Property test of the command line: random option values, paths and small files (valid PNGs, garbage,
empty, text) through ``deblur``, ``score``, ``synth``, ``zoo info`` and the option parsing of ``train``
and ``finetune``. Whatever comes in, the exit code is 0, 1 or 2, no traceback is shown, no input
file changes and no temporary file is left anywhere."""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deblurkit.archs import get_architecture
from deblurkit.cli import cli
from deblurkit.imaging.discovery import OUTPUT_MARKER
from deblurkit.zoo.models import build_network, save_model
from deblurkit.zoo.restorer import Restorer

TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}
FAST = settings(
    max_examples=15, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny NAFNet model folder (random weights): ``--model PATH``, never a network."""
    torch.manual_seed(0)
    network = build_network("nafnet", TINY)
    return save_model(
        Restorer(network, get_architecture("nafnet"), TINY, name="tiny"),
        tmp_path_factory.mktemp("m") / "tiny",
    )


def _png(side: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side + 1, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


_PNG = st.builds(_png, st.integers(1, 12), st.integers(0, 9))
_CONTENTS = st.one_of(
    _PNG, _PNG, st.binary(max_size=64), st.just(b""), st.just(b"restored,reference\na.png,b.png\n")
)
_NAMES = st.sampled_from(["a.png", "b.png", "c.jpg", "d.tif", "e.txt", "f.csv", "g", "h.webp", "i.PNG"])
FILES = st.fixed_dictionaries({"a.png": _PNG}, optional={"b.png": _PNG}).flatmap(
    lambda valid: st.dictionaries(_NAMES, _CONTENTS, max_size=3).map(lambda more: {**valid, **more})
)
"""Small input files by name: tiny valid PNGs (under any suffix), garbage, empty files and text."""

_BAD_NUMBER = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["nan", "inf", "-inf", "-1", "1e308", "0x10", "abc", "", " 3 "]),
)
NUMBER = st.one_of(st.integers(0, 100).map(str), st.floats(0, 1).map(str), _BAD_NUMBER)
"""What a user may type for a number: often a plausible one, else anything."""
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@contextmanager
def _workspace(files: dict[str, bytes]) -> Iterator[Path]:
    """A fresh folder holding ``files`` in ``in/`` (and a ``file`` where a folder may be expected)."""
    with tempfile.TemporaryDirectory(prefix="deblurkit-prop-") as root:
        workspace = Path(root)
        (workspace / "in").mkdir()
        for name, data in files.items():
            (workspace / "in" / name).write_bytes(data)
        (workspace / "file").write_bytes(b"a file, not a folder")
        yield workspace


def _hashes(*folders: Path) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file()
    }


def _check(workspace: Path, model_dir: Path, args: list[str]) -> None:
    """Run ``args`` and check the properties every command keeps."""
    before = _hashes(workspace, model_dir)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert "Traceback" not in result.output, (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    after = _hashes(workspace, model_dir)
    assert {path: after.get(path) for path in before} == before, ("an input changed", args)
    for path in workspace.rglob("*"):
        hidden = path.name.startswith(".") and path.name != OUTPUT_MARKER
        assert not hidden and path.suffix != ".tmp", ("left behind", path, args)


def _path(workspace: Path, choice: str) -> str:
    """A path argument: the input folder, a file in it, a missing path, a glob, or a path below a file."""
    return {
        "folder": str(workspace / "in"),
        "missing": str(workspace / "missing.png"),
        "glob": str(workspace / "in" / "*.png"),
        "below-file": str(workspace / "file" / "x"),
        "file": str(workspace / "file"),
    }.get(choice, str(workspace / "in" / choice))


PATHS = st.sampled_from(
    ["folder", "folder", "folder", "a.png", "missing", "glob", "below-file", "file", "e.txt"]
)


def _some(options: dict[str, st.SearchStrategy], most: int = 3) -> st.SearchStrategy:
    """Up to ``most`` of ``options`` with drawn values, as command-line words (a value True: a flag)."""

    def words(drawn: dict[str, str | bool]) -> list[str]:
        return [
            w for option, value in drawn.items() for w in ([option] if value is True else [option, value])
        ]

    chosen = st.lists(st.sampled_from(sorted(options)), max_size=most, unique=True)
    return chosen.flatmap(lambda names: st.fixed_dictionaries({n: options[n] for n in names})).map(words)


FLAG = st.just(True)


@FAST
@given(
    files=FILES,
    inputs=st.lists(PATHS, min_size=1, max_size=3),
    output=st.sampled_from(["out", "out", "in", "below-file", "file"]),
    options=_some(
        {
            "--tile": st.one_of(NUMBER, st.just("auto")),
            "--tile-overlap": NUMBER,
            "--quality": NUMBER,
            "--max-megapixels": NUMBER,
            "--ext": st.one_of(st.sampled_from(["png", "JPG", "tif", "webp", "bmp", "gif"]), TEXT),
            "--suffix": TEXT,
            "--precision": st.sampled_from(["auto", "fp32", "bf16", "fp16", "fp64"]),
            "--compare": FLAG,
            "--overwrite": FLAG,
            "--strip-metadata": FLAG,
            "--json": FLAG,
            "-r": FLAG,
        }
    ),
)
def test_deblur_properties(model_dir: Path, files, inputs, output, options) -> None:
    with _workspace(files) as workspace:
        out = str(workspace / output) if output == "out" else _path(workspace, output)
        paths = [_path(workspace, choice) for choice in inputs]
        args = [
            "deblur",
            *paths,
            "-o",
            out,
            "--model",
            str(model_dir),
            "--device",
            "cpu",
            "-q",
            "--tile",
            "0",
        ]
        _check(workspace, model_dir, args + options)  # a drawn --tile comes last and wins


@FAST
@given(
    files=FILES,
    restored=PATHS,
    reference=PATHS,
    pairs=st.one_of(st.none(), st.sampled_from(["f.csv", "e.txt", "a.png", "missing"])),
    options=_some(
        {
            "--metrics": st.one_of(st.sampled_from(["psnr", "ssim", "psnr,ssim", "nope", ","]), TEXT),
            "--crop-border": NUMBER,
            "--workers": NUMBER,
            "--y-channel": FLAG,
            "-r": FLAG,
            "--json": FLAG,
            "--csv": FLAG,
        }
    ),
)
def test_score_properties(model_dir: Path, files, restored, reference, pairs, options) -> None:
    with _workspace(files) as workspace:
        args = ["score", "--device", "cpu"]
        if pairs is None:
            args += [_path(workspace, restored), _path(workspace, reference)]
        else:
            args += ["--pairs", _path(workspace, pairs)]
        _check(workspace, model_dir, args + options)


_RANGE = st.one_of(
    st.tuples(st.floats(0, 12), st.floats(0, 12)).map(lambda pair: f"{min(pair):g},{max(pair):g}"),
    st.sampled_from(["nan,1", "1,inf", "-1,2", "3,1", "2", "", "a,b", "1,2,3", "1e308,1e308"]),
)
"""What a user may type for a (low, high) range."""


@FAST
@given(
    files=FILES,
    source=PATHS,
    output=st.sampled_from(["out", "out", "below-file", "file"]),
    options=_some(
        {
            "--seed": NUMBER,
            "--noise": NUMBER,
            "--shot-noise": NUMBER,
            "--jpeg": NUMBER,
            "--bits": st.one_of(st.sampled_from(["0", "8", "16"]), NUMBER),
            "--spatially-varying": NUMBER,
            "--highlights": NUMBER,
            "--kernels": st.sampled_from(["motion", "defocus,gaussian", "bank", "shake", ""]),
            "--motion-length": _RANGE,
            "--jpeg-quality": _RANGE,
            "--highlight-gain": _RANGE,
            "--from-frames": FLAG,
            "--frames-count": _RANGE,
            "--frames-gamma": NUMBER,
            "--stride": NUMBER,
        }
    ),
)
def test_synth_properties(model_dir: Path, files, source, output, options) -> None:
    with _workspace(files) as workspace:
        out = str(workspace / output) if output == "out" else _path(workspace, output)
        _check(workspace, model_dir, ["synth", _path(workspace, source), "-o", out, "-q", *options])


@FAST
@given(name=st.one_of(st.sampled_from(["nafnet-tiny", "maxim-s1-fast", "hf:org/name", "../x", ""]), TEXT))
def test_zoo_info_properties(model_dir: Path, name: str) -> None:
    with _workspace({}) as workspace:
        _check(workspace, model_dir, ["zoo", "info", name])
        _check(workspace, model_dir, ["zoo", "info", "--json", name])


_TRAIN_NUMBERS = [
    "--steps", "--lr", "--min-lr", "--weight-decay", "--warmup", "--grad-clip", "--accumulate", "--ema",
    "--seed", "--batch-size", "--workers", "--crop", "--val-split", "--val-max", "--log-every",
    "--val-every", "--save-every", "--tile", "--frames-gamma", "--frames-share", "--stills-share",
    "--synth-noise", "--synth-jpeg", "--synth-bits", "--synth-highlights",
]  # fmt: skip
_TRAIN_OPTIONS = dict.fromkeys(_TRAIN_NUMBERS, NUMBER) | {
    "--betas": _RANGE,
    "--frames-count": _RANGE,
    "--synth-motion-length": _RANGE,
    "--arch-config": st.sampled_from(['{"width": 8}', "{", "[1]", '{"width": NaN}']),
    "--help": FLAG,
}


@FAST
@given(command=st.sampled_from(["train", "finetune"]), options=_some(_TRAIN_OPTIONS, most=4))
def test_train_option_parsing_properties(model_dir: Path, command: str, options: list[str]) -> None:
    """Without --data nothing trains: every run ends at option parsing or the first config check."""
    with _workspace({}) as workspace:
        _check(workspace, model_dir, [command, "-o", str(workspace / "o"), *options])
        assert not (workspace / "o").exists()
