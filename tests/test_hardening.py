"""Hostile inputs: CMYK with ICC profiles, animations and multi-page files, non-finite floats, tiny
images, and numeric options that are negative, NaN or infinite."""

from __future__ import annotations

import io
import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms

import deblurkit
from deblurkit.cli import cli
from deblurkit.errors import DeblurkitError, ImageReadError
from deblurkit.evaluation.score import Pair, score_pairs
from deblurkit.imaging.reading import read_image
from deblurkit.inference.deblurrer import Deblurrer, deblur_image

_SRGB = ImageCms.createProfile("sRGB")
_TO_LAB = ImageCms.buildTransform(_SRGB, ImageCms.createProfile("LAB"), "RGB", "LAB")


# --- CMYK through the embedded ICC profile ------------------------------------------------------


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _swapped_lab(c: int, m: int, y: int, k: int) -> bytes:
    """Lab (8-bit ICC encoding) of what the plain formula makes of CMYK with cyan and yellow swapped."""
    rgb = Image.new("CMYK", (1, 1), (y, m, c, k)).convert("RGB")
    return bytes(ImageCms.applyTransform(rgb, _TO_LAB).getpixel((0, 0)))


def _cmyk_profile() -> bytes:
    """A minimal ICC v2 CMYK printer profile (lut8 A2B0 to Lab) that swaps cyan and yellow.

    Through it, CMYK (0, 255, 255, 0) is blue, where the plain formula gives red: the colours tell
    which conversion ran.
    """
    clut = b"".join(_swapped_lab(*node) for node in itertools.product((0, 255), repeat=4))
    ramp = bytes(range(256))
    identity = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    a2b0 = b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + identity + ramp * 4 + clut + ramp * 3
    d50 = _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    text = b"swapped CMYK\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(12 + 67)
    tags = [(b"desc", desc), (b"wtpt", b"XYZ " + bytes(4) + d50), (b"A2B0", a2b0)]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for signature, body in tags:
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    body = struct.pack(">I", len(tags)) + table + data
    header = (
        struct.pack(">I", 128 + len(body))
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"prtrCMYKLab "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + d50
        + bytes(48)
    )
    assert len(header) == 128
    return header + body


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_is_converted_through_its_icc_profile(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(path, icc_profile=_cmyk_profile())
    image = read_image(path)
    r, g, b = image.pixels.reshape(-1, 3).mean(axis=0)
    assert b > 200 and r < 60 and g < 60  # the profile's blue, not the plain formula's red
    profile = ImageCms.ImageCmsProfile(io.BytesIO(image.icc_profile))
    assert profile.profile.xcolor_space.strip() == "RGB"  # the pixels' profile now, not the CMYK one


def test_cmyk_with_an_unusable_profile_falls_back_to_the_plain_formula(tmp_path: Path) -> None:
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", icc_profile=b"not a profile")
    image = read_image(tmp_path / "c.jpg")
    r, g, b = image.pixels.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60 and image.icc_profile is None


def test_deep_cmyk_tiff_is_refused_rather_than_read_as_rgba(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "c16.tif", np.zeros((4, 6, 4), np.uint16), photometric="separated")
    with pytest.raises(ImageReadError, match=r"c16\.tif: 16-bit CMYK TIFFs are not supported"):
        read_image(tmp_path / "c16.tif")


# --- animations and multi-page files ---------------------------------------------------------------


def _frames(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (8, 6), (40 * i, 80, 120)) for i in range(count)]


def _animation(path: Path, count: int) -> Path:
    first, *rest = _frames(count)
    first.save(path, save_all=True, append_images=rest, duration=40)
    return path


@pytest.mark.parametrize(
    ("name", "count", "what"),
    [("a.gif", 5, "frames"), ("a.png", 3, "frames"), ("a.webp", 4, "frames"), ("a.tif", 2, "pages")],
)
def test_animations_and_multi_page_files_are_refused(
    tmp_path: Path, name: str, count: int, what: str
) -> None:
    path = _animation(tmp_path / name, count)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(err.value) == (
        f"{path} has {count} {what}; deblurkit deblurs single images — extract the {what} first"
    )


