"""How the command line reports library errors: one line on stderr, the error's exit code, no traceback.

A stop asked for by a signal (Ctrl-C, or ``kill``'s SIGTERM and a closed terminal's SIGHUP) unwinds
like Ctrl-C, so the files being written are completed or removed (no temporary is left behind); the
exit code is 128 + the signal's number. Python warnings (a library's remark on a damaged file, say)
are printed as one ``warning: ...`` line each, without the source line Python would show (Pillow's
decompression-bomb warnings are not: deblurkit applies its own pixel limit before decoding).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Iterator

import click
from PIL import Image

from ..errors import DeblurkitError

__all__ = ["Command", "Group", "one_line_warnings", "reported_errors", "signals_interrupt"]

_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Stopped(KeyboardInterrupt):
    """Raised in the main thread by a stop signal other than SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame) -> None:
    raise _Stopped(signum)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    texts = [text for text in str(message).splitlines() if text.strip()]
    click.echo(f"warning: {' '.join(texts[0].split()) if texts else category.__name__}", err=True)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While the block runs, each warning shown is one ``warning: MESSAGE`` line on stderr."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        # Pillow's own bomb limit: deblurkit applies its --max-megapixels before decoding instead
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        yield


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`KeyboardInterrupt` like Ctrl-C (where
    they would kill the process outright: an ignored signal stays ignored, e.g. under ``nohup``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in _STOP_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            previous[signum] = signal.signal(signum, _stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


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
    """A command group whose library errors are reported by :func:`reported_errors`; Ctrl-C exits 130,
    SIGTERM 143 and SIGHUP 129 (see :func:`signals_interrupt`)."""

    def invoke(self, ctx: click.Context):
        try:
            with signals_interrupt(), one_line_warnings(), reported_errors(ctx):
                return super().invoke(ctx)
        except KeyboardInterrupt as err:
            signum = err.signum if isinstance(err, _Stopped) else signal.SIGINT
            click.echo("interrupted" if signum == signal.SIGINT else "terminated", err=True)
            ctx.exit(128 + int(signum))
