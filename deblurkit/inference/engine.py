"""The deblurring engine: :func:`deblur_image` for arrays, :func:`deblur_files` for files and folders.

The image stays in host memory; only tiles (see :mod:`deblurkit.tiling`) go to the device, and their
weighted outputs are added into a float32 host buffer. ``tile="auto"`` measures the model's memory per
pixel once (a probe forward) and picks the largest tiling that fits the free device memory (on CPU, also
at most :data:`CPU_TILE_MEMORY`, beyond which bigger tiles are not faster), the whole image when it
fits. An out-of-memory error halves the tile and redoes the image; a non-finite output in bf16/fp16 is
redone in fp32. Files are decoded and encoded in background threads while the device works, outputs
are written atomically, and ``RANK``/``WORLD_SIZE`` (as ``torchrun`` sets them) shard the file list.
The library never prints: results come back as :class:`FileResult` objects with notes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DeblurkitError
from ..imaging.compare import compare_path, is_comparison, write_compare
from ..imaging.reading import LoadedImage, from_float, read_image, to_float
from ..imaging.writing import WRITE_FORMATS, write_image
from ..zoo.models import load_model
from ..zoo.restorer import Restorer
from .tiling import TilePlan, auto_tile, fit_tile, halve_tile, is_out_of_memory, plan_tiles

__all__ = [
    "CPU_TILE_MEMORY",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MODEL",
    "DEFAULT_OVERLAP",
    "PRECISIONS",
    "Deblurred",
    "Deblurrer",
    "FileResult",
    "Job",
    "UsageError",
    "WriteOptions",
    "collect_jobs",
    "deblur_files",
    "deblur_image",
    "default_output_dir",
    "device_for_rank",
    "distributed_env",
    "find_images",
    "resolve_precision",
    "run_jobs",
    "shard",
    "tile_memory_budget",
]

DEFAULT_MODEL = "maxim-s1-fast"
"""The model ``deblur`` uses when none is named."""
DEFAULT_OVERLAP = 64
"""Default overlap between neighbouring tiles, in pixels."""
DEFAULT_MAX_PIXELS = 200_000_000
"""Default pixel limit per input image (200 megapixels)."""
CPU_TILE_MEMORY = 3 * 2**29
"""Most memory (bytes) an auto-sized tile may use on CPU: 1.5 GiB."""
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_MEMORY_SAFETY = 0.8
_PROBE_SIDE = 256
_FALLBACK_BYTES_PER_PIXEL = 4096.0
_MIN_BYTES_PER_PIXEL = 24.0
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CHANNELS_LAST_ARCHS = ("nafnet", "nafnet-local")


class UsageError(DeblurkitError):
    """A request that cannot be carried out as asked (exit code 2, like a command-line usage error)."""

    exit_code = 2


class _NonFiniteOutputError(Exception):
    """A tile's output held NaN or Inf."""


