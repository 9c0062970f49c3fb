"""``deblurkit eval``: layouts, protocols, cached outputs, result files, failures and exit codes."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from tinymodels import TINY_NAFNET

from deblurkit.archs import get_architecture
from deblurkit.cli import cli
from deblurkit.evaluation.benchmark import detect_protocol, row_name, run_eval
from deblurkit.zoo.models import build_network, save_model
from deblurkit.zoo.restorer import Restorer


def _tiny_model(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    network = build_network("nafnet", TINY_NAFNET)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return save_model(Restorer(network, get_architecture("nafnet"), TINY_NAFNET, name=folder.name), folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return _tiny_model(root / "tiny-a", 0), _tiny_model(root / "tiny-b", 1)


def _sharp(seed: int, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def _blur(image: np.ndarray) -> np.ndarray:
    padded = np.pad(image.astype(np.float64), ((0, 0), (2, 2), (0, 0)), mode="edge")
    return np.rint(sum(padded[:, i : i + image.shape[1]] for i in range(5)) / 5).astype(np.uint8)


def _gopro(root: Path, scenes: int = 2, frames: int = 2) -> Path:
    """GoPro's test layout: test/<scene>/blur/*.png + test/<scene>/sharp/*.png."""
    for s in range(scenes):
        for f in range(frames):
            sharp = _sharp(10 * s + f)
            for kind, pixels in (("blur", _blur(sharp)), ("sharp", sharp)):
                folder = root / "test" / f"GOPR{s:04d}_11_00" / kind
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(folder / f"{f:06d}.png")
    return root


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def _eval(*args: str):
    return CliRunner().invoke(cli, ["eval", *args, "--quiet"])


def test_gopro_folder_gives_four_result_files_and_an_exact_input_row(tmp_path, models):
    data, out = _gopro(tmp_path / "GoPro"), tmp_path / "out"
    result = _eval("--data", str(data), "-m", str(models[0]), "-o", str(out))
    assert result.exit_code == 0, result.output
    for name in ("results.json", "results.csv", "report.md", "report.html"):
        assert (out / name).is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"]["name"] == "gopro"
    expected = np.mean(
        [
            _psnr(np.asarray(Image.open(p)), np.asarray(Image.open(str(p).replace("/blur/", "/sharp/"))))
            for p in sorted(data.rglob("blur/*.png"))
        ]
    )
    assert abs(saved["means"]["input"]["psnr"] - expected) < 0.01
    assert set(saved["means"]) == {"input", "tiny-a"}
    assert len(saved["images"]) == 4
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8 and {r["row"] for r in rows} == {"input", "tiny-a"}
    assert "| input |" in (out / "report.md").read_text() and "| tiny-a |" in result.stdout


def test_outputs_are_cached_and_a_new_model_runs_alone(tmp_path, models):
    data, out = _gopro(tmp_path / "GoPro", scenes=1), tmp_path / "out"
    assert _eval("--data", str(data), "-m", str(models[0]), "-o", str(out)).exit_code == 0
    first = {p: p.stat().st_mtime_ns for p in (out / "tiny-a").rglob("*.png")}
    assert len(first) == 2
    again = _eval("--data", str(data), "-m", str(models[0]), "-m", str(models[1]), "-o", str(out))
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (out / "tiny-a").rglob("*.png")} == first
    assert len(list((out / "tiny-b").rglob("*.png"))) == 2
    # A changed input is deblurred again; the others are reused.
    changed = sorted(data.rglob("blur/*.png"))[0]
    Image.fromarray(_blur(_sharp(99))).save(changed)
    assert _eval("--data", str(data), "-m", str(models[0]), "-o", str(out)).exit_code == 0
    now = {p: p.stat().st_mtime_ns for p in (out / "tiny-a").rglob("*.png")}
    assert sum(now[p] != first[p] for p in first) == 1


