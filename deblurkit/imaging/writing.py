"""Writing deblurred images: same mode and bit depth as the input, metadata carried, atomically.

``write_image`` encodes to a hidden temporary file beside the target and renames it into place, so
an output exists only once it is complete. 8-bit images and 16-bit grayscale go through Pillow;
16-bit RGB/RGBA/LA PNGs (which Pillow cannot write) through a small PNG encoder here; 16-bit and float
multi-channel TIFFs through ``tifffile``. ICC profiles and EXIF (orientation reset to 1, since the
pixels are already upright) are carried over unless ``strip_metadata``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..errors import DeblurkitError
from .atomic import write_atomic
from .reading import LoadedImage

__all__ = ["WRITE_FORMATS", "output_format", "write_image"]

WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
"""Output file suffixes and the format each writes."""

_ORIENTATION = 0x0112
_LOSSLESS_INPUTS = ("PNG", "TIFF", "BMP", "GIF", "PPM", "TGA")
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # samples per pixel -> gray, gray+alpha, RGB, RGBA
_PNG_IDAT_BYTES = 1 << 20


def output_format(path: str | Path) -> str:
    """The format a path's suffix asks for (``PNG``, ``JPEG``, ``TIFF``, ``WEBP`` or ``BMP``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITE_FORMATS:
        known = ", ".join(sorted({s.lstrip(".") for s in WRITE_FORMATS}))
        raise DeblurkitError(f"cannot write {suffix or 'files without a suffix'} images (use one of {known})")
    return WRITE_FORMATS[suffix]


def _exif(data: bytes | None) -> Image.Exif | None:
    """The EXIF block with its orientation reset to 1 (top-left)."""
    if not data:
        return None
    exif = Image.Exif()
    try:
        exif.load(data)
    except (SyntaxError, ValueError, struct.error, OSError):
        return None
    if _ORIENTATION in exif:
        exif[_ORIENTATION] = 1
    return exif


def _to_8bit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    scale = 255 / 65535 if array.dtype == np.uint16 else 255
    return np.rint(np.clip(array.astype(np.float32) * np.float32(scale), 0, 255)).astype(np.uint8)


def _to_16bit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint16:
        return array
    scale = 257 if array.dtype == np.uint8 else 65535
    return np.rint(np.clip(array.astype(np.float32) * np.float32(scale), 0, 65535)).astype(np.uint16)


def _was_lossless(like: LoadedImage) -> bool:
    """True when the input was stored losslessly (WebP: a ``VP8L`` bitstream)."""
    if like.format == "WEBP":
        try:
            with open(like.path, "rb") as handle:
                return b"VP8L" in handle.read(64)
        except OSError:
            return False
    return like.format in _LOSSLESS_INPUTS


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16(samples: np.ndarray, icc: bytes | None, exif: Image.Exif | None) -> bytes:
    """A 16-bit PNG of an H×W×C uint16 array (C = 1..4), every row with the "Up" filter."""
    height, width, channels = samples.shape
    rows = samples.astype(">u2").reshape(height, width * channels).view(np.uint8)
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]
    raw = np.hstack([np.full((height, 1), 2, np.uint8), filtered])
    chunks = [
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, _PNG_COLOUR_TYPES[channels], 0, 0, 0)),
    ]
    if icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if exif is not None:
        chunks.append(_png_chunk(b"eXIf", exif.tobytes().removeprefix(b"Exif\x00\x00")))
    compressed = zlib.compress(raw.tobytes(), 6)
    chunks += [
        _png_chunk(b"IDAT", compressed[i : i + _PNG_IDAT_BYTES])
        for i in range(0, len(compressed), _PNG_IDAT_BYTES)
    ]
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