def resolve_precision(requested: str, model: Restorer, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for a request: auto is bf16 on CUDA where safe, else fp32."""
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r} (use {', '.join(PRECISIONS)})")
    if requested == "auto":
        if device.type == "cuda" and "bf16" in model.precisions and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if requested not in model.precisions:
        safe = ", ".join(model.precisions)
        raise UsageError(f"{model.name} is not verified safe in {requested} (safe: {safe})")
    if requested == "fp16" and device.type == "cpu":
        raise UsageError("fp16 is not supported on CPU: use fp32 or bf16")
    return requested


def _host_available_memory() -> int:
    """Bytes of RAM available to new allocations (MemAvailable), without psutil."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def tile_memory_budget(device: torch.device) -> int:
    """Bytes a tile's forward may use: a share of the free device memory, capped on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * _MEMORY_SAFETY)
    return int(min(_host_available_memory() * _MEMORY_SAFETY, CPU_TILE_MEMORY))


def _rss_and_peak() -> tuple[int, int]:
    with open("/proc/self/status", encoding="ascii") as handle:
        status = handle.read()
    rss, peak = (int(re.search(rf"{key}:\s+(\d+)", status).group(1)) * 1024 for key in ("VmRSS", "VmHWM"))
    return rss, peak


def _peak_memory(run: Callable[[], object], device: torch.device) -> float | None:
    """Extra memory at the peak of ``run()``: CUDA allocator statistics, or the resident-set high-water
    mark on Linux (reset through ``/proc/self/clear_refs``); None where neither can be measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        base, _ = _rss_and_peak()
        run()
        return float(_rss_and_peak()[1] - base)
    except (OSError, AttributeError):
        return None


@dataclass
class Deblurred:
    """An array deblurred: pixels in the input's shape and sample type, and how it was done."""

    pixels: np.ndarray
    precision: str
    tile: tuple[int, int] | None
    notes: list[str] = field(default_factory=list)


class Deblurrer:
    """A loaded model plus inference settings; call it on H×W×C host arrays (C = 1 or 3).

    ``tile``: ``"auto"``, a side in pixels, or 0 for the whole image. ``overlap``: pixels shared by
    neighbouring tiles. ``precision``: see :func:`resolve_precision`. ``compile``: ``torch.compile``
    the network. ``memory_budget``: bytes a tile may use (default: :func:`tile_memory_budget`).
    Grayscale is replicated to RGB for the network and the mean of the three outputs taken. On CUDA,
    convolutional networks (NAFNet) are switched to channels-last memory format. An image side shorter
    than the smallest meaningful tile is mirrored out to it (centred) when the architecture would pad
    with zeros, which would otherwise be most of what the network sees and darken the image.
    """

    def __init__(
        self,
        model: Restorer,
        *,
        tile: int | str = "auto",
        overlap: int = DEFAULT_OVERLAP,
        precision: str = "auto",
        compile: bool = False,
        memory_budget: int | None = None,
    ) -> None:
        if tile != "auto" and (not isinstance(tile, int) or tile < 0):
            raise UsageError(f"tile must be 'auto', 0 or a positive side in pixels, got {tile!r}")
        if overlap < 0:
            raise UsageError(f"the tile overlap must be ≥ 0, got {overlap}")
        self.model = model
        self.device = next(model.parameters()).device
        self.precision = resolve_precision(precision, model, self.device)
        self.overlap = overlap
        self.memory_budget = memory_budget
        self.notes: list[str] = []
        self._rule = model.size_rule
        self._min_tile = fit_tile(max(model.architecture.min_tile, self._rule.multiple), self._rule)
        self._side: int | None = None if tile in ("auto", 0) else self._explicit_side(int(tile))
        self._auto = tile == "auto"
        self._max_pixels: int | None = None
        self._bytes_per_pixel: float | None = None
        if self.device.type == "cuda" and model.architecture.name in _CHANNELS_LAST_ARCHS:
            model.to(memory_format=torch.channels_last)
        native = model.native  # the working resolution is handled once per image, in __call__
        self._forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(native) if compile else native

    def _explicit_side(self, side: int) -> int:
        if side < self._min_tile:
            self.notes.append(
                f"tile raised from {side} to {self._min_tile}, the smallest that keeps "
                f"{self.model.architecture.name}'s inference procedure meaningful"
            )
            return self._min_tile
        return fit_tile(side, self._rule)

    def prepare(self) -> None:
        """Measure the model's memory per pixel now (auto tiling does it on first use otherwise)."""
        if self._auto and self._bytes_per_pixel is None:
            self._bytes_per_pixel = self._probe()

    def _probe(self) -> float:
        side = max(_PROBE_SIDE, self._rule.multiple)
        small = torch.rand(1, 3, *self._rule.padded_size(1, 1), device=self.device)
        probe = torch.rand(1, 3, side, side, device=self.device)
        self._infer(small, self.precision)
        peak = _peak_memory(lambda: self._infer(probe, self.precision), self.device)
        if peak is None:
            return _FALLBACK_BYTES_PER_PIXEL
        # Memory already resident (freed by earlier work) can hide the peak; a forward pass holds at
        # least its fp32 RGB input and output.
        return max(peak / side**2, _MIN_BYTES_PER_PIXEL)

    def _tile_for(self, height: int, width: int) -> int | tuple[int, int]:
        if self._side is not None:
            return self._side
        if not self._auto:
            return 0
        self.prepare()
        assert self._bytes_per_pixel is not None
        budget = self.memory_budget or tile_memory_budget(self.device)
        max_pixels = int(budget / self._bytes_per_pixel)
        if self._max_pixels is not None:
            max_pixels = min(max_pixels, self._max_pixels)
        return auto_tile(height, width, max_pixels, self.overlap, self._rule, self._min_tile)

    def _back_off(self, tile: tuple[int, int]) -> bool:
        """Halve the tile after an out-of-memory error; False when it cannot get smaller."""
        half = halve_tile(max(tile), self._rule, self._min_tile)
        if half is None:
            return False
        if self._auto:
            self._max_pixels = tile[0] * tile[1] // 4
        else:
            self._side = half
        return True

    def _infer(self, x: torch.Tensor, precision: str) -> torch.Tensor:
        autocast = (
            torch.autocast(self.device.type, dtype=_DTYPES[precision])
            if precision in _DTYPES
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return self._forward(x).float()

    def _run(self, pixels: np.ndarray, plan: TilePlan, precision: str) -> np.ndarray:
        out = np.zeros(pixels.shape, np.float32)
        for part in plan:
            host = torch.from_numpy(to_float(pixels[part.slices])).permute(2, 0, 1)[None]
            x = host.to(self.device, non_blocking=True).expand(-1, 3, -1, -1).contiguous()
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            y = self._infer(x, precision)
            if precision != "fp32" and not torch.isfinite(y).all():
                raise _NonFiniteOutputError
            if pixels.shape[2] == 1:
                y = y.mean(1, keepdim=True)
            weights = torch.from_numpy(part.weights()).to(self.device)
            out[part.slices] += (y[0] * weights).permute(1, 2, 0).cpu().numpy()
        return out

    def _small_image_pads(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """(top, bottom), (left, right) mirroring that brings sides below the smallest tile up to it, for
        rules that pad with zeros; None for images the official procedure handles as they are."""
        if self._rule.pad_mode != "constant" or min(height, width) >= self._min_tile:
            return None

        def centred(side: int) -> tuple[int, int]:
            extra = max(self._min_tile - side, 0)
            return extra // 2, extra - extra // 2

        return centred(height), centred(width)

    def __call__(self, pixels: np.ndarray) -> Deblurred:
        """Deblur an H×W×C (or H×W) array of uint8, uint16 or float32 samples in [0, 1]."""
        if pixels.ndim == 2:
            result = self(pixels[:, :, None])
            result.pixels = result.pixels[:, :, 0]
            return result
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or min(pixels.shape[:2]) < 1:
            raise DeblurkitError(f"expected an H×W×C image with C = 1 or 3, got shape {pixels.shape}")
        if pixels.dtype.kind == "f" and not (np.isfinite(pixels.min()) and np.isfinite(pixels.max())):
            raise DeblurkitError("the image holds NaN or infinite samples")
        height, width = pixels.shape[:2]
        scale = self.model.work_scale_for(height, width)
        if scale < 1:
            return self._deblur_rescaled(pixels, scale)
        pads = self._small_image_pads(height, width)
        if pads is None:
            return self._deblur(pixels)
        (top, _), (left, _) = pads
        result = self._deblur(np.pad(pixels, (*pads, (0, 0)), mode="reflect"))
        result.pixels = np.ascontiguousarray(result.pixels[top : top + height, left : left + width])
        return result

    def _deblur_rescaled(self, pixels: np.ndarray, scale: float) -> Deblurred:
        """The model's working resolution: the whole image downscaled once, tiled and run there, and
        the result brought back with the input's finer detail (:meth:`Restorer.rescaled`)."""
        done: list[Deblurred] = []

        def run(small: torch.Tensor) -> torch.Tensor:
            done.append(self._deblur(small[0].permute(1, 2, 0).numpy()))
            return torch.from_numpy(done[-1].pixels).permute(2, 0, 1)[None]

        x = torch.from_numpy(to_float(pixels)).permute(2, 0, 1)[None]
        out = self.model.rescaled(x, scale, run)[0].permute(1, 2, 0).numpy()
        result = done[0]
        result.pixels = from_float(out, pixels.dtype)
        return result

    def _deblur(self, pixels: np.ndarray) -> Deblurred:
        """Tile, run and merge an H×W×C image, retrying in fp32 or with smaller tiles as needed."""
        precision, notes = self.precision, []
        while True:
            tile = self._tile_for(*pixels.shape[:2])
            plan = plan_tiles(*pixels.shape[:2], tile, self.overlap, self._rule)
            try:
                values = self._run(pixels, plan, precision)
            except _NonFiniteOutputError:
                notes.append(f"non-finite values in the {precision} output: redone in fp32")
                precision = "fp32"
                continue
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                values = None
            if values is not None:
                used = None if len(plan) == 1 else plan.tile_size
                return Deblurred(from_float(values, pixels.dtype), precision, used, notes)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            size = "×".join(map(str, plan.tile_size))
            if not self._back_off(plan.tile_size):
                raise DeblurkitError(f"out of memory even with {size} tiles")
            notes.append(f"out of memory with {size} tiles: retried with smaller tiles")


def deblur_image(model: Restorer, pixels: np.ndarray, **options) -> np.ndarray:
    """Deblur one H×W×C (or H×W) array; the result has its shape and sample type.

    ``options`` are :class:`Deblurrer`'s (``tile``, ``overlap``, ``precision``, ...). To deblur many
    arrays, make one :class:`Deblurrer` and call it (the memory probe then runs once).
    """
    return Deblurrer(model, **options)(pixels).pixels


# --- files -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One input file and where its output goes; ``error`` when it is refused before reading."""

    input: Path
    output: Path
    error: str | None = None


@dataclass(frozen=True)
class WriteOptions:
    """How outputs are written."""

    quality: int = 95
    strip_metadata: bool = False
    compare: bool = False


@dataclass
class FileResult:
    """What happened to one file: ``status`` is ``done``, ``skipped`` or ``failed``."""

    input: Path
    output: Path
    status: str
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    megapixels: float = 0.0

    def to_dict(self) -> dict:
        """A JSON-ready dict (paths as strings)."""
        return {
            "input": str(self.input),
            "output": str(self.output),
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "notes": self.notes,
        }


def _readable_suffixes() -> frozenset[str]:
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _folder_images(folder: Path, recursive: bool, exclude: Path | None) -> list[tuple[Path, Path]]:
    suffixes = _readable_suffixes()
    found = []
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        relative = path.relative_to(folder)
        if _is_hidden(relative) or path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if is_comparison(path):
            continue
        if exclude is not None and path.resolve().is_relative_to(exclude):
            continue
        found.append((path, relative if recursive else Path(path.name)))
    return found


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    plain = parts[: next(i for i, part in enumerate(parts) if glob.has_magic(part))]
    return Path(*plain) if plain else Path()


def find_images(
    sources: Sequence[str | Path], *, recursive: bool, exclude: Path | None = None
) -> list[tuple[Path, Path]]:
    """(file, output path relative to the output folder) for each input: files as given, images in
    folders (their subfolders mirrored with ``recursive``), glob matches. Files under ``exclude`` (the
    output folder) are left out of folders."""
    found: list[tuple[Path, Path]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found += _folder_images(path, recursive, exclude)
        elif not path.exists() and glob.has_magic(str(source)):
            matches = sorted(Path(m) for m in glob.glob(str(source), recursive=True))
            if not matches:
                raise UsageError(f"no files match {source}")
            base = _glob_base(str(source))
            found += [(m, m.relative_to(base) if recursive else Path(m.name)) for m in matches if m.is_file()]
        else:
            found.append((path, Path(path.name)))
    seen: set[Path] = set()
    unique = []
    for path, relative in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, relative))
    return unique


def default_output_dir(sources: Sequence[str | Path]) -> Path:
    """``NAME-deblurred`` beside a folder given first; otherwise ``deblurred/`` beside the first file
    (or beside a glob pattern's matches)."""
    first = Path(sources[0])
    if first.is_dir():
        resolved = first.resolve()
        return resolved.parent / f"{resolved.name}-deblurred"
    if not first.exists() and glob.has_magic(str(first)):
        return _glob_base(str(first)) / "deblurred"
    return first.parent / "deblurred"


def _output_suffix(source: Path, ext: str | None) -> str:
    if ext:
        return "." + ext.lower().lstrip(".")
    return source.suffix if source.suffix.lower() in WRITE_FORMATS else ".png"


def collect_jobs(
    sources: Sequence[str | Path],
    output_dir: str | Path | None = None,
    *,
    recursive: bool = False,
    suffix: str = "",
    ext: str | None = None,
) -> tuple[list[Job], Path]:
    """The jobs for some inputs (sorted by input) and the output folder they write to.

    An output that would overwrite its input, or that another input also maps to, is refused (a job
    with an ``error``). Raises :class:`UsageError` when nothing is found.
    """
    if not sources:
        raise UsageError("no inputs given")
    if ext and "." + ext.lower().lstrip(".") not in WRITE_FORMATS:
        known = ", ".join(sorted({s.lstrip(".") for s in WRITE_FORMATS}))
        raise UsageError(f"cannot write {ext!r} images (use one of {known})")
    folder = Path(output_dir) if output_dir is not None else default_output_dir(sources)
    found = find_images(sources, recursive=recursive, exclude=folder.resolve())
    if not found:
        raise UsageError(f"no images found in {', '.join(str(s) for s in sources)}")
    jobs, owners = [], {}
    inputs = {source.resolve() for source, _ in found}
    for source, relative in sorted(found, key=lambda item: str(item[0])):
        output = folder / relative.parent / f"{relative.stem}{suffix}{_output_suffix(source, ext)}"
        key = output.resolve()
        error = None
        if key in inputs:
            error = f"refused: the output {output} would overwrite an input (use -o or --suffix)"
        elif key in owners:
            error = f"refused: {owners[key]} writes the same output {output}"
        owners.setdefault(key, source)
        jobs.append(Job(source, output, error))
    return jobs, folder


def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from ``torchrun``'s environment; (0, 1, 0) without it."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    return rank, world, local


def shard(jobs: Sequence[Job], rank: int, world: int) -> list[Job]:
    """This rank's share of the jobs: every ``world``-th of the list sorted by input, from ``rank``."""
    ordered = sorted(jobs, key=lambda job: str(job.input))
    return [job for i, job in enumerate(ordered) if i % world == rank]


def device_for_rank(device: str, local_rank: int, world: int) -> str:
    """``auto`` becomes ``cuda:LOCAL_RANK`` when several ranks share a CUDA machine."""
    if device == "auto" and world > 1 and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device


def _one_line(err: BaseException) -> str:
    if isinstance(err, DeblurkitError):
        return str(err)
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


@dataclass
class _Read:
    image: LoadedImage | None
    seconds: float
    error: str | None = None


def _read(job: Job, max_pixels: int) -> _Read:
    start = time.perf_counter()
    try:
        return _Read(read_image(job.input, max_pixels=max_pixels), time.perf_counter() - start)
    except Exception as err:
        return _Read(None, time.perf_counter() - start, _one_line(err))


def _write(
    job: Job, image: LoadedImage, result: Deblurred, options: WriteOptions, label: str, seconds: float
) -> FileResult:
    """Write one output (and its comparison first, so the output marks a finished file)."""
    start = time.perf_counter()
    try:
        if options.compare:
            labels = ("before", f"after ({label})")
            write_compare(compare_path(job.output), image.pixels, result.pixels, labels)
        notes = write_image(
            job.output,
            result.pixels,
            like=image,
            alpha=image.alpha,
            quality=options.quality,
            strip_metadata=options.strip_metadata,
        )
    except Exception as err:
        error = f"cannot write {job.output}: {_one_line(err)}"
        return FileResult(job.input, job.output, "failed", seconds, error, result.notes)
    seconds += time.perf_counter() - start
    megapixels = image.height * image.width / 1e6
    return FileResult(job.input, job.output, "done", seconds, None, result.notes + notes, megapixels)


def _done(result: FileResult) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


def run_jobs(
    jobs: Sequence[Job],
    deblurrer: Deblurrer,
    *,
    skip_existing: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    options: WriteOptions | None = None,
    prefetch: int = 2,
) -> Iterator[FileResult]:
    """Deblur the jobs' files, yielding a result per job in order.

    Up to ``prefetch`` files are decoded ahead and as many encoded behind in background threads.
    A file that cannot be read, deblurred or written fails alone; the others go on.
    """
    options = options or WriteOptions()
    todo = []
    for job in jobs:
        if job.error:
            yield FileResult(job.input, job.output, "failed", error=job.error)
        elif skip_existing and job.output.exists():
            yield FileResult(job.input, job.output, "skipped")
        else:
            todo.append(job)
    if not todo:
        return
    deblurrer.prepare()
    label = deblurrer.model.name
    with (
        ThreadPoolExecutor(1, thread_name_prefix="deblurkit-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="deblurkit-write") as writer,
    ):
        reads = deque(reader.submit(_read, job, max_pixels) for job in todo[:prefetch])
        pending: deque[Future] = deque()
        for i, job in enumerate(todo):
            read = reads.popleft().result()
            if i + prefetch < len(todo):
                reads.append(reader.submit(_read, todo[i + prefetch], max_pixels))
            pending.append(_process(job, read, deblurrer, writer, options, label))
            while len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _process(
    job: Job, read: _Read, deblurrer: Deblurrer, writer: ThreadPoolExecutor, options: WriteOptions, label: str
) -> Future:
    """Deblur one read file and queue its write; a future of the file's result."""
    if read.image is None:
        return _done(FileResult(job.input, job.output, "failed", read.seconds, read.error))
    start = time.perf_counter()
    try:
        result = deblurrer(read.image.pixels)
    except Exception as err:
        return _done(FileResult(job.input, job.output, "failed", read.seconds, _one_line(err)))
    seconds = read.seconds + time.perf_counter() - start
    return writer.submit(_write, job, read.image, result, options, label, seconds)


def deblur_files(
    sources: Sequence[str | Path],
    output_dir: str | Path | None = None,
    *,
    model: Restorer | str | Path = DEFAULT_MODEL,
    weights: str | Path | None = None,
    device: str = "auto",
    recursive: bool = False,
    suffix: str = "",
    ext: str | None = None,
    skip_existing: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    options: WriteOptions | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    **deblur_options,
) -> Iterator[FileResult]:
    """Deblur files, folders and glob patterns into ``output_dir``; yields a result per file.

    ``model`` is a loaded :class:`Restorer` or a reference for :func:`~deblurkit.models.load_model`.
    ``rank``/``world_size`` (default: ``torchrun``'s environment) shard the file list; this call
    handles only its own share. ``deblur_options`` go to :class:`Deblurrer`.
    """
    jobs, _ = collect_jobs(sources, output_dir, recursive=recursive, suffix=suffix, ext=ext)
    env_rank, env_world, local_rank = distributed_env()
    world = env_world if world_size is None else world_size
    mine = shard(jobs, env_rank if rank is None else rank, world)
    if not isinstance(model, Restorer):
        model = load_model(model, weights=weights, device=device_for_rank(device, local_rank, world))
    deblurrer = Deblurrer(model, **deblur_options)
    yield from run_jobs(mine, deblurrer, skip_existing=skip_existing, max_pixels=max_pixels, options=options)
