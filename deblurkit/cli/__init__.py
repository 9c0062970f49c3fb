"""The ``deblurkit`` command line: a thin layer over the library, one module per command group."""

from __future__ import annotations

import sys

import click

from .._version import __version__
from .errors import Group

__all__ = ["main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="deblurkit")
def cli() -> None:
    """Deblur photos with a zoo of restoration networks, and fine-tune them with MAE perceptual losses.

    \b
    Examples:
      deblurkit zoo list
      deblurkit deblur photos/ -o restored/
      deblurkit score restored/ sharp/ --metrics psnr,ssim
      deblurkit eval --data GoPro/test -m maxim-s1-fast -m maxim-gopro -o eval/
    """


def _register_commands() -> None:
    from . import deblur as deblur_commands
    from . import eval as eval_commands
    from . import score as score_commands
    from . import train as train_commands
    from . import zoo as zoo_commands

    cli.add_command(deblur_commands.deblur)
    cli.add_command(zoo_commands.zoo)
    cli.add_command(score_commands.score)
    cli.add_command(eval_commands.eval_command)
    cli.add_command(train_commands.train_command)
    cli.add_command(train_commands.finetune)
    cli.add_command(train_commands.synth)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    # The Hub client logs a warning per network retry; our one-line error says what failed.
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    sys.exit(cli.main(prog_name="deblurkit", standalone_mode=True))
