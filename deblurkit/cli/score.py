"""``deblurkit score``: full-reference metrics of restored images against references."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import click
from tqdm import tqdm

from ..evaluation.score import DEFAULT_METRICS, PairResult, ScoreResult, score_paths
from ..metrics import UnknownMetricError, get_metric, metric_names, resolve_metrics
from .errors import Command
from .params import PathType

__all__ = ["score"]


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if math.isfinite(value) else str(value)


def _table(result: ScoreResult) -> str:
    decimals = {name: get_metric(name).decimals for name in result.metrics}
    header = ["restored", "reference", *result.metrics]
    rows = [
        [str(p.restored), str(p.reference), *(_fmt(p.values[m], decimals[m]) for m in result.metrics)]
        for p in result.scored
    ]
    means = result.means()
    count = len(result.scored)
    failed = f", {len(result.failed)} failed" if result.failed else ""
    rows.append(
        [
            f"mean of {count} pair{'s' * (count != 1)}{failed}",
            "",
            *(_fmt(means[m], decimals[m]) for m in result.metrics),
        ]
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        text = [cells[i].ljust(widths[i]) if i < 2 else cells[i].rjust(widths[i]) for i in range(len(cells))]
        return "  ".join(text).rstrip()

    out = [line(header), *(line(row) for row in rows[:-1]), "-" * len(line(header)), line(rows[-1]), ""]
    out.append("conventions:")
    out.extend(f"  {name}: {text}" for name, text in result.conventions.items())
    return "\n".join(out)


def _csv(result: ScoreResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["restored", "reference", *result.metrics, "error"])
    for p in result.pairs:
        values = [repr(p.values[m]) if p.error is None else "" for m in result.metrics]
        writer.writerow([str(p.restored), str(p.reference), *values, p.error or ""])
    writer.writerow(["mean", "", *(repr(v) for v in result.means().values()), ""])
    return buffer.getvalue().rstrip("\n")


def _report_unmatched(side: str, paths: list[Path]) -> None:
    if paths:
        shown = ", ".join(str(p) for p in paths[:5]) + (", …" if len(paths) > 5 else "")
        click.echo(f"unmatched: {len(paths)} {side} file(s) without a partner: {shown}", err=True)


def _list_metrics() -> str:
    lines = []
    for name in metric_names():
        metric = get_metric(name)
        direction = "higher is better" if metric.higher_is_better else "lower is better"
        lines.append(f"{name} ({direction})\n    {metric.convention}")
    return "\n".join(lines)


@click.command("score", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("restored", required=False, type=PathType(path_type=Path))
@click.argument("reference", required=False, type=PathType(path_type=Path))
@click.option(
    "--pairs",
    "pairs_csv",
    type=PathType(path_type=Path, dir_okay=False),
    help="CSV of restored,reference rows (paths relative to the CSV) instead of two paths.",
)
@click.option(
    "-m",
    "--metrics",
    default=",".join(DEFAULT_METRICS),
    show_default=True,
    help="Comma list of metrics; see --list-metrics.",
)
@click.option(
    "--crop-border",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Pixels dropped from each edge before scoring.",
)
@click.option("--y-channel", is_flag=True, help="Score the BT.601 Y channel (MATLAB rgb2ycbcr).")
@click.option("-r", "--recursive", is_flag=True, help="Pair folders recursively by relative path.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the metrics run.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Decoding/scoring threads [default: CPU count, at most 8].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (pairs, means, conventions).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (one row per pair, then the mean).")
@click.option("--list-metrics", is_flag=True, help="List the metrics and their conventions, then exit.")
@click.pass_context
def score(
    ctx: click.Context,
    restored: Path | None,
    reference: Path | None,
    pairs_csv: Path | None,
    metrics: str,
    crop_border: int,
    y_channel: bool,
    recursive: bool,
    device: str,
    workers: int | None,
    as_json: bool,
    as_csv: bool,
    list_metrics: bool,
) -> None:
    """Score restored images against references with full-reference metrics.

    RESTORED and REFERENCE are two image files, or two folders whose images are paired by relative
    path without extension (x.png pairs with x.jpg). Unmatched files and failed pairs are reported
    on stderr, one line each, and make the exit code 1; usage errors exit with 2.

    \b
    Examples:
      deblurkit score restored.png sharp.png
      deblurkit score results/GoPro/ GoPro/test/sharp/ --metrics psnr,ssim,ssim-matlab
      deblurkit score out/ gt/ -r --y-channel --crop-border 4 --json > scores.json
      deblurkit score --pairs pairs.csv --metrics psnr,ssim-skimage,lpips-alex --csv
    """
    if list_metrics:
        click.echo(_list_metrics())
        return
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if pairs_csv is not None and (restored or reference):
        raise click.UsageError("give either RESTORED REFERENCE or --pairs CSV, not both")
    if pairs_csv is None and (restored is None or reference is None):
        raise click.UsageError("give RESTORED and REFERENCE (two files or two folders), or --pairs CSV")
    try:
        resolve_metrics(metrics)
    except UnknownMetricError as err:
        raise click.BadParameter(str(err), param_hint="--metrics") from None

    bar: tqdm | None = None

    def on_result(result: PairResult) -> None:
        if result.error is not None:
            message = f"failed: {result.restored} vs {result.reference}: {result.error}"
            if bar is not None:
                bar.write(message, file=sys.stderr)
            else:
                click.echo(message, err=True)
        if bar is not None:
            bar.update(1)

    def on_pairs(count: int) -> None:
        nonlocal bar
        if count > 1:
            bar = tqdm(total=count, desc="scoring", unit="pair", file=sys.stderr, disable=None, leave=False)

    try:
        result = score_paths(
            restored,
            reference,
            metrics,
            pairs_csv=pairs_csv,
            recursive=recursive,
            on_pairs=on_pairs,
            crop_border=crop_border,
            y_channel=y_channel,
            device=device,
            workers=workers,
            on_result=on_result,
        )
    finally:
        if bar is not None:
            bar.close()

    _report_unmatched("restored", result.unmatched_restored)
    _report_unmatched("reference", result.unmatched_reference)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    elif as_csv:
        click.echo(_csv(result))
        click.echo("conventions: " + "; ".join(f"{k}: {v}" for k, v in result.conventions.items()), err=True)
    else:
        click.echo(_table(result))
    ctx.exit(0 if result.ok else 1)
