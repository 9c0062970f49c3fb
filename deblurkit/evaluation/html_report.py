"""A self-contained HTML page comparing restorations: tables, before/after sliders, crops, error maps.

``write_html_report`` writes ``NAME.html`` and a folder ``NAME_files/`` beside it holding every picture
the page shows (JPEG, long side at most ``max_side``; crops as PNG). The page links those files
relatively and inlines its one stylesheet and one script, so it opens from disk, or from any static
web server, without a network. For each image the page has a before/after slider (any two of input,
models and sharp), zoomed crops of the window where the model outputs disagree most, and error maps
against the sharp reference when there is one. Every file is written atomically (a temporary name
renamed over the target), the page last.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .._version import __version__
from ..imaging.atomic import write_text_atomic
from .report_pictures import (
    ERROR_FULL_SCALE,
    RAMP,
    Layer,
    Prepared,
    ReportImage,
    most_different_window,
    prepare_pictures,
)

__all__ = ["ReportImage", "most_different_window", "write_html_report"]


@dataclass(frozen=True)
class _Column:
    """How the page shows a score: its heading, its number format, and which way is better (``None``:
    no best value is marked)."""

    label: str
    format: str = "{:.4g}"
    higher_is_better: bool | None = None


_COLUMNS = {
    "psnr": _Column("PSNR (dB)", "{:.2f}", higher_is_better=True),
    "ssim": _Column("SSIM", "{:.4f}", higher_is_better=True),
    "sharpness": _Column("Sharpness", higher_is_better=True),
    "seconds": _Column("Seconds", "{:.3f}", higher_is_better=False),
    "lpips": _Column("LPIPS", "{:.4f}", higher_is_better=False),
    "mae": _Column("MAE", "{:.4f}", higher_is_better=False),
}
_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
_MISSING = '<span class="missing" title="not measured">–</span>'


# -- page --------------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _asset(name: str) -> str:
    return resources.files("deblurkit.evaluation").joinpath("report_assets", name).read_text(encoding="utf-8")


def _column(name: str) -> _Column:
    """The presentation of a score column; any other score shows under its own name."""
    return _COLUMNS.get(name, _Column(name))


def _fmt(column: str, value: float) -> str:
    return _column(column).format.format(value)


def _value(table: dict[str, dict[str, float]], row: str, column: str) -> float | None:
    value = table.get(row, {}).get(column)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _cell(column: str, value: float | None, best: bool = False) -> str:
    if value is None:
        return f"<td>{_MISSING}</td>"
    css = ' class="best"' if best else ""
    return f'<td data-value="{value!r}"{css}>{_fmt(column, value)}</td>'


def _best(values: Sequence[float | None], column: str) -> float | None:
    present = [v for v in values if v is not None]
    higher_is_better = _column(column).higher_is_better
    if higher_is_better is None or len(present) < 2:
        return None
    return max(present) if higher_is_better else min(present)


def _sort_header(label: str, col: int, kind: str, extra: str = "") -> str:
    return (
        f'<th scope="col" data-col="{col}" data-type="{kind}"{extra}>'
        f'<button type="button">{_e(label)}</button></th>'
    )


def _means_table(means: dict[str, dict[str, float]], rows: Sequence[str], columns: Sequence[str]) -> str:
    head = [_sort_header("Row", 0, "text")]
    head += [_sort_header(_column(c).label, i, "number") for i, c in enumerate(columns, 1)]
    best = {c: _best([_value(means, r, c) for r in rows], c) for c in columns}
    body = []
    for row in rows:
        cells = [f'<th scope="row" data-value="{_e(row)}">{_e(row)}</th>']
        for column in columns:
            value = _value(means, row, column)
            cells.append(_cell(column, value, value is not None and value == best[column]))
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<table class="sortable" id="means-table"><caption>Means over all images '
        "(click a column heading to sort)</caption>"
        f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _images_table(images: Sequence[ReportImage], rows: Sequence[str], columns: Sequence[str]) -> str:
    groups = [
        (c, [r for r in rows if any(_value(i.scores, r, c) is not None for i in images)]) for c in columns
    ]
    groups = [(c, present) for c, present in groups if present]
    top = [
        '<th scope="col" rowspan="2" data-col="0" data-type="number"><button type="button">#</button></th>'
    ]
    top.append(_sort_header("Image", 1, "text", ' rowspan="2"'))
    second = []
    col = 2
    for column, present in groups:
        top.append(f'<th scope="colgroup" colspan="{len(present)}">{_e(_column(column).label)}</th>')
        for row in present:
            second.append(_sort_header(row, col, "number"))
            col += 1
    body = []
    for index, item in enumerate(images, 1):
        anchor = f"img-{index:03d}"
        cells = [
            f'<td data-value="{index}">{index}</td>',
            f'<th scope="row" data-value="{_e(item.name)}"><a href="#{anchor}">{_e(item.name)}</a></th>',
        ]
        for column, present in groups:
            cells += [_cell(column, _value(item.scores, r, column)) for r in present]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<table class="sortable" id="images-table"><caption>Scores per image '
        "(click a column heading to sort; the image name jumps to it)</caption>"
        f"<thead><tr>{''.join(top)}</tr><tr>{''.join(second)}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _scores_table(item: ReportImage, rows: Sequence[str], columns: Sequence[str]) -> str:
    present = [r for r in rows if r in item.scores]
    if not present:
        return ""
    head = '<th scope="col">Row</th>' + "".join(
        f'<th scope="col">{_e(_column(c).label)}</th>' for c in columns
    )
    best = {c: _best([_value(item.scores, r, c) for r in present], c) for c in columns}
    body = []
    for row in present:
        cells = "".join(
            _cell(c, v, v is not None and v == best[c])
            for c in columns
            for v in [_value(item.scores, row, c)]
        )
        body.append(f'<tr><th scope="row">{_e(row)}</th>{cells}</tr>')
    return f'<table class="scores"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _options(layers: Sequence[Layer], selected: str) -> str:
    return "".join(
        f'<option value="{layer.key}" data-src="{_e(layer.src)}"'
        f"{' selected' if layer.key == selected else ''}>{_e(layer.label)}</option>"
        for layer in layers
    )


def _image_section(
    item: ReportImage, index: int, count: int, prep: Prepared, rows: Sequence[str], columns: Sequence[str]
) -> str:
    anchor = f"img-{index:03d}"
    name = _e(item.name)
    layers = {layer.key: layer for layer in prep.layers}
    left = layers["input"]
    right = next((layer for layer in prep.layers if layer.key.startswith("model-")), prep.layers[-1])
    size = f'width="{prep.width}" height="{prep.height}"'
    x, y, win_w, win_h = prep.window
    box = (
        f"left:{100 * x / prep.width:.3f}%;top:{100 * y / prep.height:.3f}%;"
        f"width:{100 * win_w / prep.width:.3f}%;height:{100 * win_h / prep.height:.3f}%"
    )
    links = []
    if index > 1:
        links.append(f'<a href="#img-{index - 1:03d}">← Previous</a>')
    if index < count:
        links.append(f'<a href="#img-{index + 1:03d}">Next →</a>')
    links.append('<a href="#top">Top ↑</a>')
    restored = [layer for layer in prep.layers if layer.key.startswith("model-")]
    where = "the model outputs differ most" if len(restored) > 1 else "the output differs most from the input"
    crops = "".join(
        f'<figure class="crop"><div class="crop-frame" style="--cw:{win_w};--ch:{win_h}">'
        f'<img src="{_e(layer.crop)}" alt="{name}: {_e(layer.label)}, crop" width="{win_w}" height="{win_h}" '
        f'loading="lazy"><span class="cross" aria-hidden="true"></span></div>'
        f"<figcaption>{_e(layer.label)}</figcaption></figure>"
        for layer in prep.layers
    )
    parts = [
        f'<section class="image" id="{anchor}" aria-labelledby="{anchor}-h" data-index="{index}">',
        f'<h2 id="{anchor}-h"><span class="counter">{index}/{count}</span> {name}</h2>',
        f'<p class="links">{" · ".join(links)}</p>',
        _scores_table(item, rows, columns),
        f'<div class="compare" data-name="{name}">',
        '<div class="pickers">',
        f'<label>Left <select class="pick-left">{_options(prep.layers, left.key)}</select></label>',
        f'<label>Right <select class="pick-right">{_options(prep.layers, right.key)}</select></label>',
        "</div>",
        f'<div class="stage" style="max-width:{prep.width}px">',
        f'<img class="layer-right" src="{_e(right.src)}" alt="{name}: {_e(right.label)}" {size} '
        'loading="lazy">',
        f'<img class="layer-left" src="{_e(left.src)}" alt="{name}: {_e(left.label)}" {size} loading="lazy" '
        'style="clip-path:inset(0 50% 0 0)">',
        '<div class="split" style="left:50%" aria-hidden="true"></div>',
        f'<div class="crop-box" style="{box}" aria-hidden="true"></div>',
        f'<span class="tag tag-left" aria-hidden="true">{_e(left.label)}</span>',
        f'<span class="tag tag-right" aria-hidden="true">{_e(right.label)}</span>',
        "</div>",
        '<label class="split-control">Split position (left layer shown up to here) '
        '<input type="range" class="split-range" min="0" max="100" step="1" value="50"></label>',
        "</div>",
        f"<h3>Where {where}</h3>",
        f'<p class="hint">Window x {x}–{x + win_w}, y {y}–{y + win_h} of the {prep.width}×{prep.height} view '
        "(dashed box above), enlarged with square pixels.</p>",
        f'<div class="crops" data-window="{x},{y},{win_w},{win_h}">{crops}</div>',
    ]
    errors = [layer for layer in prep.layers if layer.error]
    if errors:
        parts.append("<h3>Error against the sharp reference</h3>")
        parts.append(_legend())
        parts.append('<div class="errors">')
        parts += [
            f'<figure style="--w:{prep.width}px"><img src="{_e(layer.error)}" '
            f'alt="{name}: error map of {_e(layer.label)}" {size} loading="lazy">'
            f"<figcaption>{_e(layer.label)}</figcaption></figure>"
            for layer in errors
        ]
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def _legend() -> str:
    stops = ", ".join(f"rgb{colour} {100 * stop:g}%" for stop, colour in RAMP)
    return (
        '<p class="legend"><span>0</span>'
        f'<span class="ramp" style="background:linear-gradient(to right, {stops})"></span>'
        f"<span>≥ {ERROR_FULL_SCALE}/255 mean absolute difference</span></p>"
    )


def _page(
    title: str, notes: Sequence[str], strip: str, means_html: str, images_html: str, sections: str
) -> str:
    script = _asset("report.js").replace("</", "<\\/")
    notes_html = "".join(f"<li>{_e(note)}</li>" for note in notes)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="generator" content="deblurkit {_e(__version__)}">
<title>{_e(title)}</title>
<style>
{_asset("report.css")}
</style>
</head>
<body>
<header id="top">
<h1>{_e(title)}</h1>
{f'<ul class="notes">{notes_html}</ul>' if notes_html else ""}
</header>
<nav class="strip" aria-label="Images">
<ol>{strip}</ol>
</nav>
<main>
<section class="tables" aria-label="Scores">
{means_html}
{images_html}
</section>
<p class="zoom"><label>Crop enlargement <select id="crop-zoom">
<option value="2" selected>2×</option><option value="3">3×</option><option value="4">4×</option>
</select></label></p>
{sections}
</main>
<footer><p>Written by deblurkit {_e(__version__)}. Opens without a network: all pictures are in the
folder beside this page.</p></footer>
<script>
{script}
</script>
</body>
</html>
"""


