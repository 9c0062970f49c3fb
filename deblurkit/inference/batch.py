"""Deblur files and folders: :func:`deblur_files`, what ``deblurkit deblur`` runs.

Inputs are planned into :class:`Job` objects (input file, output file, or the reason it is refused),
shared out between ``torchrun`` ranks, decoded and encoded in background threads while the device
works, and written atomically. The library never prints: each file's outcome comes back as a
:class:`FileResult` with notes.
"""

from __future__ import annotations

import glob
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DeblurkitError, UsageError, describe, one_line
from ..imaging.atomic import check_writable, is_disk_full
from ..imaging.compare import compare_path, write_compare
from ..imaging.discovery import find_images, glob_base, mark_output_folder
from ..imaging.reading import DEFAULT_MAX_PIXELS, LoadedImage, read_image
from ..imaging.writing import WRITE_FORMATS, write_image
from ..zoo.models import load_model
from ..zoo.restorer import Restorer
from .deblurrer import Deblurrer, RestoredImage

__all__ = [
    "DEFAULT_MODEL",
    "DeblurRun",
    "FileResult",
    "Job",
    "WriteOptions",
    "collect_jobs",
    "deblur_files",
    "default_output_dir",
    "device_for_rank",
    "distributed_env",
    "run_jobs",
    "shard",
]

DEFAULT_MODEL = "maxim-s1-fast"
"""The model ``deblur`` uses when none is named."""


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


def default_output_dir(sources: Sequence[str | Path]) -> Path:
    """``NAME-deblurred`` beside a folder given first; otherwise ``deblurred/`` beside the first file
    (or beside a glob pattern's matches)."""
    first = Path(sources[0])
    if first.is_dir():
        resolved = first.resolve()
        return resolved.parent / f"{resolved.name}-deblurred"
    if not first.exists() and glob.has_magic(str(first)):
        return glob_base(str(first)) / "deblurred"
    return first.parent / "deblurred"


def _real(path: Path) -> Path:
    """``path`` with symbolic links resolved as far as they go (a looping or dangling link stays as it
    is: reading it reports the problem for that file alone)."""
    return Path(os.path.realpath(path))


def _finished(output: Path) -> bool:
    """Whether an output was written by an earlier run: a file (a folder in the way, or a name the
    file system refuses, is not; writing it then fails for that file alone)."""
    try:
        return output.is_file()
    except OSError:  # e.g. a name too long
        return False


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
    if any(sep in suffix for sep in (os.sep, os.altsep, "\0") if sep):
        raise UsageError(f"--suffix {suffix!r} holds a path separator (outputs stay in the output folder)")
    if ext and "." + ext.lower().lstrip(".") not in WRITE_FORMATS:
        known = ", ".join(sorted({s.lstrip(".") for s in WRITE_FORMATS}))
        raise UsageError(f"cannot write {ext!r} images (use one of {known})")
    folder = Path(output_dir) if output_dir is not None else default_output_dir(sources)
    found = find_images(sources, recursive=recursive, exclude=_real(folder))
    if not found:
        same = [s for s in sources if Path(s).is_dir() and _real(Path(s)) == _real(folder)]
        if same:  # its images are taken for earlier outputs, never read
            raise UsageError(f"the output folder {folder} is the input folder {same[0]}: choose another -o")
        raise UsageError(f"no images found in {', '.join(str(s) for s in sources)}")
    jobs, owners = [], {}
    inputs = {_real(source) for source, _ in found}
    for source, relative in sorted(found, key=lambda item: str(item[0])):
        output = folder / relative.parent / f"{relative.stem}{suffix}{_output_suffix(source, ext)}"
        key = _real(output)
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
        return _Read(None, time.perf_counter() - start, describe(err))


def _write(
    job: Job, image: LoadedImage, result: RestoredImage, options: WriteOptions, label: str, seconds: float
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
        if is_disk_full(err):
            stop = "the run stopped (free some space, then run again to resume)"
            raise DeblurkitError(f"cannot write {job.output}: {one_line(err)}; {stop}") from None
        error = describe(err)
        if not (isinstance(err, DeblurkitError) and error.startswith("cannot write ")):  # names its file
            error = f"cannot write {job.output}: {error}"
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
    A file that cannot be read, deblurred or written fails alone; the others go on. A full disk stops
    the run with a :class:`DeblurkitError` (what was written so far is complete; a re-run resumes).
    """
    options = options or WriteOptions()
    todo = []
    for job in jobs:
        if job.error:
            yield FileResult(job.input, job.output, "failed", error=job.error)
        elif skip_existing and _finished(job.output):
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
        return _done(FileResult(job.input, job.output, "failed", read.seconds, describe(err)))
    seconds = read.seconds + time.perf_counter() - start
    return writer.submit(_write, job, read.image, result, options, label, seconds)


@dataclass
class DeblurRun:
    """A planned :func:`deblur_files` run: this process's jobs and the loaded model. Iterating it does
    the work and yields a :class:`FileResult` per job, in order."""

    jobs: list[Job]
    output_dir: Path
    deblurrer: Deblurrer
    rank: int = 0
    world_size: int = 1
    skip_existing: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    options: WriteOptions = field(default_factory=WriteOptions)

    @property
    def notes(self) -> list[str]:
        """What was adjusted before the first image (e.g. a tile size raised to the smallest useful)."""
        return self.deblurrer.notes

    def __len__(self) -> int:
        return len(self.jobs)

    def _writes(self) -> bool:
        """Whether any job will write (not refused, and not skipped for an existing output)."""
        return any(
            job.error is None and not (self.skip_existing and _finished(job.output)) for job in self.jobs
        )

    def __iter__(self) -> Iterator[FileResult]:
        if self._writes():
            check_writable(self.output_dir)
            mark_output_folder(self.output_dir)
        yield from run_jobs(
            self.jobs,
            self.deblurrer,
            skip_existing=self.skip_existing,
            max_pixels=self.max_pixels,
            options=self.options,
        )


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
) -> DeblurRun:
    """Plan deblurring files, folders and glob patterns into ``output_dir``; iterate the result to run.

    ``model`` is a loaded :class:`Restorer` or a reference for :func:`~deblurkit.zoo.models.load_model`
    (loaded here, so a bad model fails before any file is touched). ``rank``/``world_size`` (default:
    ``torchrun``'s environment) shard the file list; this call handles only its own share.
    ``deblur_options`` go to :class:`~deblurkit.inference.deblurrer.Deblurrer`.
    """
    jobs, folder = collect_jobs(sources, output_dir, recursive=recursive, suffix=suffix, ext=ext)
    env_rank, env_world, local_rank = distributed_env()
    world = env_world if world_size is None else world_size
    rank = env_rank if rank is None else rank
    mine = shard(jobs, rank, world)
    if not isinstance(model, Restorer):
        model = load_model(model, weights=weights, device=device_for_rank(device, local_rank, world))
    deblurrer = Deblurrer(model, **deblur_options)
    return DeblurRun(
        mine, folder, deblurrer, rank, world, skip_existing, max_pixels, options or WriteOptions()
    )
