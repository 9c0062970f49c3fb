"""``eval``'s result files: ``results.json``, ``results.csv``, ``report.md`` and the printed table.

All of them are generated from one :class:`~deblurkit.evaluation.benchmark.EvalResult`, so the numbers
in the JSON, the CSV, the Markdown table and the terminal are the same numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ..imaging.atomic import write_text_atomic
from .benchmark import INPUT_ROW, EvalResult

__all__ = ["means_table", "to_dict", "write_results"]

_DECIMALS = {"psnr": 2, "ssim": 4, "mae": 4, "sharpness": 4, "seconds": 2}
_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE", "sharpness": "sharpness", "seconds": "s/image"}


def _number(value: float) -> float | str:
    return round(value, 6) if math.isfinite(value) else str(value)


def _fmt(value: float, column: str) -> str:
    return f"{value:.{_DECIMALS.get(column, 4)}f}" if math.isfinite(value) else "–"


def to_dict(result: EvalResult) -> dict[str, Any]:
    """A JSON-ready dict: protocol, models, means, per-image scores and failures."""
    return {
        "data": str(result.data),
        "protocol": {
            "name": result.protocol.name,
            "description": result.protocol.description,
            "source": result.protocol.source,
        },
        "models": result.models,
        "columns": list(result.columns),
        "means": {
            row: {column: _number(value) for column, value in values.items()}
            for row, values in result.means().items()
        },
        "images": [
            {
                "name": item.pair.name,
                "input": str(item.pair.input),
                "target": str(item.pair.target),
                "scores": {
                    row: {column: _number(value) for column, value in values.items()}
                    for row, values in item.scores.items()
                },
                **({"errors": item.errors} if item.errors else {}),
            }
            for item in result.images
        ],
        "failures": [{"image": name, "row": row, "error": why} for name, row, why in result.failures],
    }


def _csv(result: EvalResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "row", *result.columns, "error"])
    for item in result.images:
        for row in result.rows:
            values = item.scores.get(row, {})
            cells = [_fmt(values[c], c) if c in values else "" for c in result.columns]
            writer.writerow([item.pair.name, row, *cells, item.errors.get(row, "")])
    return buffer.getvalue()


def means_table(result: EvalResult, *, gains: bool = True) -> str:
    """The means as a Markdown table (one row per model, ``input`` first), with the PSNR/SSIM gain over
    ``input`` in extra columns when ``gains``."""
    means = result.means()
    quality = [c for c in result.columns if c in ("psnr", "ssim")]
    header = ["model", *(_LABELS.get(c, c) for c in result.columns)]
    if gains:
        header += [f"Δ {_LABELS[c]}" for c in quality]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in result.rows:
        cells = [row, *(_fmt(means[row][c], c) for c in result.columns)]
        if gains:
            cells += [
                "" if row == INPUT_ROW else f"{means[row][c] - means[INPUT_ROW][c]:+.{_DECIMALS[c]}f}"
                for c in quality
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown(result: EvalResult) -> str:
    count = len(result.images)
    lines = [
        f"# deblurkit eval: {result.data.name or result.data}",
        "",
        f"{count} image pairs, protocol `{result.protocol.name}`: {result.protocol.description}.",
        f"Follows {result.protocol.source}.",
        "",
        means_table(result),
    ]
    if result.failures:
        lines += ["Failures:", ""] + [f"- {name} ({row}): {why}" for name, row, why in result.failures] + [""]
    lines.append(
        "Sharpness: normalised Laplacian energy Var(∇²Y)/Var(Y), no reference needed (higher = sharper)."
    )
    return "\n".join(lines) + "\n"


def write_results(result: EvalResult, out: Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv`` and ``report.md`` into ``out``; their paths by kind."""
    paths = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "report.md"}
    write_text_atomic(paths["json"], json.dumps(to_dict(result), indent=2) + "\n")
    write_text_atomic(paths["csv"], _csv(result))
    write_text_atomic(paths["md"], _markdown(result))
    return paths
