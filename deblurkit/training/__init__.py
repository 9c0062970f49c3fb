"""Training and fine-tuning deblurring networks with the MAE perceptual losses.

:func:`train` runs a :class:`TrainConfig`; see :mod:`deblurkit.training.trainer` for what a run does
and :mod:`deblurkit.training.config` for the options and the TOML config format.
"""

from __future__ import annotations

from .config import (
    COMMAND_DEFAULTS,
    ConfigError,
    TrainConfig,
    default_loss,
    from_toml,
    load_config,
    to_toml,
)
from .events import Event
from .publish import push_to_hub
from .trainer import NonFiniteLossError, Trainer, TrainResult, train

__all__ = [
    "COMMAND_DEFAULTS",
    "ConfigError",
    "Event",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "default_loss",
    "from_toml",
    "load_config",
    "push_to_hub",
    "to_toml",
    "train",
]
