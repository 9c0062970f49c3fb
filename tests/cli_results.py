"""Checks on the result of a CLI run that several test modules share."""

from __future__ import annotations


def one_error(result, exit_code: int) -> str:
    """The run's only ``error:`` line, after checking the exit code and that no traceback was shown."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]