def test_multi_page_deep_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pages16.tif"
    tifffile.imwrite(path, np.zeros((3, 6, 8, 3), np.uint16), photometric="rgb")
    with pytest.raises(ImageReadError, match=r"pages16\.tif has 3 pages"):
        read_image(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_tiff_thumbnail_page_is_not_a_second_picture(tmp_path: Path, dtype: type) -> None:
    path = tmp_path / "thumb.tif"
    tifffile.imwrite(path, np.full((6, 8, 3), 7, dtype), photometric="rgb")
    tifffile.imwrite(path, np.zeros((3, 4, 3), dtype), photometric="rgb", append=True, subfiletype=1)
    assert read_image(path).pixels.shape == (6, 8, 3)


def test_single_frame_files_and_mpo_previews_are_read(tmp_path: Path) -> None:
    _animation(tmp_path / "one.gif", 1)
    assert read_image(tmp_path / "one.gif").pixels.shape == (6, 8, 3)
    first, preview = Image.new("RGB", (8, 6), (200, 0, 0)), Image.new("RGB", (4, 3))
    first.save(tmp_path / "photo.mpo", format="MPO", save_all=True, append_images=[preview])
    assert read_image(tmp_path / "photo.mpo").pixels.shape == (6, 8, 3)


def test_deblur_reports_an_animation_and_goes_on(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    _animation(photos / "anim.gif", 5)
    Image.new("RGB", (8, 6), (90, 90, 90)).save(photos / "still.png")
    result = CliRunner().invoke(cli, ["deblur", str(photos), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"failed: {photos / 'anim.gif'} has 5 frames; deblurkit deblurs single images" in result.stderr
    assert "1 done, 0 skipped, 1 failed" in result.stderr
    assert (tmp_path / "out" / "still.png").is_file() and not (tmp_path / "out" / "anim.gif").exists()


# --- non-finite samples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "bad", "photometric"),
    [((6, 8), np.nan, "minisblack"), ((6, 8, 3), np.inf, "rgb"), ((6, 8, 3), -np.inf, "rgb")],
)
def test_float_tiff_with_non_finite_samples_is_refused(tmp_path: Path, shape, bad, photometric) -> None:
    samples = np.full(shape, 0.5, np.float32)
    samples[2, 3] = bad
    path = tmp_path / "hdr.tif"
    tifffile.imwrite(path, samples, photometric=photometric)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(err.value) == f"{path}: holds NaN or infinite samples; deblurkit needs finite values"


def test_non_finite_arrays_are_refused_by_the_engine() -> None:
    model = deblurkit.load_model("nafnet-tiny")
    image = np.full((8, 8, 3), 0.5, np.float32)
    image[0, 0, 0] = np.nan
    with pytest.raises(DeblurkitError, match="NaN or infinite"):
        deblur_image(model, image)


def test_deblur_reports_a_nan_tiff_in_one_line(tmp_path: Path) -> None:
    samples = np.full((6, 8), 0.5, np.float32)
    samples[1, 1] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", samples)
    result = CliRunner().invoke(cli, ["deblur", str(tmp_path / "nan.tif"), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"failed: {tmp_path / 'nan.tif'}: holds NaN or infinite samples" in result.stderr
    assert "Traceback" not in result.output


# --- tiny images -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_model():
    return deblurkit.load_model("nafnet-tiny")


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 7)])
@pytest.mark.parametrize("level", [0.5, 0.8])
def test_tiny_gray_images_keep_their_level_to_the_border(default_model, size, level) -> None:
    gray = np.full((*size, 3), level, np.float32)
    out = deblur_image(default_model, gray)
    assert out.shape == gray.shape
    assert np.abs(out - level).max() < 0.05


def test_tiny_uint8_images_keep_their_level(default_model) -> None:
    out = deblur_image(default_model, np.full((2, 3), 128, np.uint8))
    assert out.shape == (2, 3) and np.abs(out.astype(int) - 128).max() <= 12


def test_normal_sizes_keep_the_official_procedure(default_model) -> None:
    image = np.random.default_rng(0).random((70, 90, 3), dtype=np.float32)
    with torch.inference_mode():
        official = default_model(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(Deblurrer(default_model, tile=0)(image).pixels, official, atol=1e-6)


# --- numeric options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ["--max-megapixels", "nan"],
        ["--max-megapixels", "inf"],
        ["--max-megapixels", "-1"],
        ["--max-megapixels", "0"],
        ["--tile", "nan"],
        ["--tile", "-64"],
        ["--tile-overlap", "-1"],
        ["--tile-overlap", "nan"],
        ["--quality", "nan"],
        ["--quality", "-5"],
    ],
)
def test_deblur_numeric_options_refuse_bad_values_before_any_work(tmp_path: Path, option: list[str]) -> None:
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    result = CliRunner().invoke(
        cli, ["deblur", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), *option]
    )
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option[0]}'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_huge_pixel_limit_means_no_limit(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    args = ["deblur", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "-q", "--max-megapixels", "1e305"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "x.png").is_file()


