"""The HTML pages of ``eval``, ``deblur --report`` and ``train``: their rows and images, handed to
:func:`~deblurkit.evaluation.html_report.write_html_report`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..errors import DeblurkitError
from ..imaging.reading import read_image
from ..metrics.sharpness import sharpness
from .benchmark import INPUT_ROW, EvalResult
from .html_report import ReportImage, write_html_report

__all__ = ["write_eval_report", "write_photo_report"]


def write_eval_report(result: EvalResult, out: Path) -> Path:
    """``OUT/report.html`` for an eval result: input, each model's outputs and the sharp targets of every
    pair that could be read."""
    images = [
        ReportImage(
            name=item.pair.name,
            input=item.pair.input,
            outputs={row: path for row, path in item.outputs.items() if row in item.scores},
            reference=item.pair.target,
            scores=item.scores,
        )
        for item in result.images
        if INPUT_ROW in item.scores  # an unreadable pair has nothing to show
    ]
    notes = [
        f"{len(images)} pairs from {result.data}, protocol {result.protocol.name}: "
        f"{result.protocol.description} ({result.protocol.source})",
    ]
    return write_html_report(
        out / "report.html",
        title=f"deblurkit eval: {result.data.name or result.data}",
        images=images,
        means=result.means(),
        columns=result.columns,
        notes=notes,
    )


def _means(values: Sequence[dict[str, float]], columns: Sequence[str]) -> dict[str, float]:
    """Column → mean over the entries that have it (columns no entry has are left out)."""
    means = {}
    for column in columns:
        present = [v[column] for v in values if column in v]
        if present:
            means[column] = math.fsum(present) / len(present)
    return means


def write_photo_report(
    path: Path, pairs: Sequence[tuple[Path, Path]], label: str, seconds: Sequence[float | None] = ()
) -> Path:
    """A page for photos without a sharp reference: each (input, output) with a before/after slider
    and the no-reference sharpness of both (``deblur --report``); ``seconds[i]`` is None for an output
    made by an earlier run."""
    images, rows, unscored = [], {INPUT_ROW: [], label: []}, []
    for i, (source, output) in enumerate(pairs):
        try:
            before = {"sharpness": sharpness(read_image(source).pixels)}
            after = {"sharpness": sharpness(read_image(output).pixels)}
        except DeblurkitError:  # too small to measure, or gone since: shown without the number
            before, after = {}, {}
            unscored.append(source.name)
        spent = {"seconds": seconds[i]} if i < len(seconds) and seconds[i] is not None else {}
        scores = {INPUT_ROW: before, label: {**after, **spent}}
        rows[INPUT_ROW].append(scores[INPUT_ROW])
        rows[label].append(scores[label])
        images.append(ReportImage(name=source.name, input=source, outputs={label: output}, scores=scores))
    columns = ("sharpness", "seconds")
    means = {
        row: {
            column: math.fsum(v[column] for v in values if column in v)
            / max(1, sum(column in v for v in values))
            for column in columns
            if any(column in v for v in values)
        }
        for row, values in rows.items()
    }
    notes = ["Sharpness: normalised Laplacian energy Var(∇²Y)/Var(Y) of the luma; higher is sharper."]
    if unscored:
        notes.append(f"No sharpness for {len(unscored)} photo(s) smaller than 3×3 px or unreadable now.")
    return write_html_report(
        path, title=f"deblurkit deblur: {label}", images=images, means=means, columns=columns, notes=notes
    )
