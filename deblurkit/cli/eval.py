"""``deblurkit eval``: several models on a paired benchmark, scored with its protocol; a thin layer over
:func:`deblurkit.evaluation.benchmark.run_eval`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from ..evaluation.benchmark import INPUT_ROW, run_eval
from ..evaluation.protocols import protocol_names
from ..evaluation.reports import write_eval_report
from ..evaluation.results import means_table, to_dict, write_results
from ..inference.batch import DEFAULT_MODEL
from ..inference.deblurrer import DEFAULT_OVERLAP, PRECISIONS
from .deblur import TileType
from .errors import Command
from .params import PathType

__all__ = ["eval_command"]


class _Progress:
    """One tqdm bar per model on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm | None = None

    def __call__(self, label: str, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=total, desc=label, unit="img", file=sys.stderr, disable=True if self.quiet else None
            )
        self.bar.update(1)
        if done == total:
            self.bar.close()
            self.bar = None


@click.command("eval", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    required=True,
    type=PathType(exists=True, path_type=Path),
    help="Pairs: GoPro/HIDE (*/blur + */sharp), input/ + target/, DPDD (inputC/ + target/), a RealBlur "
    "*_test.txt list, or a CSV of blurry,sharp paths.",
)
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    help=f"Zoo name, hf:org/name or path; repeat to compare [default: {DEFAULT_MODEL}].",
)
@click.option("--weights", type=PathType(dir_okay=False, path_type=Path), help="Weight file (one --model).")
@click.option(
    "--protocol",
    type=click.Choice(["auto", *protocol_names()], case_sensitive=False),
    default="auto",
    show_default=True,
    help="Scoring of the benchmark's papers; auto: dpdd for inputC/, realblur for its lists, gopro for "
    "blur/ + sharp/, else plain.",
)
@click.option("-o", "--output", required=True, type=PathType(file_okay=False, path_type=Path), help="Folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True)
@click.option("--tile", type=TileType(), default="auto", show_default=True, help="As for deblur.")
@click.option("--tile-overlap", type=click.IntRange(min=0), default=DEFAULT_OVERLAP, show_default=True)
@click.option("--no-html", is_flag=True, help="Skip report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print results.json on stdout instead of the table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def eval_command(
    data: Path,
    models: tuple[str, ...],
    weights: Path | None,
    protocol: str,
    output: Path,
    device: str,
    precision: str,
    tile: int | str,
    tile_overlap: int,
    no_html: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run models on a paired benchmark and score them as the benchmark's papers do.

    The blurry input is always scored too (row "input"). Outputs are kept in OUTPUT/<model>/ and
    reused when the model, its weights and the input are unchanged, so adding a model to a finished
    run only runs that model. Writes results.json, results.csv, report.md and report.html (open it
    in a browser: sortable tables, before/after sliders, zoomed crops, error maps). Exit code 1 when
    any image failed.

    \b
    Examples:
      deblurkit eval --data GoPro/test -o eval-gopro
      deblurkit eval --data GoPro/test -m maxim-s1-fast -m maxim-gopro -o eval-gopro
      deblurkit eval --data DPDD/test --protocol dpdd -m restormer-defocus -o eval-dpdd
      deblurkit eval --data RealBlur/RealBlur_J_test_list.txt -m my-model/ -o eval-realblur
    """
    progress = _Progress(quiet)
    result = run_eval(
        data,
        output,
        models,
        protocol=protocol.lower(),
        weights=weights,
        device=device,
        progress=progress,
        tile=tile,
        overlap=tile_overlap,
        precision=precision,
    )
    paths = write_results(result, output)
    if not no_html:
        paths["html"] = write_eval_report(result, output)
    if as_json:
        click.echo(json.dumps(to_dict(result), indent=2))
    else:
        click.echo(means_table(result), nl=False)
    for name, row, why in result.failures:
        click.echo(f"failed: {name} ({row}): {why}", err=True)
    scored = sum(1 for item in result.images if INPUT_ROW in item.scores)
    click.echo(
        f"{scored} of {len(result.images)} pairs, protocol {result.protocol.name}; "
        f"results in {', '.join(str(p) for p in paths.values())}",
        err=True,
    )
    sys.exit(1 if result.failures else 0)
