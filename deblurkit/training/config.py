"""The training configuration: one dataclass, read from TOML, overridden by CLI flags, saved as TOML.

A config file groups the options in tables (``[model]``, ``[data]``, ``[synth]``, ``[loss]``,
``[optim]``, ``[output]``); inside ``[synth]`` the ``synth_`` prefix is dropped. Top-level keys
with the full option name are accepted too. Unknown keys are a one-line error naming the key.
The resolved config is written back with :func:`to_toml` (tables of scalars, one-line arrays and
inline tables, every literal written by tomli-w), and :func:`from_toml` reads it back to an equal config.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from ..archs import get_architecture
from ..errors import UsageError
from ..synthesis.blur import Degradation

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "COMMAND_DEFAULTS",
    "SECTIONS",
    "ConfigError",
    "TrainConfig",
    "coerce",
    "default_loss",
    "degradation_of",
    "differences",
    "from_toml",
    "load_config",
    "option_fields",
    "to_toml",
]

SECTIONS = ("model", "data", "synth", "loss", "optim", "output")


class ConfigError(UsageError):
    """A bad option or config file (exit code 2, like a usage error)."""


def _opt(default: Any, section: str, help: str, **extra: Any) -> Any:
    """A scalar option: its default, its section of the config file, its help and checks."""
    return field(default=default, metadata={"section": section, "help": help, **extra})


def _listed(default: list | dict, section: str, help: str) -> dict[str, Any]:
    """The ``field`` arguments of a list or table option (a fresh copy of the default each time)."""
    return {"default_factory": lambda: type(default)(default), "metadata": {"section": section, "help": help}}


_SYNTH = Degradation()


@dataclass
class TrainConfig:
    """Every option of ``deblurkit train`` / ``finetune`` (the CLI flag is the name with dashes)."""

    # model
    model: str = _opt(
        "",
        "model",
        "Zoo name, hf:org/name or model folder: the architecture, its config "
        "and (finetune) the starting weights.",
    )
    architecture: str = _opt(
        "",
        "model",
        "Architecture to train from scratch when no --model is given "
        "(nafnet, nafnet-local, restormer, uformer).",
    )
    arch_config: dict = field(
        **_listed(
            {},
            "model",
            "Architecture config (JSON) overriding the model's or the "
            "architecture's default, e.g. '{\"width\": 16}'.",
        )
    )
    weights: str = _opt("", "model", "Starting weights file overriding the model's own (finetune).")
    pretrained: bool = _opt(
        False, "model", "Start from the model's weights (finetune) instead of random ones."
    )
    name: str = _opt("", "model", "Name of the trained model (default: the output folder's name).")
    # data
    data: str = _opt(
        "",
        "data",
        "Folder of pairs (blur/+sharp/, input/+target/, lq/+gt/, any depth) or a "
        "CSV/txt list; with --synthesize, a folder of sharp images.",
    )
    synthesize: bool = _opt(False, "data", "Make blurry inputs on the fly from the sharp images in --data.")
    frames: str = _opt(
        "",
        "data",
        "Folder of consecutive sharp video frames (one sequence per folder, e.g. 240-fps GoPro): "
        "blurry/sharp pairs made on the fly the GoPro way, next to --data.",
    )
    frames_count: list = field(
        **_listed([7, 13], "data", "How many consecutive frames one blurry image averages (low, high).")
    )
    frames_gamma: float = _opt(2.2, "data", "Camera-response gamma undone before averaging frames.", min=0.1)
    frames_share: float = _opt(
        0.5, "data", "Share of training samples drawn from --frames.", min=0.0, max=1.0
    )
    stills: str = _opt(
        "", "data", "Folder of sharp photos shaken on the fly with the [synth] settings, next to --data."
    )
    stills_share: float = _opt(
        0.25, "data", "Share of training samples drawn from --stills.", min=0.0, max=1.0
    )
    val_data: str = _opt(
        "", "data", "Validation pairs (a folder or list like --data; with --synthesize, sharp images)."
    )
    val_split: float = _opt(
        0.0, "data", "Hold out this share (< 1) or number (≥ 1) of --data for validation."
    )
    val_max: int = _opt(16, "data", "Validate on at most this many images (0: all).")
    crop: int = _opt(
        256,
        "data",
        "Training patch side in pixels (a multiple of the encoder's patch and of "
        "the architecture's size rule).",
    )
    batch_size: int = _opt(8, "data", "Global batch size (split across processes).", min=1)
    workers: int = _opt(
        2, "data", "DataLoader worker processes per training process (0: load in-process).", min=0
    )
    flips: bool = _opt(True, "data", "Random flips and 90° rotations.")
    check_images: str = _opt(
        "header",
        "data",
        "Check every image before training by its header, or decode it fully.",
        choices=("header", "full"),
    )
    skip_bad_pairs: bool = _opt(
        False, "data", "Leave out unmatched, unreadable or mismatched pairs instead of stopping."
    )
    # synthesis (the blur.Degradation settings)
    synth_kernels: list = field(
        **_listed(list(_SYNTH.kernels), "synth", "Blur kernels to draw from: motion, defocus, gaussian.")
    )
    synth_motion_length: list = field(
        **_listed(list(_SYNTH.motion_length), "synth", "Camera-shake trajectory length range, pixels.")
    )
    synth_defocus_radius: list = field(
        **_listed(list(_SYNTH.defocus_radius), "synth", "Defocus disk radius range, pixels.")
    )
    synth_gaussian_sigma: list = field(
        **_listed(list(_SYNTH.gaussian_sigma), "synth", "Gaussian blur sigma range, pixels.")
    )
    synth_linear_light: bool = _opt(
        _SYNTH.linear_light, "synth", "Blur in linear light (undo the sRGB curve first)."
    )
    synth_noise: float = _opt(_SYNTH.noise, "synth", "Largest read-noise sigma (linear light, 0..1).")
    synth_shot_noise: float = _opt(_SYNTH.shot_noise, "synth", "Largest shot-noise gain (linear light).")
    synth_jpeg: float = _opt(_SYNTH.jpeg, "synth", "Probability of JPEG-compressing the blurry input.")
    synth_jpeg_quality: list = field(**_listed(list(_SYNTH.jpeg_quality), "synth", "JPEG quality range."))
    synth_bits: int = _opt(_SYNTH.bits, "synth", "Quantise blurry inputs to 8 or 16 bits (0: floats).")
    synth_spatially_varying: float = _opt(
        _SYNTH.spatially_varying,
        "synth",
        "Probability of a non-uniform blur (a grid of kernels blended).",
        min=0.0,
        max=1.0,
    )
    synth_highlights: float = _opt(
        _SYNTH.highlights,
        "synth",
        "Probability of brighter-than-white lights that streak and clip.",
        min=0.0,
        max=1.0,
    )
    synth_highlight_gain: list = field(
        **_listed(
            list(_SYNTH.highlight_gain), "synth", "How much brighter than white the lights get (range)."
        )
    )
    synth_kernel_bank: str = _opt("", "synth", "An .npz of measured kernels for the 'bank' kernel kind.")
    # loss
    loss: str = _opt(
        "",
        "loss",
        "Loss spec, e.g. 'l1 + 0.1*mae_local' (default: the architecture's pixel loss + 0.1*mae_local).",
    )
    encoder: str = _opt("mae-vit-base", "loss", "Encoder of the MAE loss terms (a zoo encoder name).")
    encoder_weights: str = _opt(
        "", "loss", "Local safetensors of the encoder (timm ViT naming) instead of the Hub."
    )
    # optimisation
    steps: int = _opt(10000, "optim", "Optimizer steps to train for.", min=1)
    lr: float = _opt(1e-3, "optim", "Peak learning rate (AdamW).")
    min_lr: float = _opt(1e-7, "optim", "Learning rate at the end of the cosine schedule.")
    weight_decay: float = _opt(1e-3, "optim", "AdamW weight decay.")
    betas: list = field(**_listed([0.9, 0.9], "optim", "AdamW betas."))
    warmup: int = _opt(0, "optim", "Linear warm-up steps before the cosine decay.", min=0)
    grad_clip: float = _opt(0.0, "optim", "Clip the gradient norm to this (0: off).")
    accumulate: int = _opt(1, "optim", "Micro-batches accumulated per optimizer step.", min=1)
    ema: float = _opt(0.0, "optim", "EMA decay of the weights (0: off; e.g. 0.999).")
    ema_warmup: bool = _opt(True, "optim", "Ramp the EMA decay up as (1+step)/(10+step) early on.")
    precision: str = _opt(
        "auto",
        "optim",
        "Autocast precision: auto (bf16 on CUDA, fp32 elsewhere), fp32, bf16, fp16 (with a grad scaler).",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    compile: bool = _opt(False, "optim", "torch.compile the network.")
    channels_last: bool = _opt(False, "optim", "channels_last memory format (faster convolutions on GPUs).")
    device: str = _opt("auto", "optim", "auto, cpu, cuda or cuda:N (torchrun: each process its local GPU).")
    seed: int = _opt(0, "optim", "Seed of the initialisation, data order, crops and synthesis.")
    on_nonfinite: str = _opt(
        "stop",
        "optim",
        "On a NaN/Inf loss: stop with a message naming the step, or skip the batch.",
        choices=("stop", "skip"),
    )
    # output
    output: str = _opt(
        "", "output", "Run folder: the trained model folder, with the run's files in train/ inside."
    )
    log_every: int = _opt(10, "output", "Log the loss every this many steps.", min=1)
    val_every: int = _opt(1000, "output", "Validate every this many steps (0: only at the end).", min=0)
    save_every: int = _opt(1000, "output", "Save a resumable checkpoint every this many steps.", min=1)
    tile: int = _opt(0, "output", "Validation tile side (0: automatic; large images are tiled).", min=0)
    push_to_hub: str = _opt(
        "", "output", "Publish the trained model folder as this Hub repository (org/name)."
    )

    def degradation(self) -> Degradation:
        """The synthesis settings as a :class:`~deblurkit.synthesis.blur.Degradation`."""
        return degradation_of(self)


COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {},
    "finetune": {
        "pretrained": True,
        "lr": 1e-4,
        "min_lr": 1e-7,
        "weight_decay": 1e-4,
        "steps": 5000,
        "warmup": 100,
    },
}
"""Defaults each command applies on top of the dataclass defaults (before the file and the flags)."""


def option_fields() -> list[dataclasses.Field]:
    """The config's fields, in order."""
    return list(fields(TrainConfig))


