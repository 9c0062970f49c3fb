"""``deblurkit deblur`` end to end: formats, bad files, resume, JSON, usage errors, kill/resume, shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms

from deblurkit.archs import get_architecture
from deblurkit.cli.deblur import deblur
from deblurkit.errors import WeightsError
from deblurkit.imaging.discovery import OUTPUT_MARKER
from deblurkit.imaging.reading import read_image
from deblurkit.zoo.models import build_network, load_model, save_model
from deblurkit.zoo.restorer import Restorer

TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}
RUN_CLI = [sys.executable, "-m", "deblurkit", "deblur"]
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny NAFNet saved as a model folder that ``--model PATH`` accepts."""
    torch.manual_seed(0)
    network = build_network("nafnet", TINY)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model = Restorer(network, get_architecture("nafnet"), TINY, name="tiny")
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _photos(folder: Path, count: int, size: tuple[int, int] = (24, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(_rng(i).integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def _run(model_dir: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(deblur, [*args, "--model", str(model_dir), "--quiet"], input=input)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _inputs(folder: Path) -> dict[str, dict]:
    """One input of each kind the issue names, and what its output must keep."""
    folder.mkdir()
    rgb16 = _rng(1).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    cases = {
        "rgba.png": Image.fromarray(_rng(2).integers(0, 256, (21, 17, 4), dtype=np.uint8)),
        "gray.png": Image.fromarray(_rng(3).integers(0, 256, (19, 23), dtype=np.uint8)),
        "gray16.png": Image.fromarray(_rng(4).integers(0, 65536, (18, 22), dtype=np.uint16)),
        "palette.png": Image.fromarray(_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)).quantize(16),
        "cmyk.jpg": Image.fromarray(_rng(6).integers(0, 256, (16, 24, 3), dtype=np.uint8)).convert("CMYK"),
    }
    for name, image in cases.items():
        image.save(folder / name, icc_profile=SRGB if name == "rgba.png" else None)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_rng(7).integers(0, 256, (12, 28, 3), dtype=np.uint8)).save(
        folder / "rotated.jpg", exif=exif
    )
    import tifffile

    tifffile.imwrite(folder / "rgb16.tif", rgb16, photometric="rgb")
    from deblurkit.imaging.writing import write_image

    like = read_image(folder / "gray.png")
    write_image(folder / "rgb16.png", rgb16, like=like)
    return {path.name: read_image(path) for path in sorted(folder.iterdir()) if not path.name.startswith(".")}


def test_every_kind_of_input_keeps_size_mode_depth_alpha_and_metadata(tmp_path, model_dir):
    inputs = _inputs(tmp_path / "in")
    result = _run(model_dir, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--tile", "0")
    assert result.exit_code == 0, result.output
    assert "8 done, 0 skipped, 0 failed" in result.stderr
    for name, before in inputs.items():
        after = read_image(tmp_path / "out" / name)
        assert after.pixels.shape == before.pixels.shape, name
        assert after.pixels.dtype == before.pixels.dtype and after.bit_depth == before.bit_depth, name
        assert (after.alpha is None) == (before.alpha is None), name
        if before.alpha is not None:
            assert np.array_equal(after.alpha, before.alpha)
    assert read_image(tmp_path / "out" / "rgba.png").icc_profile == SRGB
    with Image.open(tmp_path / "out" / "rotated.jpg") as rotated:
        assert rotated.size == (12, 28) and rotated.getexif().get(0x0112, 1) == 1
    assert read_image(tmp_path / "out" / "palette.png").mode == "RGB"


def test_bad_files_are_reported_and_skipped(tmp_path, model_dir):
    photos = _photos(tmp_path / "photos", 2)
    (photos / "empty.png").write_bytes(b"")
    (photos / "text.jpg").write_text("not an image")
    good = (photos / "img00.png").read_bytes()
    (photos / "truncated.png").write_bytes(good[: len(good) // 2])
    Image.new("RGB", (300, 300)).save(photos / "huge.png")
    result = _run(model_dir, str(photos), "--json", "--tile", "0", "--max-megapixels", "0.05")
    assert result.exit_code == 1
    statuses = {Path(r["input"]).name: (r["status"], r["error"]) for r in _json_lines(result.stdout)}
    assert statuses["img00.png"] == ("done", None) and statuses["img01.png"] == ("done", None)
    for name, reason in [
        ("empty.png", "empty"),
        ("text.jpg", "not an image"),
        ("truncated.png", "truncated"),
    ]:
        assert statuses[name][0] == "failed" and reason in statuses[name][1]
    assert "too large" in statuses["huge.png"][1]
    assert "2 done, 0 skipped, 4 failed" in result.stderr
    assert all(line.count("\n") == 0 for line in result.stderr.splitlines())
    assert "Traceback" not in result.output


def test_rerun_skips_finished_outputs_and_overwrite_redoes_them(tmp_path, model_dir):
    photos = _photos(tmp_path / "photos", 3)
    first = _run(model_dir, str(photos), "--tile", "0")
    assert first.exit_code == 0 and "3 done" in first.stderr
    assert sorted(p.name for p in (tmp_path / "photos-deblurred").glob("[!.]*")) == [
        "img00.png",
        "img01.png",
        "img02.png",
    ]
    again = _run(model_dir, str(photos), "--tile", "0", "--json")
    assert {r["status"] for r in _json_lines(again.stdout)} == {"skipped"}
    redo = _run(model_dir, str(photos), "--tile", "0", "--overwrite", "--json")
    assert {r["status"] for r in _json_lines(redo.stdout)} == {"done"}


def test_suffix_ext_compare_and_stdin_list(tmp_path, model_dir):
    photos = _photos(tmp_path / "photos", 2)
    listing = f"{photos / 'img00.png'}\n\n{photos / 'img01.png'}\n"
    result = _run(
        model_dir,
        "-",
        "-o",
        str(tmp_path / "out"),
        "--suffix",
        "_sharp",
        "--ext",
        "jpg",
        "--compare",
        input=listing,
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "out").glob("[!.]*"))
    assert names == [
        "img00_sharp.compare.jpg",
        "img00_sharp.jpg",
        "img01_sharp.compare.jpg",
        "img01_sharp.jpg",
    ]
    with Image.open(tmp_path / "out" / "img00_sharp.compare.jpg") as compare:
        assert compare.width > 2 * 32 and compare.height > 24


def test_usage_errors_exit_2(tmp_path, model_dir):
    photos = _photos(tmp_path / "photos", 1)
    (tmp_path / "empty").mkdir()
    for args, message in [
        ([str(photos), "--tile", "big"], "'big' is not 'auto', 0 or a tile side"),
        ([str(tmp_path / "empty")], "error: no images found"),
        ([str(photos), "--precision", "fp16", "--device", "cpu"], "error: fp16 is not supported on CPU"),
        ([str(photos), "--ext", "gif"], "Invalid value for '--ext'"),
    ]:
        result = _run(model_dir, *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)


def test_missing_weights_show_the_one_line_error(tmp_path, model_dir):
    photos = _photos(tmp_path / "photos", 1)
    with pytest.raises(WeightsError) as expected:
        load_model("nafnet-gopro-width32")
    result = CliRunner().invoke(deblur, [str(photos), "--model", "nafnet-gopro-width32"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {expected.value}\n"


def _valid_images(folder: Path, temporaries_allowed: bool = False) -> dict[str, int]:
    """Name -> mtime of every output; each must decode completely. Temporary files are hidden."""
    found = {}
    for path in folder.iterdir():
        if path.name == OUTPUT_MARKER:
            continue
        if path.name.startswith("."):
            assert temporaries_allowed and path.suffix == ".tmp", f"left-over file {path.name}"
            continue
        with Image.open(path) as image:
            image.load()
        found[path.name] = path.stat().st_mtime_ns
    return found


def test_kill_and_resume(tmp_path, model_dir):
    photos = _photos(tmp_path / "photos", 40, size=(128, 128))
    out = tmp_path / "out"
    command = [*RUN_CLI, str(photos), "-o", str(out), "--model", str(model_dir), "--json", "--tile", "64"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for _ in range(3):
            assert json.loads(process.stdout.readline())["status"] == "done"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = _valid_images(out, temporaries_allowed=True)
    assert 3 <= len(finished) < 40
    resumed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert resumed.returncode == 0, resumed.stderr
    statuses = {Path(r["input"]).name: r["status"] for r in _json_lines(resumed.stdout)}
    assert {name for name, status in statuses.items() if status == "skipped"} == set(finished)
    assert sum(status == "done" for status in statuses.values()) == 40 - len(finished)
    after = _valid_images(out)
    assert len(after) == 40 and all(after[name] == mtime for name, mtime in finished.items())


def test_two_ranks_share_the_files(tmp_path, model_dir):
    photos = _photos(tmp_path / "photos", 7)
    command = [
        *RUN_CLI,
        str(photos),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(model_dir),
        "--json",
        "--tile",
        "0",
    ]
    processes = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)},
        )
        for rank in range(2)
    ]
    outputs = [process.communicate() for process in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    done = [
        [Path(r["input"]).name for r in _json_lines(stdout) if r["status"] == "done"] for stdout, _ in outputs
    ]
    assert sorted(done[0] + done[1]) == [f"img{i:02d}.png" for i in range(7)]
    assert len(done[0]) == 4 and len(done[1]) == 3
    assert "[rank 1/2]" in outputs[1][1]
    assert len(_valid_images(tmp_path / "out")) == 7
