"""Synthetic blur/sharp pair sets on disk (``deblurkit synth``) and sample photographs to try things on."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from zlib import crc32

import numpy as np
from PIL import Image

from ..imaging.atomic import check_writable
from ..imaging.discovery import DataError, outside
from ..imaging.reading import from_float, read_image, to_float
from ..imaging.writing import write_image
from ..training.data import sharp_images
from .blur import Degradation, degrade

__all__ = ["synthesize_pairs", "write_sample_photos"]


def synthesize_pairs(
    source: str | Path, output: str | Path, settings: Degradation, seed: int = 0, *, suffix: str = ".png"
) -> Iterator[dict]:
    """Write ``output/blur`` and ``output/sharp`` from the sharp images below ``source``, and a record
    per image (name, kernel, noise) to ``output/synth.jsonl``; yields the records. Each image's
    randomness is seeded by (seed, its relative path), so adding images leaves the others' unchanged.

    The blurry image keeps the sharp one's sample type (8-bit, 16-bit or float), its bit depth is the
    quantisation unless ``settings.bits`` is 0.
    """
    root, output = Path(source), Path(output)
    images = outside(sharp_images(root), (output / "blur", output / "sharp"))  # not earlier pairs
    if not images:
        raise DataError(f"{root}: no images found outside the pairs in {output}")
    check_writable(output)
    manifest = output / "synth.jsonl"
    manifest.write_text(json.dumps({"seed": seed, "settings": asdict(settings)}) + "\n", encoding="utf-8")
    for path in images:
        name = path.relative_to(root).with_suffix("").as_posix() if root.is_dir() else path.stem
        loaded = read_image(path)
        bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(loaded.pixels.dtype, 0)
        used = replace(settings, bits=bits if settings.bits else 0)
        rng = np.random.default_rng([seed, crc32(name.encode())])
        blurred, info = degrade(to_float(loaded.pixels), rng, used)
        write_image(
            output / "blur" / f"{name}{suffix}", from_float(blurred, loaded.pixels.dtype), like=loaded
        )
        write_image(output / "sharp" / f"{name}{suffix}", loaded.pixels, like=loaded)
        record = {"name": name, **info}
        with manifest.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        yield record


_PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "coins",
)


def write_sample_photos(folder: str | Path, names: Sequence[str] = _PHOTOS) -> list[Path]:
    """Write scikit-image's bundled photographs as PNGs into ``folder`` (a data set to try things on)."""
    import skimage.data

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        if name == "motorcycle_left":
            image = skimage.data.stereo_motorcycle()[0]
        elif name == "motorcycle_right":
            image = skimage.data.stereo_motorcycle()[1]
        else:
            image = getattr(skimage.data, name)()
        path = folder / f"{name}.png"
        Image.fromarray(np.asarray(image)).save(path)
        written.append(path)
    return written
