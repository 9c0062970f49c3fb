"""deblurkit.evaluation.score and the ``score`` command: pairing, failures, output formats, exit codes."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from deblurkit.cli.score import score
from deblurkit.evaluation.score import (
    Pair,
    PairingError,
    pair_folders,
    read_pairs_csv,
    score_pairs,
    score_paths,
)
from deblurkit.metrics import lpips as lpips_metric

REFERENCE = data.astronaut()[:96, :128]


def noisy(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(REFERENCE + rng.normal(0, 6, REFERENCE.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    restored, reference = tmp_path / "restored", tmp_path / "reference"
    (restored / "sub").mkdir(parents=True)
    (reference / "sub").mkdir(parents=True)
    for i, name in enumerate(["a", "b", "sub/c"]):
        Image.fromarray(noisy(i)).save(restored / f"{name}.png")
        Image.fromarray(REFERENCE).save(
            reference / f"{name}.jpg" if name == "b" else reference / f"{name}.png"
        )
    Image.fromarray(REFERENCE).save(reference / "extra.png")
    return restored, reference


def test_pair_folders_by_stem(folders) -> None:
    restored, reference = folders
    pairs, lonely_restored, lonely_reference = pair_folders(restored, reference)
    assert [(p.restored.name, p.reference.name) for p in pairs] == [("a.png", "a.png"), ("b.png", "b.jpg")]
    assert lonely_restored == [] and [p.name for p in lonely_reference] == ["extra.png"]
    pairs, _, _ = pair_folders(restored, reference, recursive=True)
    assert len(pairs) == 3


def test_score_paths_values_and_means(folders) -> None:
    restored, reference = folders
    result = score_paths(restored, reference, "psnr", device="cpu", workers=2)
    assert result.metrics == ("psnr",) and len(result.scored) == 2 and not result.ok  # extra.png unmatched
    expected = peak_signal_noise_ratio(REFERENCE, noisy(0))
    assert result.pairs[0].values["psnr"] == pytest.approx(expected, abs=1e-9)
    assert result.means()["psnr"] == pytest.approx(np.mean([p.values["psnr"] for p in result.scored]))
    assert "psnr" in result.conventions and "samples" in result.conventions


def test_bad_pair_is_reported_and_run_continues(tmp_path: Path) -> None:
    Image.fromarray(REFERENCE).save(tmp_path / "ref.png")
    Image.fromarray(REFERENCE[:50]).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"junk")
    pairs = [
        Pair(tmp_path / "small.png", tmp_path / "ref.png"),
        Pair(tmp_path / "broken.png", tmp_path / "ref.png"),
        Pair(tmp_path / "ref.png", tmp_path / "ref.png"),
    ]
    result = score_pairs(pairs, ["psnr", "ssim"], device="cpu")
    assert "sizes differ" in result.pairs[0].error and "not an image" in result.pairs[1].error
    assert math.isinf(result.pairs[2].values["psnr"]) and result.pairs[2].values["ssim"] == pytest.approx(1.0)
    assert len(result.failed) == 2 and not result.ok


def test_mixed_bit_depths_compare_in_unit_range(tmp_path: Path) -> None:
    gray8 = REFERENCE[..., 0]
    Image.fromarray(gray8).save(tmp_path / "a8.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "a16.png")
    result = score_pairs([Pair(tmp_path / "a8.png", tmp_path / "a16.png")], "psnr,ssim", device="cpu")
    assert math.isinf(result.pairs[0].values["psnr"]) and result.pairs[0].values["ssim"] == pytest.approx(1.0)


def test_pairs_csv(tmp_path: Path) -> None:
    Image.fromarray(REFERENCE).save(tmp_path / "r.png")
    Image.fromarray(noisy(1)).save(tmp_path / "o.png")
    (tmp_path / "pairs.csv").write_text("restored,reference\no.png,r.png\n")
    pairs = read_pairs_csv(tmp_path / "pairs.csv")
    assert pairs == [Pair(tmp_path / "o.png", tmp_path / "r.png")]
    (tmp_path / "bad.csv").write_text("o.png\n")
    with pytest.raises(PairingError, match="row 1 needs two paths"):
        read_pairs_csv(tmp_path / "bad.csv")


def test_cli_table(folders) -> None:
    restored, reference = folders
    result = CliRunner().invoke(score, [str(restored), str(reference), "-m", "psnr,ssim-skimage"])
    assert result.exit_code == 1  # extra.png has no partner
    assert "mean of 2 pairs" in result.output and "conventions:" in result.output
    assert "unmatched: 1 reference file(s)" in result.output
    assert "ssim-skimage:" in result.output


def test_cli_json_and_inf(tmp_path: Path) -> None:
    Image.fromarray(REFERENCE).save(tmp_path / "r.png")
    runner = CliRunner()
    result = runner.invoke(score, [str(tmp_path / "r.png"), str(tmp_path / "r.png"), "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["pairs"][0]["psnr"] == "inf" and payload["pairs"][0]["ssim"] == 1.0
    assert payload["summary"]["count"] == 1 and set(payload["conventions"]) >= {"psnr", "ssim"}


def test_cli_csv(folders) -> None:
    restored, reference = folders
    result = CliRunner().invoke(score, [str(restored), str(reference), "-r", "--csv", "-m", "psnr"])
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["restored", "reference", "psnr", "error"] and rows[-1][0] == "mean"
    assert len(rows) == 5 and result.exit_code == 1


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "psnr,bogus", "a.png", "b.png"],
        ["only-one.png"],
        ["a.png", "b.png", "--json", "--csv"],
        ["--device", "tpu", "a.png", "b.png"],
    ],
)
def test_cli_usage_errors_exit_2(args: list[str]) -> None:
    assert CliRunner().invoke(score, args).exit_code == 2


def test_cli_file_against_folder_exits_2(folders) -> None:
    restored, reference = folders
    result = CliRunner().invoke(score, [str(restored / "a.png"), str(reference)])
    assert result.exit_code == 2 and "error: give two files or two folders" in result.output


def test_cli_lpips_unavailable_is_one_line(folders, monkeypatch: pytest.MonkeyPatch) -> None:
    restored, reference = folders
    lpips_metric._model.cache_clear()
    monkeypatch.setitem(sys.modules, "lpips", None)
    result = CliRunner().invoke(score, [str(restored), str(reference), "-m", "psnr,lpips"])
    lpips_metric._model.cache_clear()
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: lpips-squeeze needs the optional 'lpips' package: pip install lpips "
        "(it ships the LPIPS v0.1 heads; torchvision fetches the backbone once)"
    ]


def test_cli_list_metrics_and_help() -> None:
    runner = CliRunner()
    listed = runner.invoke(score, ["--list-metrics"])
    assert listed.exit_code == 0 and "ssim-matlab (higher is better)" in listed.output
    assert "Examples:" in runner.invoke(score, ["--help"]).output
