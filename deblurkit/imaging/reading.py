"""Reading images for scoring and deblurring: the file's own sample type kept, orientation applied.

``read_image`` returns pixels as H×W×C numpy arrays (C = 1 or 3) in the file's own sample type
(uint8, uint16 or float32) with any alpha channel split off, and raises :class:`ImageReadError` with
a one-line message for anything it cannot read. Pillow decodes everything it can hold exactly;
16-bit RGB(A) PNGs are decoded by Pillow twice (high and low bytes) and TIFFs Pillow cannot hold
exactly or read (16-bit RGB, float RGB, float64 grey, planes stored apart) are read with ``tifffile``.
CMYK becomes RGB through its embedded ICC profile (Pillow's plain formula without one). Refused:
animations and multi-page files (only the first frame would be deblurred), float samples that are NaN
or infinite, signed integer samples (Pillow would wrap them around), JPEGs too small for the size
their header declares (libjpeg would fill the rest with grey), and pipes or devices named like images.
``read_size`` reads the size from the header alone, with the same errors.
"""

from __future__ import annotations

import contextlib
import io
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..errors import ImageReadError, one_line

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "LoadedImage",
    "data_range",
    "from_float",
    "read_image",
    "read_size",
    "to_float",
]

DEFAULT_MAX_PIXELS = 200_000_000
"""Largest image deblurkit reads by default (200 megapixels); each command has an option to raise it."""

# Pillow raw modes that truncate 16-bit PNG samples to 8 bits, and the raw mode that reads the
# other (low) byte of each sample with the same filter stride (grey+alpha: see _png_16bit).
_PNG_LOW_BYTE_RAWMODE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": ""}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)
# Formats whose extra frames are more pictures (animation frames, pages). Not MPO, whose extra frames
# are previews and depth maps of the first, nor PSD, whose "frames" are the layers of the composite.
_FRAME_FORMATS = ("GIF", "PNG", "WEBP", "TIFF", "FLI", "DCX")
_PAGE_FORMATS = ("TIFF", "DCX")
_TIFF_REDUCED = 1  # NewSubfileType bit: a reduced-resolution copy (thumbnail) of another page
_TIFF_PLANAR = 2  # PlanarConfiguration: each sample in a plane of its own
_TIFF_SIGNED = 2  # SampleFormat: signed integers
_SIGNED = "{path}: signed integer samples are not supported (convert the image to unsigned or float samples)"
_TIFFFILE_PHOTOMETRICS = ("MINISBLACK", "RGB")
_ORIENTATION = 0x0112
_JPEG_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})


@dataclass
class LoadedImage:
    """A decoded image: ``pixels`` is H×W×C (C = 1 or 3) in the file's sample type."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    format: str | None
    icc_profile: bytes | None
    exif: bytes | None
    path: Path

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])


def data_range(dtype: np.dtype) -> float:
    """The range samples of a type span: 255 for uint8, 65535 for uint16, 1 otherwise (floats in [0, 1])."""
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


def to_float(array: np.ndarray) -> np.ndarray:
    """Samples as float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats unchanged."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise TypeError(f"unsupported sample type {array.dtype}")


def from_float(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float results back to a sample type: integers clipped to [0, 1], scaled and rounded.

    For integer types ``values`` is used as scratch space (overwritten), to spare a copy of big images.
    """
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype, copy=False)
    top = 255 if dtype == np.uint8 else 65535
    np.clip(values, 0, 1, out=values)
    values *= top
    return np.rint(values, out=values).astype(dtype)


def _open(fp: io.BufferedReader, filename: str) -> Image.Image:
    """``Image.open`` minus Pillow's global decompression-bomb limit: ``read_image`` applies its own."""
    Image.preinit()
    prefix = fp.read(16)
    for loader in (None, Image.init):
        if loader is not None:
            loader()
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            try:
                accepted = accept is None or accept(prefix)
                if accepted and not isinstance(accepted, str):
                    fp.seek(0)
                    return factory(fp, filename)
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise UnidentifiedImageError("not a recognised image format")


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _check_size(width: int, height: int, max_pixels: int, path: Path) -> None:
    if width * height > max_pixels:
        raise ImageReadError(
            f"{path}: image is too large ({width}×{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,})"
        )


def _jpeg_huffman_coded(fp: io.BufferedReader) -> bool:
    """Whether a JPEG's frame is Huffman-coded (SOF0-3, 5-7): walks the marker segments up to the
    frame header; False for arithmetic coding and for anything it cannot follow."""
    start = fp.tell()
    try:
        fp.seek(2)
        while True:
            head = fp.read(4)
            if len(head) < 4 or head[0] != 0xFF:
                return False
            marker, length = head[1], struct.unpack(">H", head[2:])[0]
            if marker == 0xFF:  # fill byte before a marker
                fp.seek(-3, io.SEEK_CUR)
                continue
            if marker in _JPEG_HUFFMAN_FRAMES:
                return True
            if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xCC)) or marker == 0xDA or length < 2:
                return False  # an arithmetic-coded frame, scan data before any frame header, a bad length
            fp.seek(length - 2, io.SEEK_CUR)
    finally:
        fp.seek(start)


