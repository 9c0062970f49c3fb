"""What a run reports: progress :class:`Event`s for the caller, and the run's log ``train/log.jsonl``
(every logged step and validation, one JSON object a line) with the averages behind each step line.

A run killed while appending leaves a torn last line: :func:`read_log` (what every reader of the log
goes through) skips lines that are not a whole record, and a resumed run rewrites the log without them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..imaging.atomic import write_text_atomic

__all__ = ["Event", "RunLog", "StepWindow", "read_log"]


@dataclass
class Event:
    """A progress report: ``kind`` is start, step, log, val, checkpoint, note or done."""

    kind: str
    step: int
    data: dict[str, Any] = field(default_factory=dict)


def _record(line: str) -> dict[str, Any] | None:
    """The record on one line of the log, or None when the line is not a whole record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step):
        return None
    return record


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The records of log file ``path`` (none when it is absent) and the numbers of the lines that are not
    a whole record (a torn last line, a damaged one), which are skipped."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return [], []
    records, bad = [], []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        record = _record(line)
        if record is None:
            bad.append(number)
        else:
            records.append(record)
    return records, bad


class RunLog:
    """The records of ``train/log.jsonl``, kept in memory too (for the curves)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        """Add a record to the log and to the file."""
        self.records.append(record)
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as err:
            err.filename = err.filename or str(self.path)  # a failed write does not say which file
            raise

    def keep_upto(self, step: int) -> list[str]:
        """Reload the file keeping the records up to ``step`` (a killed run may have logged beyond its
        checkpoint) and dropping lines that are not a whole record; returns notes on what was dropped."""
        if not self.path.is_file():
            return []
        kept, bad = read_log(self.path)
        self.records = [r for r in kept if r["step"] <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        if not bad:
            return []
        lines = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        plural = "s" if len(bad) > 1 else ""
        return [f"{self.path}: dropped {len(bad)} torn or damaged line{plural} (line{plural} {lines})"]


class StepWindow:
    """The loss terms and throughput of the steps since the last logged one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new window now."""
        self.sums: dict[str, Any] = {}
        self.count = 0
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, stats: dict[str, Any]) -> None:
        """Count one optimizer step (its terms stay tensors: no device sync until a step is logged)."""
        self.steps += 1
        for key, value in stats["terms"].items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 0 if stats["skipped"] else 1

    def record(self, step: int, lr: float, samples_per_step: int, grad_norm: Any) -> dict[str, Any]:
        """The log record of the window (mean terms, learning rate, samples/s); starts a new window."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        record = {
            "kind": "train",
            "step": step,
            **{k: float(v) / max(self.count, 1) for k, v in self.sums.items()},
            "lr": lr,
            "samples_per_s": self.steps * samples_per_step / elapsed,
        }
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        self.reset()
        return record