def _tifffile(handle: BinaryIO, samples: np.ndarray, icc: bytes | None, has_alpha: bool) -> None:
    import tifffile

    photometric = "minisblack" if samples.shape[2] <= 2 else "rgb"
    tifffile.imwrite(
        handle,
        samples if samples.shape[2] > 1 else samples[:, :, 0],
        photometric=photometric,
        extrasamples=("unassalpha",) if has_alpha else None,
        compression="zlib",
        iccprofile=icc,
    )


def _pillow_image(samples: np.ndarray) -> Image.Image:
    """A Pillow image of an H×W×C array Pillow holds exactly (8-bit L/LA/RGB/RGBA, 16-bit or float L)."""
    if samples.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(samples[:, :, 0]))
    return Image.fromarray(np.ascontiguousarray(samples))


def _pillow_options(fmt: str, like: LoadedImage, quality: int) -> dict:
    if fmt == "JPEG":
        return {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    if fmt == "WEBP":
        return {"lossless": True} if _was_lossless(like) else {"quality": quality}
    if fmt == "PNG":
        return {"compress_level": 6}
    if fmt == "TIFF":
        return {"compression": "tiff_adobe_deflate"}
    return {}


def _prepare(
    fmt: str, pixels: np.ndarray, alpha: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Samples and alpha in what ``fmt`` can hold, and a note for each thing that had to change."""
    notes = []
    if fmt in ("JPEG", "BMP") and alpha is not None:
        alpha = None
        notes.append(f"alpha dropped ({fmt} has no alpha channel)")
    if fmt == "WEBP" and pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
        notes.append("grayscale written as RGB (WebP has no grayscale)")
    if fmt in ("JPEG", "WEBP", "BMP") and pixels.dtype != np.uint8:
        notes.append(f"{pixels.dtype} samples written as 8-bit ({fmt} holds 8 bits)")
        pixels = _to_8bit(pixels)
    if fmt == "PNG" and pixels.dtype == np.float32:
        notes.append("float samples written as 16-bit (PNG holds integers)")
        pixels = _to_16bit(pixels)
    if alpha is not None and alpha.dtype != pixels.dtype:
        alpha = _to_8bit(alpha) if pixels.dtype == np.uint8 else _to_16bit(alpha)
    return pixels, alpha, notes


def write_image(
    path: str | Path,
    pixels: np.ndarray,
    *,
    like: LoadedImage,
    alpha: np.ndarray | None = None,
    quality: int = 95,
    strip_metadata: bool = False,
) -> list[str]:
    """Write H×W×C ``pixels`` (C = 1 or 3, the input's sample type) to ``path`` in its suffix's format.

    ``like`` is the input the pixels came from: its ICC profile and EXIF are carried over (unless
    ``strip_metadata``) and, for WebP, its losslessness. ``alpha`` (H×W) is written as the alpha
    channel where the format has one. Returns notes on anything the format could not keep.
    """
    path = Path(path)
    fmt = output_format(path)
    pixels, alpha, notes = _prepare(fmt, pixels, alpha)
    icc = None if strip_metadata else like.icc_profile
    exif = None if strip_metadata else _exif(like.exif)
    samples = pixels if alpha is None else np.concatenate([pixels, alpha[:, :, None]], axis=2)
    exact_in_pillow = samples.dtype == np.uint8 or samples.shape[2] == 1
    if fmt == "PNG" and not exact_in_pillow:
        data = _png16(samples, icc, exif)
        write_atomic(path, lambda handle: handle.write(data))
        return notes
    if fmt == "TIFF" and not exact_in_pillow:
        if exif is not None:
            notes.append("EXIF not written (multi-channel 16-bit and float TIFFs keep only the ICC profile)")
        write_atomic(path, lambda handle: _tifffile(handle, samples, icc, alpha is not None))
        return notes
    image = _pillow_image(samples)
    options = _pillow_options(fmt, like, quality)
    if icc:
        options["icc_profile"] = icc
    if exif is not None and fmt != "BMP":
        options["exif"] = exif
    write_atomic(path, lambda handle: image.save(handle, format=fmt, **options))
    return notes