def degradation_of(config: TrainConfig) -> Degradation:
    """The ``synth_*`` options as a :class:`~deblurkit.synthesis.blur.Degradation`."""
    values = {name: getattr(config, f"synth_{name}") for name in Degradation.field_names()}
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return Degradation(**values)


def default_loss(architecture: str, mae: bool = True) -> str:
    """The pixel loss of the architecture's official recipe (``l1`` for an unknown one) plus, by default,
    ``0.1*mae_local``."""
    try:
        pixel = get_architecture(architecture).pixel_loss
    except KeyError:
        pixel = "l1"
    return f"{pixel} + 0.1*mae_local" if mae else pixel


# -- types --------------------------------------------------------------------------------------------
def _kind(f: dataclasses.Field) -> type:
    return typing.get_type_hints(TrainConfig)[f.name]


def coerce(name: str, value: Any) -> Any:
    """``value`` checked and converted to the type of option ``name``; a one-line error otherwise."""
    f = {f.name: f for f in fields(TrainConfig)}[name]
    kind = _kind(f)

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"option {name} must be {expected}, got {value!r}")

    if kind is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("a whole number")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise fail("a string")
    elif kind is list:
        if not isinstance(value, list | tuple):
            raise fail("a list")
        value = list(value)
    elif kind is dict and not isinstance(value, Mapping):
        raise fail("a table")
    elif kind is dict:
        value = dict(value)
    if "min" in f.metadata and value < f.metadata["min"]:
        raise fail(f"at least {f.metadata['min']}")
    if "max" in f.metadata and value > f.metadata["max"]:
        raise fail(f"at most {f.metadata['max']}")
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        raise fail("one of " + ", ".join(f.metadata["choices"]))
    return value


