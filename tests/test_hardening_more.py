"""More hostile inputs, one test per class: devices torch names but deblurkit cannot run on, stop
signals, warnings from damaged files, JPEG headers that declare more pixels than the file holds,
signed and plane-by-plane TIFFs, pipes and NUL bytes for paths, binary stdin, folders in the way of
outputs, an output folder that is (or holds) the input, ``--suffix`` with a path separator, long
file names, hostile zoo cards, header checks of training data, synth writing into its source, empty
paths, and photos too small for the report's sharpness."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from cli_results import one_error
from click.testing import CliRunner
from PIL import Image

import deblurkit.inference.batch as batch
from deblurkit.archs import get_architecture
from deblurkit.cli import cli
from deblurkit.cli.errors import signals_interrupt
from deblurkit.errors import DeblurkitError, ImageReadError
from deblurkit.imaging.atomic import write_atomic
from deblurkit.imaging.discovery import DataError, DataScan, Pair, read_list
from deblurkit.imaging.reading import read_image, read_size
from deblurkit.inference.device import DeviceError, resolve_device
from deblurkit.synthesis.blur import Degradation
from deblurkit.synthesis.pairs import synthesize_pairs
from deblurkit.training.data import check_pairs
from deblurkit.zoo.cards import all_entries
from deblurkit.zoo.models import build_network, save_model
from deblurkit.zoo.restorer import Restorer

TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Restorer(build_network("nafnet", TINY), get_architecture("nafnet"), TINY, name="tiny")
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny")


def _photo(path: Path, size: tuple[int, int] = (24, 32), **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **options)
    return path


def _deblur(model_dir: Path, *args: str, **kwargs):
    command = ["deblur", *args, "--model", str(model_dir), "-q", "--tile", "0"]
    return CliRunner().invoke(cli, command, **kwargs)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --- devices -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["meta", "xpu", "hpu", "vulkan"])
def test_a_device_torch_names_but_deblurkit_cannot_use_is_a_usage_error(
    tmp_path: Path, model_dir: Path, device: str
) -> None:
    with pytest.raises(DeviceError, match="not supported"):
        resolve_device(device)
    result = _deblur(
        model_dir, str(_photo(tmp_path / "a.png")), "-o", str(tmp_path / "out"), "--device", device
    )
    assert (
        one_error(result, 2)
        == f"error: device {device!r} is not supported (use auto, cpu, cuda, cuda:N or mps)"
    )


# --- stop signals --------------------------------------------------------------------------------------


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_temporary(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        _photo(tmp_path / "photos" / f"img{i}.png")
    real_write = batch.write_image

    def write_then_terminate(path, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the main thread waits on this write
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(batch, "write_image", write_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    result = _deblur(model_dir, str(tmp_path / "photos"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 128 + signal.SIGTERM, result.output
    assert "terminated" in result.stderr and "Traceback" not in result.output
    # As at the exit of a real process, the run's threads are let finish the write in progress first.
    for thread in threading.enumerate():
        if thread.name.startswith("deblurkit-"):
            thread.join(timeout=30)
    assert _leftovers(tmp_path / "out") == []
    for path in (tmp_path / "out").glob("*.png"):  # what was written is complete
        assert read_image(path).pixels.shape == (24, 32, 3)
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_ignored_stop_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)


# --- warnings ------------------------------------------------------------------------------------------


def test_a_warning_from_a_damaged_file_is_one_line(tmp_path: Path, model_dir: Path) -> None:
    photo = _photo(tmp_path / "a.jpg", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\xff")
    result = _deblur(model_dir, str(photo), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    noisy = [line for line in result.stderr.splitlines() if "EXIF" in line or "warnings.warn" in line]
    assert noisy == ["warning: Corrupt EXIF data. Expecting to read 12 bytes but only got 1."], result.stderr


# --- JPEGs whose header declares more than the file holds -----------------------------------------------


def _declare_size(jpeg: Path, width: int, height: int) -> None:
    data = bytearray(jpeg.read_bytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    jpeg.write_bytes(bytes(data))


def test_a_jpeg_too_small_for_its_declared_size_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _photo(tmp_path / "bomb.jpg")
    _declare_size(path, 10_000, 10_000)  # 100 megapixels in ~1 kB: libjpeg would fill it with grey
    with pytest.raises(ImageReadError, match=r"truncated or corrupt \(a 10000×10000 JPEG needs at least"):
        read_image(path)
    flat = tmp_path / "flat.jpg"  # the most compressible real JPEG still passes
    Image.new("L", (2048, 2048), 7).save(flat, quality=50, optimize=True)
    assert read_image(flat).pixels.shape == (2048, 2048, 1)
    Image.new("RGB", (2048, 2048), (7, 8, 9)).save(flat, progressive=True, optimize=True)
    assert read_image(flat).pixels.shape == (2048, 2048, 3)


# --- TIFF sample formats ---------------------------------------------------------------------------------


def test_signed_tiffs_are_refused_and_planar_or_float64_tiffs_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.int8, np.int16):
        tifffile.imwrite(tmp_path / "signed.tif", rng.integers(-100, 100, (8, 9)).astype(dtype))
        with pytest.raises(ImageReadError, match="signed integer samples are not supported"):
            read_image(tmp_path / "signed.tif")
    planar = rng.integers(0, 65536, (3, 8, 9)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "planar.tif").pixels, np.moveaxis(planar, 0, -1))
    grey = rng.random((8, 9))
    tifffile.imwrite(tmp_path / "f64.tif", grey)
    loaded = read_image(tmp_path / "f64.tif")
    assert loaded.mode == "F" and np.array_equal(loaded.pixels[:, :, 0], grey.astype(np.float32))


# --- pipes, devices and NUL bytes for paths -------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_pipe_named_like_an_image_fails_alone_and_never_blocks(tmp_path: Path, model_dir: Path) -> None:
    _photo(tmp_path / "photos" / "a.png")
    os.mkfifo(tmp_path / "photos" / "pipe.png")
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_size(tmp_path / "photos" / "pipe.png")
    result = _deblur(model_dir, str(tmp_path / "photos"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"failed: {tmp_path / 'photos' / 'pipe.png'}: not a regular file" in result.stderr
    assert "1 done, 0 skipped, 1 failed" in result.stderr


def test_a_nul_byte_in_a_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="NUL"):
        read_image(tmp_path / "a\0b.png")
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(b"a.png,b\x00.png\n")
    with pytest.raises(DataError, match="NUL"):
        read_list(pairs)
    result = CliRunner().invoke(cli, ["score", "--pairs", str(pairs)])
    assert one_error(result, 2) == f"error: {pairs} is not a text list of paths (it holds NUL bytes)"


def test_stdin_lists_any_file_name_and_refuses_image_data(tmp_path: Path, model_dir: Path) -> None:
    odd = _photo(tmp_path / os.fsdecode(b"caf\xe9 new\nline.png"))  # Latin-1 and a newline
    plain = _photo(tmp_path / "plain.png")
    listed = os.fsencode(odd) + b"\0" + os.fsencode(plain) + b"\0"  # find -print0
    result = _deblur(model_dir, "-", "-o", str(tmp_path / "out"), input=listed)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted([odd.name, plain.name])
    result = _deblur(model_dir, "-", "-o", str(tmp_path / "out2"), input=plain.read_bytes())
    assert one_error(result, 2).startswith("error: '-' reads paths from stdin")
    assert not (tmp_path / "out2").exists()


# --- where outputs go -----------------------------------------------------------------------------------


def test_a_folder_in_the_way_of_an_output_fails_and_is_not_skipped(tmp_path: Path, model_dir: Path) -> None:
    photo = _photo(tmp_path / "a.png")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    result = _deblur(model_dir, str(photo), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot write {tmp_path / 'out' / 'a.png'}: a folder of that name is in the way" in result.stderr
    assert "0 done, 0 skipped, 1 failed" in result.stderr and _leftovers(tmp_path) == []


def test_the_output_folder_may_hold_the_input_folder_but_not_be_it(tmp_path: Path, model_dir: Path) -> None:
    photos = tmp_path / "photos"
    _photo(photos / "a.png")
    result = _deblur(model_dir, str(photos), "-o", str(photos))
    assert (
        one_error(result, 2)
        == f"error: the output folder {photos} is the input folder {photos}: choose another -o"
    )
    (tmp_path / "link").symlink_to(photos)
    result = _deblur(model_dir, str(photos), "-o", str(tmp_path / "link"))
    assert "is the input folder" in one_error(result, 2)
    result = _deblur(model_dir, str(photos), "-o", str(tmp_path))  # photos/a.png -> a.png beside it
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "a.png").pixels.shape == (24, 32, 3)


@pytest.mark.parametrize("suffix", ["/../../escaped", "/sub", "a/b"])
def test_a_suffix_with_a_path_separator_is_a_usage_error(
    tmp_path: Path, model_dir: Path, suffix: str
) -> None:
    photo = _photo(tmp_path / "in" / "a.png")
    result = _deblur(model_dir, str(photo), "-o", str(tmp_path / "out" / "x"), "--suffix", suffix)
    assert "holds a path separator" in one_error(result, 2)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "in"]


def test_long_file_names_are_written_and_too_long_ones_fail_alone(tmp_path: Path, model_dir: Path) -> None:
    name = "é" * 120 + ".png"  # 244 bytes: valid, but a temporary named after it all would not be
    write_atomic(tmp_path / name, lambda handle: handle.write(b"data"))
    assert [p.name for p in tmp_path.iterdir()] == [name]
    photo = _photo(tmp_path / "in" / name)
    result = _deblur(model_dir, str(photo), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / name).is_file()
    result = _deblur(model_dir, str(photo), "-o", str(tmp_path / "out2"), "--suffix", "x" * 40)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "File name too long" in result.stderr and "0 done, 0 skipped, 1 failed" in result.stderr
    assert _leftovers(tmp_path) == []


# --- zoo cards ------------------------------------------------------------------------------------------

_CARD = 'name = "{name}"\nsummary = "s"\nlicense = "MIT"\nkind = "deblur"\narchitecture = "nafnet"\n'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("weights = 5\n", "weights must be a table"),
        ("[weights]\nbundled = true\n", "[weights] needs a filename"),
        ("metrics = 5\n", "[metrics] must be a table of finite numbers"),
        ('inference = "tiled"\n', "inference must be a table, got 'tiled'"),
        ('[weights]\nfilename = "x.safetensors"\nsize_bytes = true\n', "size_bytes must be an integer"),
        (None, "cannot be read: 'utf-8' codec can't decode"),
    ],
)
def test_a_hostile_card_of_your_own_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str | None, message: str
) -> None:
    card = tmp_path / "cards" / "mine.toml"
    card.parent.mkdir()
    if extra is None:
        card.write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    else:
        card.write_text(_CARD.format(name="mine") + extra, encoding="utf-8")
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(card.parent))
    with pytest.raises(DeblurkitError, match=f"model card {re.escape(str(card))}.*{re.escape(message)}"):
        all_entries()
    result = CliRunner().invoke(cli, ["zoo", "list"])
    assert message in one_error(result, 1)


# --- training data and synth ----------------------------------------------------------------------------


def test_header_checks_of_training_data_report_bombs_and_empty_files(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (8, 8)).save(bomb)
    data = bytearray(bomb.read_bytes())
    struct.pack_into(">II", data, 16, 60_000, 60_000)  # IHDR width, height, then its CRC
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="too large"):
        read_size(bomb)
    empty, good = tmp_path / "empty.png", _photo(tmp_path / "good.png")
    empty.write_bytes(b"")
    scan = DataScan(
        tmp_path, [Pair(bomb, good, "bomb"), Pair(empty, good, "empty"), Pair(good, good, "good")]
    )
    checked = check_pairs(scan, 8)
    assert [p.name for p in checked.pairs] == ["good"]
    problems = checked.problems["unreadable images"]
    assert "too large" in problems[0] and "file is empty" in problems[1]
    assert read_size(good) == (24, 32)


def test_an_unwritable_training_output_is_one_line(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs"
    _photo(pairs / "blur" / "a.png")
    _photo(pairs / "sharp" / "a.png")
    (tmp_path / "file").write_bytes(b"not a folder")
    arch = json.dumps({"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]})
    command = ["train", "--architecture", "nafnet", "--arch-config", arch, "--data", str(pairs)]
    command += ["--steps", "1", "--crop", "16", "--workers", "0", "-q", "-o", str(tmp_path / "file")]
    result = CliRunner().invoke(cli, command)
    assert one_error(result, 2).startswith(f"error: cannot write into the output folder {tmp_path / 'file'}")
    (tmp_path / "config.toml").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = CliRunner().invoke(
        cli, [*command[:-1], str(tmp_path / "run"), "-c", str(tmp_path / "config.toml")]
    )
    assert "is not a TOML config (not UTF-8 text)" in one_error(result, 2)


def test_synth_into_its_own_source_never_reads_its_pairs_back(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _photo(photos / "a.png")
    for _ in range(2):
        records = list(synthesize_pairs(photos, photos, Degradation(), seed=0))
        assert [r["name"] for r in records] == ["a"]
    assert sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.png")) == [
        "a.png",
        "blur/a.png",
        "sharp/a.png",
    ]
    with pytest.raises(DataError, match="no images found outside the pairs"):
        list(synthesize_pairs(photos / "sharp", photos, Degradation()))


# --- empty paths and reports ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["deblur", "", "-o", "out"],
        ["deblur", "a.png", "-o", ""],
        ["eval", "--data", "pairs", "-o", ""],
        ["synth", "pairs", "-o", ""],
        ["score", "", "a.png"],
    ],
)
def test_an_empty_path_is_a_usage_error_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _photo(tmp_path / "a.png")
    _photo(tmp_path / "pairs" / "blur" / "a.png")
    _photo(tmp_path / "pairs" / "sharp" / "a.png")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "an empty path is not a file" in result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_photo_too_small_for_sharpness_still_gets_its_report(tmp_path: Path, model_dir: Path) -> None:
    tiny, photo = _photo(tmp_path / "tiny.png", (1, 1)), _photo(tmp_path / "photo.png")
    result = _deblur(model_dir, str(tiny), str(photo), "-o", str(tmp_path / "out"), "--report")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "tiny.png" in page and "No sharpness for 1 photo(s)" in page
