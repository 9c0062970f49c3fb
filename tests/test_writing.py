"""``write_image``: round trips keep size, mode, bit depth and metadata; writes are atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from deblurkit.errors import DeblurkitError
from deblurkit.imaging.atomic import write_atomic
from deblurkit.imaging.reading import read_image
from deblurkit.imaging.writing import output_format, write_image

RNG = np.random.default_rng(0)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _save(path: Path, array: np.ndarray, **options) -> Path:
    Image.fromarray(array).save(path, **options)
    return path


def _u16(*shape: int) -> np.ndarray:
    return RNG.integers(0, 65536, shape, dtype=np.uint16)


def _u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _round_trip(tmp_path: Path, name: str, pixels: np.ndarray, alpha=None, like_name: str = "in.png", **kw):
    like = read_image(_save(tmp_path / like_name, _u8(*pixels.shape[:2], 3)))
    notes = write_image(tmp_path / name, pixels, like=like, alpha=alpha, **kw)
    return read_image(tmp_path / name), notes


@pytest.mark.parametrize(
    ("name", "channels", "with_alpha"),
    [
        (n, c, a)
        for n in ("out.png", "out.tif")
        for c in (1, 3)
        for a in (False, True)
        if (n, c, a) != ("out.tif", 1, True)
    ],
)
def test_16bit_round_trips_exactly(tmp_path, name, channels, with_alpha):
    pixels, alpha = _u16(7, 5, channels), (_u16(7, 5) if with_alpha else None)
    back, notes = _round_trip(tmp_path, name, pixels, alpha)
    assert back.bit_depth == 16 and back.pixels.dtype == np.uint16 and notes == []
    assert np.array_equal(back.pixels, pixels)
    assert (back.alpha is None) == (alpha is None)
    if alpha is not None:
        assert np.array_equal(back.alpha, alpha)


def test_16bit_gray_alpha_tiff(tmp_path):
    # read_image does not read two-sample TIFFs yet, so check the file with tifffile itself.
    import tifffile

    pixels, alpha = _u16(7, 5, 1), _u16(7, 5)
    like = read_image(_save(tmp_path / "in.png", _u8(7, 5, 3)))
    write_image(tmp_path / "out.tif", pixels, like=like, alpha=alpha)
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), np.dstack([pixels[:, :, 0], alpha]))


@pytest.mark.parametrize("name", ["out.png", "out.tif", "out.bmp", "out.webp"])
def test_8bit_rgb_and_rgba_round_trip(tmp_path, name):
    pixels = _u8(6, 9, 3)
    alpha = None if name.endswith("bmp") else _u8(6, 9)
    back, _ = _round_trip(tmp_path, name, pixels, alpha)
    assert back.pixels.shape == (6, 9, 3) and back.pixels.dtype == np.uint8
    assert np.array_equal(back.pixels, pixels)  # the WebP is lossless because the input was a PNG
    if alpha is not None:
        assert np.array_equal(back.alpha, alpha)


def test_grayscale_jpeg_stays_grayscale(tmp_path):
    pixels = np.full((16, 16, 1), 128, np.uint8)
    back, _ = _round_trip(tmp_path, "out.jpg", pixels)
    assert back.mode == "L" and back.pixels.shape == (16, 16, 1)
    assert np.abs(back.pixels.astype(int) - 128).max() <= 1


def test_float_tiff_round_trips(tmp_path):
    pixels = RNG.random((5, 4, 1), dtype=np.float32)
    back, _ = _round_trip(tmp_path, "out.tif", pixels)
    assert back.bit_depth == 32 and np.array_equal(back.pixels, pixels)


def test_what_a_format_cannot_hold_is_noted(tmp_path):
    back, notes = _round_trip(tmp_path, "out.jpg", _u16(8, 8, 3), alpha=_u16(8, 8))
    assert back.bit_depth == 8 and back.alpha is None
    assert any("alpha dropped" in n for n in notes) and any("8-bit" in n for n in notes)


def test_exif_orientation_reset_and_other_tags_kept(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "deblurkit-camera"
    source = _save(tmp_path / "rotated.jpg", _u8(10, 20, 3), exif=exif)
    like = read_image(source)
    assert like.pixels.shape == (20, 10, 3)  # orientation applied on reading
    write_image(tmp_path / "out.jpg", like.pixels, like=like)
    with Image.open(tmp_path / "out.jpg") as out:
        written = out.getexif()
        assert out.size == (10, 20)
    assert written.get(0x0112, 1) == 1 and written[0x010F] == "deblurkit-camera"
    assert read_image(tmp_path / "out.jpg").pixels.shape == (20, 10, 3)


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out.tif", "out16.png", "out16.tif"])
def test_icc_profile_carried_unless_stripped(tmp_path, name):
    like = read_image(_save(tmp_path / "in.png", _u8(4, 4, 3), icc_profile=SRGB))
    pixels = _u16(4, 4, 3) if "16" in name else like.pixels
    write_image(tmp_path / name, pixels, like=like)
    assert read_image(tmp_path / name).icc_profile == SRGB
    write_image(tmp_path / ("s" + name), pixels, like=like, strip_metadata=True)
    assert read_image(tmp_path / ("s" + name)).icc_profile is None


def test_write_is_atomic_and_cleans_stale_temporaries(tmp_path):
    target = tmp_path / "out.png"
    stale = tmp_path / ".out.png.dead.tmp"
    stale.write_bytes(b"half an image")

    def failing(handle):
        handle.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, failing)
    assert list(tmp_path.iterdir()) == []
    write_atomic(target, lambda handle: handle.write(b"complete"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"] and target.read_bytes() == b"complete"


def test_unknown_output_format_is_one_line_error():
    assert output_format("x.TIFF") == "TIFF"
    with pytest.raises(DeblurkitError, match="cannot write .gif"):
        output_format("x.gif")
