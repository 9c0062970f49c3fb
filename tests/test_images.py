"""deblurkit.imaging.reading: sample types kept exactly, orientation applied, one-line errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from deblurkit.errors import ImageReadError
from deblurkit.imaging.reading import read_image, to_float

RNG = np.random.default_rng(7)


def write_png16(path: Path, array: np.ndarray, *, sub_filter: bool = False) -> None:
    """A minimal 16-bit PNG writer (grey, grey+alpha, RGB, RGBA), optionally with the Sub filter."""
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = bytearray()
    for row in array.reshape(height, width * channels):
        data = np.frombuffer(row.astype(">u2").tobytes(), dtype=np.uint8)
        if sub_filter:
            bpp = 2 * channels
            shifted = np.concatenate([np.zeros(bpp, np.uint8), data[:-bpp]])
            raw += b"\x01" + (data - shifted).astype(np.uint8).tobytes()
        else:
            raw += b"\x00" + data.tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


def test_rgb8_png_roundtrip(tmp_path: Path) -> None:
    array = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.pixels.dtype == np.uint8 and image.bit_depth == 8 and image.mode == "RGB"
    assert image.format == "PNG" and image.alpha is None
    np.testing.assert_array_equal(image.pixels, array)
    assert image.pixels.flags.writeable


def test_rgba_and_la_split_alpha(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(image.pixels, rgba[..., :3])
    np.testing.assert_array_equal(image.alpha, rgba[..., 3])
    la = RNG.integers(0, 256, (6, 5, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.pixels.shape == (6, 5, 1)
    np.testing.assert_array_equal(image.alpha, la[..., 1])


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.pixels.shape == (8, 8, 3) and image.alpha is None and image.mode == "P"
    palette.save(tmp_path / "pt.png", transparency=0)
    image = read_image(tmp_path / "pt.png")
    assert image.alpha is not None and image.alpha.shape == (8, 8)


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (7, 4), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png").pixels[..., 0], gray)
    Image.fromarray(gray > 128).save(tmp_path / "b.png")
    image = read_image(tmp_path / "b.png")
    assert set(np.unique(image.pixels)) <= {0, 255} and image.bit_depth == 8


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("sub_filter", [False, True])
def test_png16_exact(tmp_path: Path, channels: int, sub_filter: bool) -> None:
    array = RNG.integers(0, 65536, (5, 7, channels), dtype=np.uint16)
    write_png16(tmp_path / "x.png", array if channels > 1 else array[..., 0], sub_filter=sub_filter)
    image = read_image(tmp_path / "x.png")
    assert image.pixels.dtype == np.uint16 and image.bit_depth == 16
    colour = array[..., :3] if channels >= 3 else array[..., :1]
    np.testing.assert_array_equal(image.pixels, colour)
    if channels in (2, 4):
        np.testing.assert_array_equal(image.alpha, array[..., -1])
    else:
        assert image.alpha is None


def test_tiff_16bit_rgb_and_float(tmp_path: Path) -> None:
    rgb16 = RNG.integers(0, 65536, (6, 9, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    image = read_image(tmp_path / "rgb16.tif")
    assert image.bit_depth == 16 and image.format == "TIFF"
    np.testing.assert_array_equal(image.pixels, rgb16)
    gray_f = RNG.random((6, 9), dtype=np.float32)
    tifffile.imwrite(tmp_path / "f.tif", gray_f)
    image = read_image(tmp_path / "f.tif")
    assert image.pixels.dtype == np.float32 and image.bit_depth == 32 and image.mode == "F"
    np.testing.assert_array_equal(image.pixels[..., 0], gray_f)
    rgb_f = RNG.random((4, 5, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "rgbf.tif", rgb_f, photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "rgbf.tif").pixels, rgb_f)
    gray16 = RNG.integers(0, 65536, (3, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "g16.tif", gray16)
    np.testing.assert_array_equal(read_image(tmp_path / "g16.tif").pixels[..., 0], gray16)


def test_exif_orientation_applied_and_cleared(tmp_path: Path) -> None:
    array = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(array).save(tmp_path / "o.png", exif=exif.tobytes())
    image = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(image.pixels, np.rot90(array, -1))
    assert image.exif is None or Image.Exif().load(image.exif) is None or 0x0112 not in _exif(image.exif)


def _exif(data: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(data)
    return exif


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    image = read_image(tmp_path / "c.jpg")
    assert image.mode == "CMYK" and image.pixels.shape == (3, 4, 3)
    red = image.pixels.reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_to_float() -> None:
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert to_float(np.array([0, 65535], np.uint16)).tolist() == [0.0, 1.0]
    assert to_float(np.array([0.25], np.float32)).dtype == np.float32


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, not an image\n"), "not an image"),
        (lambda p: p.mkdir(), "folder"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, setup, message: str) -> None:
    path = tmp_path / "x.png"
    setup(path)
    with pytest.raises(ImageReadError, match=message) as info:
        read_image(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_truncated_file(tmp_path: Path) -> None:
    array = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as info:
        read_image(tmp_path / "t.png")
    assert "\n" not in str(info.value)


def test_size_limit_is_ours_not_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse (bomb error)
    assert read_image(tmp_path / "big.png").pixels.shape == (30, 40, 3)
    with pytest.raises(ImageReadError, match="too large"):
        read_image(tmp_path / "big.png", max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == 100  # left as the caller set it


def test_16bit_gray_alpha_tiff(tmp_path):
    rng = np.random.default_rng(5)
    array = rng.integers(0, 65536, size=(7, 9, 2), dtype=np.uint16)
    path = tmp_path / "la16.tif"
    tifffile.imwrite(path, array, photometric="minisblack", extrasamples=["unassalpha"])
    loaded = read_image(path)
    assert loaded.mode == "LA"
    assert loaded.bit_depth == 16
    assert np.array_equal(loaded.pixels[:, :, 0], array[:, :, 0])
    assert np.array_equal(loaded.alpha, array[:, :, 1])
