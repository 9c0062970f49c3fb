"""``deblurkit deblur``: deblur files, folders and globs; a thin layer over
:func:`deblurkit.inference.batch.deblur_files`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

from ..errors import UsageError
from ..evaluation.reports import write_photo_report
from ..imaging.reading import DEFAULT_MAX_PIXELS
from ..imaging.writing import WRITE_FORMATS
from ..inference.batch import DEFAULT_MODEL, FileResult, WriteOptions, deblur_files
from ..inference.deblurrer import DEFAULT_OVERLAP, PRECISIONS
from .errors import Command
from .params import FiniteFloatRange, PathType

__all__ = ["deblur"]

_EXTENSIONS = sorted({suffix.lstrip(".") for suffix in WRITE_FORMATS})
_NO_PIXEL_LIMIT = 1e12  # megapixels: larger --max-megapixels values (up to 1e308) mean no limit


class TileType(click.ParamType):
    """``auto``, 0 (whole image) or a tile side in pixels."""

    name = "auto|N|0"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            side = int(value)
        except ValueError:
            side = -1
        if side < 0:
            self.fail(f"{value!r} is not 'auto', 0 or a tile side in pixels", param, ctx)
        return side


_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _stdin_paths() -> list[str]:
    """The paths listed on stdin: one a line, or NUL-separated (``find -print0``); names are bytes
    decoded the way the file system's are, so any name on disk can be listed."""
    with click.open_file("-", "rb") as stdin:
        data = stdin.read()
    if b"\0" in data:
        items = [item for item in data.split(b"\0") if item.strip()]
    else:
        items = [line.strip() for line in data.splitlines() if line.strip()]
    if any(_CONTROL.search(item) for item in items):
        raise UsageError("'-' reads paths from stdin (one a line, or NUL-separated), not binary data")
    return [os.fsdecode(item) for item in items]


def _sources(inputs: tuple[str, ...]) -> list[str]:
    """The inputs with ``-`` replaced by the paths listed on stdin (read once)."""
    sources = []
    listed: list[str] | None = None
    for item in inputs:
        if not item:  # Path("") is the current folder
            raise click.BadParameter("an empty path is not a file, folder or pattern", param_hint="INPUTS")
        if item == "-":
            if listed is None:
                listed = _stdin_paths()
                sources += listed
        else:
            sources.append(item)
    return sources


class _Report:
    """Prints per-file lines (stdout for --json, stderr otherwise) and keeps the counts."""

    def __init__(self, as_json: bool, total: int, quiet: bool, prefix: str) -> None:
        self.as_json = as_json
        self.prefix = prefix
        self.counts = {"done": 0, "skipped": 0, "failed": 0}
        self.megapixels = 0.0
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=total, unit="img", file=sys.stderr, disable=True if quiet else None, leave=False
        )

    def add(self, result: FileResult) -> None:
        self.counts[result.status] += 1
        self.megapixels += result.megapixels
        if self.as_json:
            click.echo(json.dumps(result.to_dict()))
        if result.status == "failed":
            error = result.error or ""
            self._say(
                f"failed: {error}"
                if error.startswith(str(result.input))
                else f"failed: {result.input}: {error}"
            )
        for note in result.notes:
            self._say(f"note: {result.input}: {note}")
        self.bar.update()
        self.bar.set_postfix_str(f"{self.megapixels / self.elapsed:.2f} MP/s", refresh=False)

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)

    def _say(self, line: str) -> None:
        self.bar.write(f"{self.prefix}{line}", file=sys.stderr)

    def summary(self) -> str:
        self.bar.close()
        done, skipped, failed = (self.counts[k] for k in ("done", "skipped", "failed"))
        rate = f", {self.megapixels / self.elapsed:.3g} MP/s" if done else ""
        return f"{self.prefix}{done} done, {skipped} skipped, {failed} failed in {self.elapsed:.1f} s{rate}"


