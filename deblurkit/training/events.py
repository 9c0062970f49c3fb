"""What a run reports: progress :class:`Event`s for the caller, and the run's log ``train/log.jsonl``
(every logged step and validation, one JSON object a line) with the averages behind each step line."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..imaging.atomic import write_text_atomic

__all__ = ["Event", "RunLog", "StepWindow"]


@dataclass
class Event:
    """A progress report: ``kind`` is start, step, log, val, checkpoint, note or done."""

    kind: str
    step: int
    data: dict[str, Any] = field(default_factory=dict)


class RunLog:
    """The records of ``train/log.jsonl``, kept in memory too (for the curves)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        """Add a record to the log and to the file."""
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def keep_upto(self, step: int) -> None:
        """Reload the file keeping the records up to ``step`` (a killed run may have logged beyond its
        checkpoint)."""
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [json.loads(line) for line in lines if line.strip()]
        self.records = [r for r in kept if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))


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