def write_html_report(
    path: Path,
    *,
    title: str,
    images: Sequence[ReportImage],
    means: dict[str, dict[str, float]],
    columns: Sequence[str],
    notes: Sequence[str] = (),
    max_side: int = 1024,
) -> Path:
    """Write the report page ``path`` and its pictures in ``<stem>_files/`` beside it; return ``path``.

    ``means`` maps a row (``"input"`` first, then the models) to its column values; a column a row
    lacks shows as "–". Pictures are shrunk so their long side is at most ``max_side``.
    """
    path = Path(path)
    if max_side < 16:
        raise ValueError(f"max_side must be at least 16, not {max_side}")
    folder = path.with_name(f"{path.stem}_files")
    folder.mkdir(parents=True, exist_ok=True)
    models = [row for row in means if row != "input"]
    for item in images:
        models += [model for model in item.outputs if model not in models]
    rows = ["input", *models]
    for item in images:
        rows += [row for row in item.scores if row not in rows]
    table_rows = [row for row in rows if row in means]

    workers = max(1, min(4, os.cpu_count() or 1, len(images)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        prepared = list(
            pool.map(
                lambda pair: prepare_pictures(pair[1], pair[0], models, folder, max_side), enumerate(images)
            )
        )

    count = len(images)
    strip = "".join(
        f'<li><a href="#img-{i:03d}" title="{_e(item.name)}">'
        f'<img src="{_e(prep.thumb)}" alt="{_e(item.name)}" width="{prep.thumb_size[0]}" '
        f'height="{prep.thumb_size[1]}" loading="lazy"></a></li>'
        for i, (item, prep) in enumerate(zip(images, prepared, strict=True), 1)
    )
    sections = "\n".join(
        _image_section(item, i, count, prep, rows, columns)
        for i, (item, prep) in enumerate(zip(images, prepared, strict=True), 1)
    )
    page = _page(
        title,
        notes,
        strip,
        _means_table(means, table_rows, columns),
        _images_table(images, rows, columns) if images else "",
        sections,
    )
    write_text_atomic(path, page)
    return path