@click.command("deblur", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=PathType(file_okay=False, path_type=Path),
    help="Output folder [default: NAME-deblurred beside a folder, deblurred/ beside files].",
)
@click.option("-r", "--recursive", is_flag=True, help="Descend into subfolders; mirror them in the output.")
@click.option(
    "-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Zoo name, hf:org/name or path."
)
@click.option("--weights", type=PathType(dir_okay=False, path_type=Path), help="Override the weight file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="auto: fp32 on CPU, bf16 on CUDA where the architecture is safe in it.",
)
@click.option(
    "--tile",
    type=TileType(),
    default="auto",
    show_default=True,
    help="Tile side in pixels; auto fits the free memory; 0 = whole image.",
)
@click.option(
    "--tile-overlap",
    type=click.IntRange(min=0),
    default=DEFAULT_OVERLAP,
    show_default=True,
    help="Pixels shared by neighbouring tiles (blended with a raised cosine).",
)
@click.option("--suffix", default="", help="Appended to each output's file name, e.g. _sharp.")
@click.option(
    "--ext",
    type=click.Choice(_EXTENSIONS, case_sensitive=False),
    help="Output format [default: the input's; PNG/TIFF keep 16 bits].",
)
@click.option(
    "--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality."
)
@click.option("--strip-metadata", is_flag=True, help="Do not carry the ICC profile and EXIF over.")
@click.option("--compare", is_flag=True, help="Also write NAME.compare.jpg: before and after, side by side.")
@click.option(
    "--skip-existing/--overwrite",
    default=True,
    show_default=True,
    help="Skip inputs whose output exists (resume), or redo them.",
)
@click.option(
    "--max-megapixels",
    type=FiniteFloatRange(min=0, min_open=True),
    default=DEFAULT_MAX_PIXELS / 1e6,
    show_default=True,
    help="Refuse larger images.",
)
@click.option(
    "--compile", "compile_", is_flag=True, help="torch.compile the network (slow start, faster runs)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per file on stdout.")
@click.option(
    "--report",
    "html_report",
    is_flag=True,
    help="Also write OUTPUT/report.html: before/after sliders and the sharpness change of each photo.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def deblur(
    ctx: click.Context,
    inputs: tuple[str, ...],
    output: Path | None,
    recursive: bool,
    model: str,
    weights: Path | None,
    device: str,
    precision: str,
    tile: int | str,
    tile_overlap: int,
    suffix: str,
    ext: str | None,
    quality: int,
    strip_metadata: bool,
    compare: bool,
    skip_existing: bool,
    max_megapixels: float,
    compile_: bool,
    as_json: bool,
    html_report: bool,
    quiet: bool,
) -> None:
    """Deblur photos: files, folders, glob patterns, or - to read paths from stdin.

    Outputs keep the input's size, mode, bit depth, ICC profile and EXIF and are written atomically,
    so a re-run resumes where an interrupted one stopped. A bad file is reported and skipped. Exit
    code: 0 when every file succeeded, 1 when any failed, 2 on usage errors. Under
    ``torchrun --nproc_per_node N -m deblurkit deblur ...`` each process takes its share of the files.

    \b
    Examples:
      deblurkit deblur photos/                       # -> photos-deblurred/
      deblurkit deblur photos/ -r -o restored/ --compare
      deblurkit deblur photos/ --report               # + photos-deblurred/report.html
      deblurkit deblur 'shots/*.jpg' --suffix _sharp --ext png
      find . -name '*.tif' | deblurkit deblur - -o out/ --json
      deblurkit deblur big.png --tile 512 --device cuda --precision bf16
    """
    run = deblur_files(
        _sources(inputs),
        output,
        model=model,
        weights=weights,
        device=device,
        recursive=recursive,
        suffix=suffix,
        ext=ext,
        skip_existing=skip_existing,
        max_pixels=round(min(max_megapixels, _NO_PIXEL_LIMIT) * 1e6),
        options=WriteOptions(quality=quality, strip_metadata=strip_metadata, compare=compare),
        tile=tile,
        overlap=tile_overlap,
        precision=precision,
        compile=compile_,
    )
    prefix = f"[rank {run.rank}/{run.world_size}] " if run.world_size > 1 else ""
    for note in run.notes:
        click.echo(f"{prefix}note: {note}", err=True)
    report = _Report(as_json, len(run), quiet, prefix)
    finished: list[FileResult] = []
    # closing(): a run stopped early (Ctrl-C, SIGTERM) is closed at once, so it waits for the write in
    # progress to complete (or remove its temporary) before the command exits.
    try:
        with contextlib.closing(iter(run)) as results:
            for result in results:
                report.add(result)
                if result.status != "failed":
                    finished.append(result)
    finally:  # a run that stops (a full disk) says why on a line of its own
        report.bar.close()
    click.echo(report.summary(), err=True)
    if report.counts["done"]:
        click.echo(f"{prefix}outputs in {run.output_dir}", err=True)
    if html_report and finished and run.rank == 0:
        page = write_photo_report(
            run.output_dir / "report.html",
            [(r.input, r.output) for r in finished],
            run.deblurrer.model.name,
            [r.seconds if r.status == "done" else None for r in finished],
        )
        click.echo(f"{prefix}report: {page}", err=True)
    ctx.exit(1 if report.counts["failed"] else 0)