@pytest.mark.parametrize(
    "option",
    [
        ["--crop-border", "-1"],
        ["--crop-border", "nan"],
        ["--workers", "0"],
        ["--workers", "-2"],
        ["--workers", "nan"],
    ],
)
def test_score_numeric_options_refuse_bad_values(tmp_path: Path, option: list[str]) -> None:
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    result = CliRunner().invoke(cli, ["score", str(tmp_path / "x.png"), str(tmp_path / "x.png"), *option])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option[0]}'" in result.stderr


def test_score_never_starts_more_workers_than_pairs(tmp_path: Path, monkeypatch) -> None:
    import deblurkit.evaluation.score as score_module

    started = []

    class Recording(score_module.ThreadPoolExecutor):
        def __init__(self, max_workers: int) -> None:
            started.append(max_workers)
            assert max_workers <= 1, "a worker per pair at most"
            super().__init__(max_workers)

    monkeypatch.setattr(score_module, "ThreadPoolExecutor", Recording)
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    result = score_pairs([Pair(tmp_path / "x.png", tmp_path / "x.png")], "psnr", device="cpu", workers=10**9)
    assert started == [1] and len(result.scored) == 1
    with pytest.raises(DeblurkitError, match="--workers must be 1 or more"):
        score_pairs([Pair(tmp_path / "x.png", tmp_path / "x.png")], "psnr", device="cpu", workers=-1)


# ---------------------------------------------------------------- messages that mislead


@pytest.mark.parametrize("ref", ["./missing/model.safetensors", "weights.pth", "~/nowhere", "a/b"])
def test_a_missing_path_is_reported_as_missing_not_as_a_zoo_name(ref):
    from deblurkit.errors import ModelNotFoundError
    from deblurkit.zoo.models import resolve_model

    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(ref)
    with pytest.raises(ModelNotFoundError, match="no model called"):
        resolve_model("nafnet-tinyy")


def test_comparison_pictures_are_never_inputs(tmp_path):
    """deblur --compare writes NAME.compare.jpg; deblur, score and training never read them back."""
    from deblurkit.evaluation.score import score_paths
    from deblurkit.imaging.discovery import find_images as deblur_inputs
    from deblurkit.training.data import sharp_images as training_images

    restored, sharp = tmp_path / "restored", tmp_path / "sharp"
    for folder in (restored, sharp):
        folder.mkdir()
        Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(restored / "a.compare.jpg")
    assert [p.name for p, _ in deblur_inputs([restored], recursive=False)] == ["a.png"]
    assert [p.name for p in training_images(restored)] == ["a.png"]
    result = score_paths(restored, sharp, "psnr", device="cpu")
    assert len(result.scored) == 1 and not result.unmatched_restored
