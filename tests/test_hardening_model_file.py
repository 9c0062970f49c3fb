"""``--model file.safetensors`` whose deblurkit metadata is malformed: one line, exit 1, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from deblurkit.cli import cli
from deblurkit.errors import DeblurkitError, UsageError
from deblurkit.zoo.models import load_model


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("{not json", "m.safetensors: its deblurkit_model metadata is not valid JSON ("),
        ("[1, 2]", "m.safetensors: its deblurkit_model metadata is not a JSON object"),
        (json.dumps({"architecture": "nafnet", "config": "abc"}), 'm: its "config" is not a mapping'),
        (json.dumps({"architecture": "nafnet", "config": 5}), 'm: its "config" is not a mapping'),
        (
            json.dumps({"architecture": "nafnet", "config": {"width": -1}}),
            'm.safetensors: "width" must be an integer between 1 and 1024, got -1',
        ),
    ],
)
def test_malformed_model_metadata_is_one_line(tmp_path: Path, metadata: str, message: str) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"x": torch.zeros(1)}, path, metadata={"deblurkit_model": metadata})
    with pytest.raises(DeblurkitError) as err:
        load_model(path)
    assert str(err.value).startswith(message)
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    result = CliRunner().invoke(
        cli, ["deblur", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "-m", str(path)]
    )
    expected_exit = 2 if isinstance(err.value, UsageError) else 1  # a bad setting is the user's to fix
    assert result.exit_code == expected_exit and isinstance(result.exception, SystemExit), result.output
    assert result.stderr == f"error: {err.value}\n"
