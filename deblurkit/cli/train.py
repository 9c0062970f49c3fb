"""``deblurkit train``, ``deblurkit finetune`` and ``deblurkit synth``: thin layers over
:mod:`deblurkit.training` and :mod:`deblurkit.synthesis`.

Every :class:`~deblurkit.training.TrainConfig` option is a flag (``lr`` → ``--lr``, booleans as
``--flag/--no-flag``, lists comma-separated, tables as JSON); the order of precedence is flags, then
``--config FILE``, then the command's defaults. ``python -m deblurkit.cli.train`` runs these
commands on their own (what ``torchrun -m`` needs until they are registered in ``deblurkit``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from ..errors import DeblurkitError
from ..synthesis.blur import Degradation
from ..training import COMMAND_DEFAULTS, Event, TrainConfig, load_config, train
from ..training.config import coerce, option_fields
from .params import MAX_SEED, FiniteFloatRange, PathType, number_type

__all__ = ["finetune", "synth", "train_command"]

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class _Listed(click.ParamType):
    """A comma-separated list of names, or of numbers (every numeric list here holds finite numbers ≥ 0:
    counts, lengths, qualities, betas, gains)."""

    def __init__(self, numbers: bool) -> None:
        self.numbers = numbers
        self.name = "N,N" if numbers else "A,B"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list:
        if isinstance(value, list):
            return value
        items = [item.strip() for item in str(value).split(",") if item.strip()]
        if not self.numbers:
            return items
        try:
            numbers = [float(item) for item in items]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers", param, ctx)
        if not all(math.isfinite(number) and number >= 0 for number in numbers):
            self.fail(f"{value!r} holds a number that is negative, NaN or infinite", param, ctx)
        return numbers


class _Table(click.ParamType):
    """A JSON object."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict:
        if isinstance(value, dict):
            return value
        try:
            table = json.loads(value)
        except ValueError as err:
            self.fail(f"{value!r} is not valid JSON ({err})", param, ctx)
        if not isinstance(table, dict):
            self.fail(f"{value!r} is not a JSON object", param, ctx)
        return table


_BOUNDS: dict[str, dict[str, Any]] = {
    "val_split": {"min": 0},
    "val_max": {"min": 0},
    "crop": {"min": 1},
    "synth_noise": {"min": 0, "max": 1},
    "synth_shot_noise": {"min": 0},
    "synth_jpeg": {"min": 0, "max": 1},
    "synth_bits": {"min": 0, "max": 16},
    "lr": {"min": 0, "min_open": True},
    "min_lr": {"min": 0},
    "weight_decay": {"min": 0},
    "grad_clip": {"min": 0},
    "ema": {"min": 0, "max": 1, "max_open": True},
    "seed": {"min": 0, "max": MAX_SEED},
}
"""Bounds of the numeric options whose config field declares none (``min``/``max`` metadata)."""


def _number_type(f: dataclasses.Field) -> click.ParamType:
    """The range type of numeric option ``f``: its declared bounds, finite for floats."""
    bounds = {key: f.metadata[key] for key in ("min", "max") if key in f.metadata} | _BOUNDS.get(f.name, {})
    return number_type(typing.get_type_hints(TrainConfig)[f.name], **bounds)


def _flag_option(f: dataclasses.Field) -> Callable:
    flag = "--" + f.name.replace("_", "-")
    kind = typing.get_type_hints(TrainConfig)[f.name]
    help_text = f.metadata["help"]
    names = [flag, "-o"] if f.name == "output" else [flag]
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)
    if kind is list:
        default = f.default_factory()  # type: ignore[misc]
        numbers = not default or not isinstance(default[0], str)
        return click.option(*names, f.name, type=_Listed(numbers), default=None, help=help_text)
    if kind is dict:
        return click.option(*names, f.name, type=_Table(), default=None, help=help_text)
    if "choices" in f.metadata:
        return click.option(
            *names, f.name, type=click.Choice(f.metadata["choices"]), default=None, help=help_text
        )
    if kind in (int, float):
        return click.option(*names, f.name, type=_number_type(f), default=None, help=help_text)
    return click.option(*names, f.name, type=kind, default=None, help=help_text)


def _config_options(func: Callable) -> Callable:
    for f in reversed(option_fields()):
        func = _flag_option(f)(func)
    return func


def _resolve(command: str, config_file: Path | None, flags: dict[str, Any]) -> TrainConfig:
    """Command defaults, then the config file, then the flags given."""
    config = dataclasses.replace(TrainConfig(), **COMMAND_DEFAULTS[command])
    if config_file is not None:
        config = load_config(config_file, base=config)
    given = {name: coerce(name, value) for name, value in flags.items() if value is not None}
    return dataclasses.replace(config, **given)