# -- reading ------------------------------------------------------------------------------------------
def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown option {key!r}{hint}")


def _flatten(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """TOML tables → option names (``[synth] kernels`` → ``synth_kernels``)."""
    by_name = {f.name: f for f in fields(TrainConfig)}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for inner, item in value.items():
                name = f"synth_{inner}" if key == "synth" and not inner.startswith("synth_") else inner
                if by_name.get(name) is None or by_name[name].metadata["section"] != key:
                    in_section = [
                        n.removeprefix("synth_") for n, f in by_name.items() if f.metadata["section"] == key
                    ]
                    raise _unknown(f"{key}.{inner}", [f"{key}.{n}" for n in in_section], where)
                flat[name] = item
        elif key in by_name:
            flat[key] = value
        else:
            raise _unknown(key, [*by_name, *SECTIONS], where)
    return flat


def from_toml(text: str, *, where: str = "config", base: TrainConfig | None = None) -> TrainConfig:
    """A config from TOML text, on top of ``base`` (default: the dataclass defaults)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where} is not valid TOML: {err}") from None
    values = {name: coerce(name, value) for name, value in _flatten(data, where).items()}
    return dataclasses.replace(base or TrainConfig(), **values)


def load_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML config file on top of ``base``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a TOML config (not UTF-8 text)") from None
    return from_toml(text, where=str(path), base=base)


# -- writing ------------------------------------------------------------------------------------------
def _scalar(value: Any) -> str:
    """A bool, number or string as a TOML literal, written by tomli-w (escapes, ``nan``, ``inf``)."""
    if isinstance(value, list | tuple | Mapping):
        raise TypeError("not a scalar")
    return tomli_w.dumps({"v": value}).removeprefix("v = ").removesuffix("\n")


def _value(value: Any) -> str:
    """A TOML value on one line: scalars by tomli-w, arrays and tables inline (tomli-w would spread
    every array over one line per item)."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    return _scalar(value)


def _key(key: str) -> str:
    """A TOML key, bare or quoted (by tomli-w)."""
    return tomli_w.dumps({key: 0}).removesuffix(" = 0\n")


def to_toml(config: TrainConfig, header: str = "") -> str:
    """The config as TOML, one table per section; :func:`from_toml` reads it back equal (NaN apart)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for section in SECTIONS:
        lines += ["", f"[{section}]"] if lines else [f"[{section}]"]
        for f in fields(TrainConfig):
            if f.metadata["section"] == section:
                key = f.name.removeprefix("synth_") if section == "synth" else f.name
                lines.append(f"{_key(key)} = {_value(getattr(config, f.name))}")
    return "\n".join(lines) + "\n"


def differences(old: TrainConfig, new: TrainConfig, ignore: tuple[str, ...] = ()) -> list[str]:
    """Names of the options that differ (``ignore``: names that may)."""
    return [
        f.name
        for f in fields(TrainConfig)
        if f.name not in ignore and getattr(old, f.name) != getattr(new, f.name)
    ]