def test_a_bad_image_is_reported_and_the_run_goes_on(tmp_path, models):
    data, out = _gopro(tmp_path / "GoPro", scenes=1), tmp_path / "out"
    sorted(data.rglob("blur/*.png"))[0].write_bytes(b"not a png")
    result = _eval("--data", str(data), "-m", str(models[0]), "-o", str(out))
    assert result.exit_code == 1
    assert "failed:" in result.stderr and "Traceback" not in result.output
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["failures"]) == 2  # the input row and the model row of the same image
    assert saved["means"]["tiny-a"]["psnr"] == pytest.approx(saved["images"][1]["scores"]["tiny-a"]["psnr"])


def test_usage_errors_are_one_line(tmp_path, models):
    data = _gopro(tmp_path / "GoPro", scenes=1)
    two = _eval("--data", str(data), "-m", str(models[0]), "-m", str(models[1]), "--weights", "x.safetensors")
    assert two.exit_code == 2
    bad = _eval("--data", str(data), "--protocol", "nope", "-o", str(tmp_path / "o"))
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    none = _eval("--data", str(empty), "-m", str(models[0]), "-o", str(tmp_path / "o"))
    assert none.exit_code == 2 and none.stderr.count("\n") == 1


def test_layout_detection_and_row_names(tmp_path):
    assert detect_protocol(_gopro(tmp_path / "g", scenes=1, frames=1)) == "gopro"
    (tmp_path / "d" / "test" / "inputC").mkdir(parents=True)
    (tmp_path / "d" / "test" / "target").mkdir(parents=True)
    assert detect_protocol(tmp_path / "d") == "dpdd"
    listing = tmp_path / "RealBlur_J_test_list.txt"
    listing.write_text("RealBlur-J/scene1/gt/gt_1.png RealBlur-J/scene1/blur/blur_1.png\n")
    assert detect_protocol(listing) == "realblur"
    (tmp_path / "p" / "input").mkdir(parents=True)
    assert detect_protocol(tmp_path / "p") == "plain"
    assert row_name("hf:org/model@abc") == "org--model"
    assert row_name("runs/my model/") == "my-model"
    assert row_name("input") == "input-2"
    assert row_name("tiny", ["tiny"]) == "tiny-2"


def test_realblur_lists_pair_the_sharp_image_first(tmp_path, models):
    pytest.importorskip("cv2")
    root = tmp_path / "RealBlur"
    lines = []
    for i in range(2):
        sharp = _sharp(i, (64, 64))
        for kind, pixels in (("gt", sharp), ("blur", _blur(sharp))):
            folder = root / "RealBlur-J" / f"scene{i}" / kind
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{kind}_1.png")
        lines.append(f"RealBlur-J/scene{i}/gt/gt_1.png RealBlur-J/scene{i}/blur/blur_1.png")
    listing = root / "RealBlur_J_test_list.txt"
    listing.write_text("\n".join(lines) + "\n")
    result = run_eval(listing, tmp_path / "out", [str(models[0])], tile=0)
    assert result.protocol.name == "realblur"
    assert all(item.pair.input.parent.name == "blur" for item in result.images)
    assert all("psnr" in item.scores["input"] for item in result.images)


@pytest.mark.slow
def test_default_model_without_model_option_and_a_page_that_stays_inside_out(tmp_path):
    data, out = _gopro(tmp_path / "GoPro", scenes=1, frames=1), tmp_path / "out"
    result = _eval("--data", str(data), "-o", str(out))
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["models"].values()) == ["maxim-s1-fast"]
    page = (out / "report.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and "url(http" not in page and "@import" not in page
    for link in links:
        if link.startswith("#"):
            continue
        target = (out / link).resolve()
        assert target.is_relative_to(out.resolve()) and target.is_file(), link


def test_deblur_report_page_for_photos_without_reference(tmp_path, models):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(_blur(_sharp(i))).save(photos / f"p{i}.png")
    args = ["deblur", str(photos), "-m", str(models[0]), "-o", str(tmp_path / "out"), "--report", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").read_text()
    assert "p0.png" in page and "p1.png" in page and "Sharpness" in page
    again = CliRunner().invoke(cli, args)  # outputs skipped, the page is still written
    assert again.exit_code == 0 and (tmp_path / "out" / "report.html").is_file()