class _Progress:
    """Turns training events into a tqdm bar and a few lines on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: tqdm | None = None

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def __call__(self, event: Event) -> None:
        data = event.data
        if event.kind == "start":
            self._start(event)
        elif event.kind in ("step", "log") and self.bar is not None:
            self.bar.update(event.step - self.bar.n)
            if event.kind == "log":
                self.bar.set_postfix_str(_postfix(data), refresh=False)
        elif event.kind == "val":
            mark = " (best)" if data.get("best") else ""
            self.write(
                f"step {event.step}: validation {_scores(data)}{mark}; blurry input {_scores(data, 'input_')}"
            )
        elif event.kind == "note":
            self.write(f"note: {data['message']}")
        elif event.kind == "done" and self.bar is not None:
            self.bar.close()

    def _start(self, event: Event) -> None:
        data = event.data
        resumed = f", resuming at step {data['resumed_from']}" if data["resumed_from"] is not None else ""
        click.echo(
            f"training {data['architecture']} on {data['train_samples']} samples ({data['val_images']} for "
            f"validation), loss {data['loss']}, {data['device']} {data['precision']}, "
            f"{data['processes']} process(es){resumed}",
            err=True,
        )
        self.bar = tqdm(
            total=data["steps"], initial=event.step, unit="step", disable=self.quiet, dynamic_ncols=True
        )


def _postfix(record: dict[str, Any]) -> str:
    terms = [f"{k}={v:.4g}" for k, v in record.items() if k not in ("kind", "step", "lr", "samples_per_s")]
    return " ".join([*terms, f"lr={record['lr']:.2e}", f"{record['samples_per_s']:.1f} samples/s"])


def _scores(record: dict[str, Any], prefix: str = "") -> str:
    parts = []
    for key, label in (("psnr", "PSNR {:.3f} dB"), ("ssim", "SSIM {:.4f}"), ("mae_distance", "MAE {:.4f}")):
        if f"{prefix}{key}" in record:
            parts.append(label.format(record[f"{prefix}{key}"]))
    return ", ".join(parts) or "-"


def _run(command: str, config_file: Path | None, resume: bool, quiet: bool, flags: dict[str, Any]) -> None:
    config = _resolve(command, config_file, flags)
    result = train(config, command=command, resume=resume, events=_Progress(quiet))
    if result.metrics:
        click.echo(f"validation at step {result.step}: {_scores(result.metrics)}", err=True)
    click.echo(f"model written to {result.output} (use it with --model {result.output})", err=True)
    if result.hub_url:
        click.echo(f"published at {result.hub_url} (use it with --model hf:{config.push_to_hub})", err=True)


_COMMON_HELP = """
\b
Every option can also be set in a TOML --config file (see examples/recipes/); flags override it.
The output folder is the trained model (config.json, model.safetensors, README.md), with the run's
config, log.jsonl, curves.png, checkpoints and best model in its train/ folder. Re-running the same
command continues from the last checkpoint; --resume continues even with changed settings.
Several GPUs: torchrun --nproc_per_node N -m deblurkit {command} ...
"""


def _command(command: str, summary: str, examples: str) -> Callable[[Callable], click.Command]:
    def decorate(func: Callable) -> click.Command:
        func.__doc__ = summary + "\n\n\b\nExamples:\n" + examples + _COMMON_HELP.format(command=command)
        func = _config_options(func)
        func = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(func)
        func = click.option(
            "--resume", is_flag=True, help="Continue the run in --output, even with changed settings."
        )(func)
        func = click.option(
            "-c",
            "--config",
            "config_file",
            type=PathType(dir_okay=False, exists=True, path_type=Path),
            help="TOML config file (flags override it).",
        )(func)
        return click.command(command, context_settings=_CONTEXT)(func)

    return decorate


@_command(
    "train",
    "Train a deblurring network from random weights on paired (or synthesised) images.",
    "  deblurkit train --architecture nafnet --arch-config '{\"width\": 16}' --data pairs/ -o my-nafnet/\n"
    "  deblurkit train --model nafnet-gopro-width32 --data GoPro/train --val-data GoPro/test -o runs/n32\n"
    "  deblurkit train -c examples/recipes/tiny-scratch-cpu.toml --data photos/ --synthesize -o runs/tiny\n",
)
def train_command(config_file: Path | None, resume: bool, quiet: bool, **flags: Any) -> None:
    _run("train", config_file, resume, quiet, flags)


@_command(
    "finetune",
    "Fine-tune a zoo (or Hub, or local) model with the MAE perceptual loss on your pairs.\n\n"
    "The default loss is the architecture's own pixel loss (NAFNet: psnr, Restormer: l1, Uformer: "
    "charbonnier) + 0.1*mae_local, with the mae-vit-base encoder from the Hub (--encoder-weights FILE "
    "for a local copy).",
    "  deblurkit finetune --model nafnet-gopro-width32 --data pairs/ -o nafnet-mine/\n"
    "  deblurkit finetune -c examples/recipes/nafnet-width64-gopro-mae.toml --data GoPro/train "
    "-o nafnet-mae/\n"
    "  deblurkit finetune --model restormer-motion --data pairs.csv --loss 'l1 + 0.1*mae_local' --steps 2000 "
    "-o out/\n",
)
def finetune(config_file: Path | None, resume: bool, quiet: bool, **flags: Any) -> None:
    _run("finetune", config_file, resume, quiet, flags)


def _degradation_options(func: Callable) -> Callable:
    """The synthesis settings as flags (the ``synth_*`` options of training, without the prefix)."""
    defaults = Degradation()
    by_name = {f.name: f for f in option_fields()}
    for name in reversed(Degradation.field_names()):
        default, flag = getattr(defaults, name), "--" + name.replace("_", "-")
        common = {"show_default": True, "help": by_name[f"synth_{name}"].metadata["help"]}
        if isinstance(default, bool):
            option = click.option(f"{flag}/--no-{flag[2:]}", name, default=default, **common)
        elif isinstance(default, tuple):
            numbers = not isinstance(default[0], str)
            shown = ",".join(f"{v:g}" if numbers else v for v in default)
            option = click.option(flag, name, type=_Listed(numbers), default=shown, **common)
        elif isinstance(default, int | float):
            option = click.option(
                flag, name, type=_number_type(by_name[f"synth_{name}"]), default=default, **common
            )
        else:
            option = click.option(flag, name, type=type(default), default=default, **common)
        func = option(func)
    return func


@click.command("synth", context_settings=_CONTEXT)
@click.argument("sharp_dir", type=PathType(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=PathType(file_okay=False, path_type=Path),
    required=True,
    help="Pairs folder to write (blur/ and sharp/).",
)
@click.option(
    "--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Seed of the random blur."
)
@click.option(
    "--from-frames",
    is_flag=True,
    help="SHARP_DIR holds consecutive video frames (one sequence per folder): average windows of them "
    "the GoPro way instead of blurring each image with a kernel.",
)
@click.option(
    "--frames-count",
    type=_Listed(True),
    default="7,13",
    show_default=True,
    help="With --from-frames: how many consecutive frames one blurry image averages (low,high).",
)
@click.option(
    "--frames-gamma",
    type=FiniteFloatRange(min=0.1),
    default=2.2,
    show_default=True,
    help="With --from-frames: the camera-response gamma undone before averaging.",
)
@click.option(
    "--stride",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --from-frames: start a window every N frames (0: windows back to back).",
)
@_degradation_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def synth(
    ctx: click.Context,
    sharp_dir: Path,
    output: Path,
    seed: int,
    from_frames: bool,
    frames_count: list[float],
    frames_gamma: float,
    stride: int,
    quiet: bool,
    **settings: Any,
) -> None:
    """Make blurry/sharp pairs from a folder of sharp images (a training or test set).

    Each image gets a random camera-shake, defocus, Gaussian or measured (--kernel-bank) kernel applied
    in linear light — optionally a spatially varying blend of several, with brighter-than-white
    highlights that streak and clip — then sensor noise and optionally JPEG. With --from-frames,
    windows of consecutive video frames are averaged in linear light the way the GoPro dataset is
    made (the middle frame is the sharp target; noise and JPEG only when their flags are given).
    OUTPUT gets blur/ and sharp/ (the layout --data reads) and synth.jsonl (what was done to each
    pair). The same seed gives the same pairs.

    \b
    Examples:
      deblurkit synth photos/ -o pairs/
      deblurkit synth photos/ -o test-pairs/ --seed 1 --kernels motion --noise 0.005 --jpeg 0.5
      deblurkit synth photos/ -o shaken/ --spatially-varying 0.5 --highlights 0.3
      deblurkit synth photos/ -o levin/ --kernels bank --kernel-bank levin09.npz
      deblurkit synth gopro-frames/ -o frame-pairs/ --from-frames --frames-count 7,13
    """
    from ..imaging.discovery import outside
    from ..synthesis.frames import FrameAveraging, frame_sequences, synthesize_from_frames
    from ..synthesis.pairs import synthesize_pairs
    from ..training.data import sharp_images

    if from_frames:
        given = {
            name: settings[name]
            for name in ("noise", "shot_noise", "jpeg", "jpeg_quality")
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        }
        averaging = FrameAveraging(
            frames=tuple(int(v) for v in frames_count),
            gamma=frames_gamma,
            **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()},
        )
        pairs = (output / "blur", output / "sharp")  # earlier pairs are never read back
        sequences = frame_sequences(sharp_dir, averaging.frames[0], exclude=pairs)
        total = sum(len(s) // averaging.frames[0] for s in sequences)
        records = synthesize_from_frames(sharp_dir, output, averaging, stride=stride, seed=seed)
    else:
        degradation = Degradation(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
        total = len(outside(sharp_images(sharp_dir), (output / "blur", output / "sharp")))
        records = synthesize_pairs(sharp_dir, output, degradation, seed)
    written = 0
    with tqdm(total=total, unit="pair", disable=quiet) as bar:
        try:
            for record in records:
                written += 1
                bar.update(1)
                bar.set_postfix_str(record["name"], refresh=False)
        except OSError as err:  # a full disk, or the folder taken away mid-run
            raise DeblurkitError(f"cannot write the pairs into {output}: {err.strerror or err}") from None
    click.echo(f"wrote {written} pairs to {output} (blur/, sharp/, synth.jsonl)", err=True)
