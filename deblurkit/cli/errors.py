"""How the command line reports library errors: one line on stderr, the error's exit code, no traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from ..errors import DeblurkitError

__all__ = ["Command", "Group", "reported_errors"]


@contextlib.contextmanager
def reported_errors(ctx: click.Context) -> Iterator[None]:
    """Turn a :class:`~deblurkit.errors.DeblurkitError` into ``error: ...`` and its exit code (1 or 2)."""
    try:
        yield
    except DeblurkitError as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(err.exit_code)


class Command(click.Command):
    """A command whose library errors are reported by :func:`reported_errors`."""

    def invoke(self, ctx: click.Context):
        with reported_errors(ctx):
            return super().invoke(ctx)


class Group(click.Group):
    """A command group whose library errors are reported by :func:`reported_errors`; Ctrl-C exits 130."""

    def invoke(self, ctx: click.Context):
        try:
            with reported_errors(ctx):
                return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
