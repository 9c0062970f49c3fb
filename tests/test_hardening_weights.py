"""``--weights`` files that are no checkpoint of plain named tensors: one line, exit 1, no traceback."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from deblurkit.cli import cli
from deblurkit.errors import WeightsError
from deblurkit.zoo.weights import load_state_dict


def _text(path: Path) -> None:
    path.write_text("hello, these are not weights\n")


def _png(path: Path) -> None:
    Image.new("RGB", (4, 4)).save(path, format="PNG")


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("bad.txt", _text, "bad.txt is not a PyTorch checkpoint (.pth/.pt), a .safetensors file or a TF.js"),
        ("photo.pth", _png, "photo.pth is not a PyTorch checkpoint (.pth/.pt)"),
        ("empty.pt", lambda p: p.write_bytes(b""), "empty.pt is not a PyTorch checkpoint"),
        (
            "broken.pth",
            lambda p: p.write_bytes(b"\x80\x02}q\x00h\x65."),
            "broken.pth is not a valid PyTorch checkpoint",
        ),
        (
            "ints.pth",
            lambda p: torch.save({0: torch.zeros(1)}, p),
            "ints.pth: entries that are not named tensors: 0",
        ),
        (
            "meta.pth",
            lambda p: torch.save({"epoch": 3}, p),
            "meta.pth: entries that are not named tensors: epoch",
        ),
        ("empty.pth", lambda p: torch.save({}, p), "empty.pth holds no state dict"),
        ("list.pth", lambda p: torch.save([1, 2], p), "list.pth holds no state dict"),
    ],
)
def test_weights_that_hold_no_tensors_are_one_line(tmp_path: Path, name: str, write, message: str) -> None:
    write(tmp_path / name)
    with pytest.raises(WeightsError, match="^" + re.escape(message)):
        load_state_dict(tmp_path / name)
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    args = ["deblur", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "-m", "nafnet-tiny"]
    result = CliRunner().invoke(cli, [*args, "--weights", str(tmp_path / name)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1


def test_a_text_file_as_weights_in_a_fresh_process_is_one_line(tmp_path: Path) -> None:
    _text(tmp_path / "bad.txt")
    (tmp_path / "raw.pth").write_bytes(pickle.dumps({"a": 1}, protocol=4))  # torch warns about protocol 4
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    command = [
        sys.executable,
        "-m",
        "deblurkit",
        "deblur",
        str(tmp_path / "x.png"),
        "-o",
        str(tmp_path / "out"),
    ]
    for weights in ("bad.txt", "raw.pth"):
        result = subprocess.run(
            [*command, "--model", "nafnet-tiny", "--weights", str(tmp_path / weights)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr.startswith(f"error: {weights} ") and result.stderr.count("\n") == 1, (
            result.stderr
        )