def _check_jpeg_data(image: Image.Image, fp: io.BufferedReader, size: int, path: Path) -> None:
    """Refuse a JPEG too small for the size its header declares (a bomb, or a file cut short that kept
    its end marker: libjpeg would fill the missing part with grey and report no error).

    Every block of a Huffman-coded JPEG carries at least a one-bit DC code, so the file holds at least
    one bit per MCU (of ``8·hmax × 8·vmax`` pixels).
    """
    sampling = [(h, v) for _, h, v, _ in getattr(image, "layer", [])] or [(1, 1)]
    h_max, v_max = max(max(h for h, _ in sampling), 1), max(max(v for _, v in sampling), 1)
    width, height = image.size
    mcus = -(-width // (8 * h_max)) * -(-height // (8 * v_max))
    needed = mcus // 8
    if size < needed and _jpeg_huffman_coded(fp):
        raise ImageReadError(
            f"{path}: file is truncated or corrupt (a {width}×{height} JPEG needs at least "
            f"{needed:,} bytes, the file has {size:,})"
        )


def _frame_count(image: Image.Image) -> int:
    """Pictures in an opened file: animation frames, or TIFF pages other than reduced-resolution copies."""
    if image.format not in _FRAME_FORMATS:
        return 1
    count = int(getattr(image, "n_frames", 1))
    if image.format != "TIFF" or count == 1:
        return count
    full = 0
    for index in range(count):
        image.seek(index)
        full += not int(image.tag_v2.get(254, 0)) & _TIFF_REDUCED
    image.seek(0)
    return full


def _check_single(count: int, fmt: str | None, path: Path) -> None:
    """Refuse animations and multi-page files: deblurring only the first frame would drop the rest."""
    if count > 1:
        what = "pages" if fmt in _PAGE_FORMATS else "frames"
        raise ImageReadError(
            f"{path} has {count} {what}; deblurkit deblurs single images — extract the {what} first"
        )


def _check_finite(array: np.ndarray | None, path: Path) -> None:
    """Refuse float samples that are NaN or infinite (min and max propagate both, without a mask copy)."""
    if array is None or array.dtype.kind != "f" or not array.size:
        return
    if not (np.isfinite(array.min()) and np.isfinite(array.max())):
        raise ImageReadError(f"{path}: holds NaN or infinite samples; deblurkit needs finite values")


def _srgb_from_cmyk(image: Image.Image) -> tuple[Image.Image, bytes | None]:
    """CMYK → RGB through the embedded ICC profile where ImageCms can, else Pillow's plain formula."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if converted is not None:
                return converted, srgb.tobytes()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return image.convert("RGB"), None


def _split(array: np.ndarray, has_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if array.ndim == 2:
        array = array[:, :, None]
    if has_alpha:
        return np.ascontiguousarray(array[:, :, :-1]), np.ascontiguousarray(array[:, :, -1])
    return np.ascontiguousarray(array), None


def _pillow_pixels(image: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Pixels, alpha and bit depth of an oriented Pillow image in one of the modes Pillow holds exactly."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)[:, :, None], None, 16
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError(f"{path}: 32-bit integer samples outside 0..65535 are not supported")
        return values.astype(np.uint16)[:, :, None], None, 16
    if mode == "F":
        return np.asarray(image, dtype=np.float32)[:, :, None], None, 32
    if mode in ("L", "LA", "RGB", "RGBA"):
        pixels, alpha = _split(np.asarray(image), has_alpha=mode.endswith("A"))
        return pixels, alpha, 8
    if mode == "1":
        return np.asarray(image.convert("L"))[:, :, None], None, 8
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        pixels, alpha = _split(np.asarray(image.convert("RGBA" if has_alpha else "RGB")), has_alpha)
        return pixels, alpha, 8
    if mode in ("La", "RGBa", "RGBX", "YCbCr", "LAB", "HSV"):
        has_alpha = mode in ("La", "RGBa")
        try:
            converted = image.convert("RGBA" if has_alpha else "RGB")
        except ValueError as err:
            raise ImageReadError(f"{path}: cannot convert {mode} to RGB: {one_line(err)}") from err
        pixels, alpha = _split(np.asarray(converted), has_alpha)
        return pixels, alpha, 8
    raise ImageReadError(f"{path}: unsupported image mode {mode!r}")


def _png_16bit(path: Path, rawmode: str, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit RGB/RGBA/grey+alpha PNG, which Pillow would truncate to 8 bits.

    Pillow's own PNG decoder runs with a raw mode of the same bytes per pixel (so the PNG filters
    are undone correctly) that keeps the other bytes: grey+alpha is read as the four bytes
    (L high, L low, A high, A low); RGB(A) is read twice, for the high and for the low bytes.
    """
    raws = ("RGBA",) if rawmode == "LA;16B" else (rawmode, _PNG_LOW_BYTE_RAWMODE[rawmode])
    decoded = []
    for raw in raws:
        with path.open("rb") as fp:
            image = _open(fp, str(path))
            _check_size(*image.size, max_pixels, path)
            image.tile = [tile._replace(args=raw) for tile in image.tile]
            image.load()
            decoded.append(np.asarray(ImageOps.exif_transpose(image)).astype(np.uint16))
    if rawmode == "LA;16B":
        b = decoded[0]
        return (b[:, :, 0:1] << 8) | b[:, :, 1:2], (b[:, :, 2] << 8) | b[:, :, 3]
    return _split((decoded[0] << 8) | decoded[1], has_alpha=rawmode.startswith("RGBA"))


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF/TIFF orientation value (1-8) to an H×W(×C) array."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, -1)[:, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(array)) if op else array


def _check_photometric(page: Any, path: Path) -> None:
    """Only grey and RGB samples mean what ``_read_tifffile`` takes them for; CMYK would pass for RGBA."""
    photometric = getattr(page.photometric, "name", str(page.photometric))
    if photometric == "SEPARATED":
        raise ImageReadError(
            f"{path}: {page.bitspersample}-bit CMYK TIFFs are not supported (8-bit CMYK is): "
            "convert it to RGB"
        )
    if photometric not in _TIFFFILE_PHOTOMETRICS:
        raise ImageReadError(f"{path}: unsupported TIFF colour space {photometric}")


def _read_tifffile(path: Path, max_pixels: int) -> LoadedImage:
    """TIFFs Pillow cannot hold exactly or cannot read (16-bit or float LA/RGB/RGBA, float16/64 grey,
    samples stored plane by plane), via tifffile."""
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - tifffile ships with scikit-image
        raise ImageReadError(f"{path}: reading this TIFF needs the 'tifffile' package") from err
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            height, width = page.imagelength, page.imagewidth
            _check_size(width, height, max_pixels, path)
            pages = len(tif.pages)
            _check_single(pages if pages == 1 else sum(not p.is_reduced for p in tif.pages), "TIFF", path)
            _check_photometric(page, path)
            array = page.asarray()
            if int(page.planarconfig) == _TIFF_PLANAR and page.samplesperpixel > 1 and array.ndim == 3:
                array = np.moveaxis(array, 0, -1)  # samples stored plane by plane
            tags = page.tags
            orientation = int(tags["Orientation"].value) if "Orientation" in tags else 1
            icc = tags["InterColorProfile"].value if "InterColorProfile" in tags else None
    except ImageReadError:
        raise
    except Exception as err:  # tifffile raises many types for broken files
        raise ImageReadError(f"{path}: cannot decode TIFF: {one_line(err)}") from err
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported TIFF layout {array.shape} ({array.dtype})")
    if array.dtype.kind == "i":
        raise ImageReadError(_SIGNED.format(path=path))
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        bit_depth = 8 * array.dtype.itemsize
    elif array.dtype.kind == "f" and array.dtype.itemsize <= 8:
        array, bit_depth = array.astype(np.float32, copy=False), 32
    else:
        raise ImageReadError(f"{path}: unsupported TIFF sample type {array.dtype}")
    pixels, alpha = _split(_orient(array, orientation), has_alpha=array.shape[2] in (2, 4))
    if pixels.shape[2] == 3:
        mode = "RGB" if alpha is None else "RGBA"
    else:
        mode = "LA" if alpha is not None else {8: "L", 16: "I;16", 32: "F"}[bit_depth]
    return LoadedImage(
        pixels,
        alpha,
        bit_depth,
        mode,
        "TIFF",
        bytes(icc) if icc is not None else None,
        None,
        path,
    )


@contextlib.contextmanager
def _decode_errors_reported(path: Path) -> Iterator[None]:
    """Turn what decoders raise inside the block into one :class:`ImageReadError` naming ``path``."""
    try:
        yield
    except ImageReadError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{path}: image is too large: {one_line(err)}") from err
    except MemoryError as err:
        raise ImageReadError(f"{path}: not enough memory to decode the image") from err
    except _DECODE_ERRORS as err:
        reason = one_line(err)
        if "truncated" in reason.lower():
            raise ImageReadError(f"{path}: file is truncated (incomplete image data)") from err
        raise ImageReadError(f"{path}: cannot decode image: {reason}") from err


def read_size(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) of an image as :func:`read_image` would return it, from its header alone; the
    same :class:`ImageReadError` for a missing, empty, unrecognised or too large file."""
    path = Path(path)
    _check_file(path)
    with _decode_errors_reported(path), path.open("rb") as fp:
        try:
            image = _open(fp, str(path))
        except UnidentifiedImageError:
            fp.seek(0)
            if fp.read(4) in _TIFF_MAGIC:  # what _read_tifffile reads
                return read_image(path, max_pixels=max_pixels).pixels.shape[:2]
            raise ImageReadError(f"{path}: not an image (or a format Pillow cannot read)") from None
        width, height = image.size
        _check_size(width, height, max_pixels, path)
        orientation = image.getexif().get(_ORIENTATION, 1)
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``path`` fully, orientation applied; every failure is an :class:`ImageReadError`."""
    path = Path(path)
    image = _decode(path, max_pixels)
    _check_finite(image.pixels, path)
    _check_finite(image.alpha, path)
    return image


def _check_file(path: Path) -> int:
    """The size in bytes of the file ``path``; an :class:`ImageReadError` where it is no such file,
    a folder, a pipe or device (reading could block or never end) or empty."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read: {one_line(err)}") from err
    except ValueError:  # a NUL byte in the name
        raise ImageReadError(f"{str(path)!r}: not a valid file name (it holds a NUL byte)") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(f"{path}: is a folder, not an image")
    if not stat.S_ISREG(info.st_mode):  # a pipe or a device: reading it could block or never end
        raise ImageReadError(f"{path}: not a regular file (a pipe, socket or device)")
    if info.st_size == 0:
        raise ImageReadError(f"{path}: file is empty (0 bytes)")
    return info.st_size


def _decode(path: Path, max_pixels: int) -> LoadedImage:
    """The image in ``path``; single frame, sample values not yet checked."""
    size = _check_file(path)
    with _decode_errors_reported(path), path.open("rb") as fp:
        magic = fp.read(4)
        fp.seek(0)
        try:
            image = _open(fp, str(path))
        except UnidentifiedImageError:
            if magic in _TIFF_MAGIC:
                return _read_tifffile(path, max_pixels)
            raise ImageReadError(f"{path}: not an image (or a format Pillow cannot read)") from None
        _check_size(*image.size, max_pixels, path)
        fmt, mode = image.format, image.mode
        if fmt == "JPEG":
            _check_jpeg_data(image, fp, size, path)
        _check_single(_frame_count(image), fmt, path)
        rawmode = image.tile[0].args if fmt == "PNG" and image.tile else None
        bits = image.tag_v2.get(258) if fmt == "TIFF" else None
        if fmt == "TIFF" and _TIFF_SIGNED in _as_tuple(image.tag_v2.get(339, ())):
            raise ImageReadError(_SIGNED.format(path=path))  # Pillow would wrap them around
        if fmt == "TIFF" and isinstance(bits, tuple) and len(bits) > 1 and max(bits) > 8:
            return _read_tifffile(path, max_pixels)
        icc = image.info.get("icc_profile")
        image.load()
        oriented = ImageOps.exif_transpose(image)
        exif = oriented.info.get("exif")
        if exif is None and oriented.getexif():
            exif = oriented.getexif().tobytes()
        if rawmode in _PNG_LOW_BYTE_RAWMODE:
            pixels, alpha = _png_16bit(path, rawmode, max_pixels)
            return LoadedImage(pixels, alpha, 16, mode, fmt, icc, exif, path)  # fresh arrays
        if oriented.mode == "CMYK":
            oriented, icc = _srgb_from_cmyk(oriented)
        pixels, alpha, bit_depth = _pillow_pixels(oriented, path)
    return LoadedImage(
        _writable(pixels), alpha if alpha is None else _writable(alpha), bit_depth, mode, fmt, icc, exif, path
    )


def _writable(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable array (Pillow's array views are read-only)."""
    return np.require(array, requirements=["C", "W"])
