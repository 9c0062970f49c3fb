"""``deblurkit zoo``: list, inspect, prefetch and convert the zoo's models."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..errors import DeblurkitError
from ..zoo.cards import ZooEntry, all_entries, get_entry
from ..zoo.hub import fetch_weights, offline
from ..zoo.models import convert_checkpoint
from .params import PathType

__all__ = ["zoo"]


@click.group()
def zoo() -> None:
    """The model zoo: deblurring networks and the encoders of the perceptual losses.

    \b
    Examples:
      deblurkit zoo list
      deblurkit zoo info nafnet-gopro-width32
      deblurkit zoo download nafnet-gopro-width32 mae-vit-base
      deblurkit zoo convert Uformer_B.pth uformer-b.safetensors --model uformer-b-gopro
    """


def _entry_dict(entry: ZooEntry) -> dict:
    data = asdict(entry)
    data["weights_status"] = entry.weights_status
    return data


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


@zoo.command("list")
@click.option("--kind", type=click.Choice(["deblur", "encoder"]), help="Only entries of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
def list_entries(kind: str | None, as_json: bool) -> None:
    """List the zoo's entries with their task, licence and where their weights come from."""
    entries = [entry for entry in all_entries().values() if kind in (None, entry.kind)]
    if as_json:
        click.echo(json.dumps([_entry_dict(entry) for entry in entries], indent=2))
        return
    rows = [[e.name, e.kind, e.architecture, e.task, e.license, e.weights_status] for e in entries]
    click.echo(_table(rows, ["name", "kind", "architecture", "task", "licence", "weights"]))


@zoo.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def info(name: str, as_json: bool) -> None:
    """Show one model card: architecture, config, data, licence, reported metrics, weights."""
    entry = get_entry(name)
    if as_json:
        click.echo(json.dumps(_entry_dict(entry), indent=2))
        return
    lines = [f"{entry.name}: {entry.summary}", ""]
    if entry.description:
        lines += [entry.description.strip(), ""]
    for label, value in (
        ("kind", entry.kind),
        ("task", entry.task),
        ("architecture", entry.architecture),
        ("base model", entry.base_model),
        ("training data", entry.training_data),
        ("licence", entry.license),
        ("licence note", entry.license_note),
        ("paper", entry.paper),
        ("paper url", entry.paper_url),
        ("code", entry.code_url),
        ("inference", entry.inference.get("procedure", "")),
    ):
        if value:
            lines.append(f"{label + ':':15} {value}")
    if entry.config:
        lines.append(f"{'config:':15} " + ", ".join(f"{k}={v}" for k, v in entry.config.items()))
    for metric, value in entry.reported_metrics.items():
        lines.append(f"{'reported:':15} {metric} = {value}")
    weights = entry.weights
    if weights is None:
        lines.append(
            f"{'weights:':15} not published yet"
            + (f"; {entry.unpublished_hint}" if entry.unpublished_hint else "")
        )
    else:
        where = (
            f"{weights.repo_id}/{weights.filename}@{weights.revision}" if weights.on_hub else weights.filename
        )
        lines.append(f"{'weights:':15} {where} ({weights.format})")
        pin = weights.sha256 or "not pinned by deblurkit; checked against the Hub's own checksum (LFS sha256)"
        lines.append(f"{'sha256:':15} {pin}")
        if weights.revision_note:
            lines.append(f"{'revision note:':15} {' '.join(weights.revision_note.split())}")
        if weights.download_page:
            lines.append(f"{'download page:':15} {weights.download_page}")
    if entry.reproduce:
        lines += ["", "reproduce with:", *(f"  {line}" for line in entry.reproduce.strip().splitlines())]
    click.echo("\n".join(lines))


def _download_hint(entry: ZooEntry) -> str:
    """What works when ``zoo download`` itself cannot reach the Hub (never ``zoo download`` again)."""
    hint = (
        "unset HF_HUB_OFFLINE and rerun this where the Hub can be reached"
        if offline()
        else "rerun this once the Hub can be reached"
    )
    if entry.kind == "deblur":
        return f"{hint}, or pass a copy of the weights file to deblur, eval or train with --weights FILE"
    return hint


@zoo.command("download")
@click.argument("names", nargs=-1, required=True)
def download(names: tuple[str, ...]) -> None:
    """Fetch and verify the weights of NAMES now, for later offline use."""
    failed = 0
    for name in names:
        try:
            entry = get_entry(name)
            if entry.weights is None:
                raise DeblurkitError(
                    f"{name} has no published weights"
                    + (f": {entry.unpublished_hint}" if entry.unpublished_hint else "")
                )
            path = fetch_weights(entry.weights, name=name, hint=_download_hint(entry))
        except DeblurkitError as err:
            failed += 1
            click.echo(f"error: {err}", err=True)
            continue
        click.echo(f"{name}: {path}")
    if failed:
        raise SystemExit(1)


@zoo.command("convert")
@click.argument("source", type=PathType(exists=True, dir_okay=False))
@click.argument("target", type=PathType(dir_okay=False))
@click.option("--model", "model", required=True, help="The zoo entry the checkpoint belongs to.")
def convert(source: str, target: str, model: str) -> None:
    """Convert an official .pth checkpoint into a safetensors file that --model accepts directly.

    The pickle is read with torch.load(weights_only=True) and must load strictly into the entry's
    network before anything is written.
    """
    path = convert_checkpoint(source, target, model)
    click.echo(f"wrote {path}")
