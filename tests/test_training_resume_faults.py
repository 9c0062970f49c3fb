"""Faults around resuming a run (issue #12): truncated checkpoint files, a torn last line in log.jsonl,
a disk that fills up while a checkpoint is written, and a resumption asked of another network. Each
ends in a resumed run or one line naming the file or option, never a traceback or a false failure."""

from __future__ import annotations

import builtins
import dataclasses
import errno
import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_training import TINY_NAFNET, _stop_at, small_photos, tiny_config, weights

import deblurkit.training.checkpoint as checkpoint
import deblurkit.training.events as events_module
from deblurkit.archs import get_architecture
from deblurkit.cli import cli
from deblurkit.errors import DeblurkitError
from deblurkit.training import ConfigError, train
from deblurkit.training.events import read_log
from deblurkit.zoo.models import build_network, save_model
from deblurkit.zoo.restorer import Restorer

FULL = os.strerror(errno.ENOSPC)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return small_photos(tmp_path_factory.mktemp("photos"))


def _checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "train" / "checkpoints").iterdir())


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".tmp" in p.name or ".old-" in p.name]


def _stopped(config, step: int) -> None:
    """Run ``config`` and stop it right after its checkpoint of ``step`` (like a kill)."""
    stop, handler = _stop_at(step)
    with pytest.raises(stop):
        train(config, events=handler)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _notes(events: list) -> list[str]:
    return [e.data["message"] for e in events if e.kind == "note"]


def _same(a: Path, b: Path) -> bool:
    x, y = weights(a), weights(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _one_error(result, exit_code: int) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit | None)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _cli_flags(photos, output, *extra) -> list[str]:
    return [
        "--architecture", "nafnet", "--arch-config", json.dumps(TINY_NAFNET), "--data", str(photos),
        "--synthesize", "--crop", "32", "--batch-size", "2", "--workers", "0", "--loss", "l1",
        "--val-every", "0", "--tile", "64", "--synth-motion-length", "3,9", "-q", "-o", str(output), *extra,
    ]  # fmt: skip


# -- 1. a truncated checkpoint ----------------------------------------------------------------------------
def test_a_truncated_newest_checkpoint_resumes_exactly_from_the_previous_one(photos, tmp_path):
    options = {"steps": 6, "save_every": 2, "ema": 0.9}
    train(tiny_config(photos, tmp_path / "straight", **options))
    config = tiny_config(photos, tmp_path / "out", **options)
    _stopped(config, 4)
    assert _checkpoints(tmp_path / "out") == ["latest.json", "step-00000002", "step-00000004"]
    damaged = tmp_path / "out" / "train" / "checkpoints" / "step-00000004" / "network.safetensors"
    _truncate(damaged)
    events: list = []
    result = train(config, events=events.append)
    assert result.resumed_from == 2 and result.step == 6
    assert any(f"{damaged} is truncated" in n and "checkpoint of step 2 instead" in n for n in _notes(events))
    assert _same(tmp_path / "straight", tmp_path / "out")
    assert _checkpoints(tmp_path / "out") == ["latest.json", "step-00000006"] and not _temporaries(
        tmp_path / "out"
    )
    log, bad = read_log(tmp_path / "out" / "train" / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 7)) and bad == []


@pytest.mark.parametrize(
    ("damage", "named", "problem"),
    [
        ("network.safetensors", "network.safetensors", "is truncated"),
        ("state.pt", "state.pt", "is truncated"),
        ("manifest.json", "manifest.json", "is damaged"),
        ("legacy", "network.safetensors", "cannot be read"),  # a checkpoint from before manifests
    ],
)
def test_a_damaged_only_checkpoint_is_one_line_naming_the_file(photos, tmp_path, damage, named, problem):
    config = tiny_config(photos, tmp_path / "out", steps=4, save_every=2)
    _stopped(config, 2)
    folder = tmp_path / "out" / "train" / "checkpoints" / "step-00000002"
    if damage == "legacy":
        (folder / "manifest.json").unlink()
    _truncate(folder / (damage if damage != "legacy" else named))
    with pytest.raises(DeblurkitError) as caught:
        train(config)
    message = str(caught.value)
    assert message.startswith(f"{folder / named} {problem}") and "\n" not in message
    assert message.endswith(f"no older checkpoint is intact; move {folder.parent} away to start the run over")
    assert (folder / "state.pt").exists()  # nothing deleted


def test_a_damaged_latest_json_falls_back_to_the_checkpoint_folders(photos, tmp_path):
    config = tiny_config(photos, tmp_path / "out", steps=5, save_every=2)
    _stopped(config, 4)
    pointer = tmp_path / "out" / "train" / "checkpoints" / "latest.json"
    pointer.write_text('{"step": 4, "fol')
    events: list = []
    assert train(config, events=events.append).resumed_from == 4
    assert any(f"{pointer} is damaged" in note for note in _notes(events))
    assert json.loads(pointer.read_text())["step"] == 5


def test_the_cli_names_the_damaged_checkpoint_file_in_one_line(photos, tmp_path):
    out = tmp_path / "out"
    _stopped(tiny_config(photos, out, steps=4, save_every=2), 2)
    state = out / "train" / "checkpoints" / "step-00000002" / "state.pt"
    _truncate(state)
    flags = _cli_flags(photos, out, "--steps", "4", "--save-every", "2", "--resume")
    result = CliRunner().invoke(cli, ["train", *flags])
    assert _one_error(result, 1).startswith(f"error: {state} is truncated (")


# -- 2. a torn last line in log.jsonl -----------------------------------------------------------------------
def test_a_torn_last_log_line_is_dropped_with_a_note_on_resume(photos, tmp_path):
    config = tiny_config(photos, tmp_path / "out", steps=6, save_every=2)
    _stopped(config, 4)
    log = tmp_path / "out" / "train" / "log.jsonl"
    with open(log, "a", encoding="utf-8") as handle:
        handle.write('{"kind": "train", "step": 5, "loss": 0.1')  # killed mid-write: no newline either
    records, bad = read_log(log)
    assert [r["step"] for r in records] == [1, 2, 3, 4] and bad == [5]
    events: list = []
    assert train(config, events=events.append).resumed_from == 4
    assert f"{log}: dropped 1 torn or damaged line (line 5)" in _notes(events)
    lines = log.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 7))
    assert (tmp_path / "out" / "train" / "curves.png").is_file()


def test_read_log_skips_every_line_that_is_not_a_record(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_bytes(
        b'{"kind": "train", "step": 1, "loss": 0.5}\n[1, 2]\n"text"\n{"kind": "val"}\n'
        b'{"kind": "val", "step": 2, "psnr": 30.0}\n\x00\x00\x00\n{"kind": "train", "step": 3, "lo\xc3'
    )
    records, bad = read_log(log)
    assert [r["step"] for r in records] == [1, 2] and bad == [2, 3, 4, 6, 7]
    assert read_log(tmp_path / "absent.jsonl") == ([], [])


# -- 3. a disk that fills up --------------------------------------------------------------------------------
def _full_disk_on(monkeypatch, module, matches, after: int = 0) -> None:
    """Make ``module``'s writes to files ``matches`` accepts fail with ENOSPC after ``after`` writes, having
    written half of that write's data (a disk filling up mid-write)."""

    class Full:
        def __init__(self, handle):
            self.handle, self.writes = handle, 0

        def write(self, data):
            self.writes += 1
            if self.writes <= after:
                return self.handle.write(data)
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError(errno.ENOSPC, FULL)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def fake_open(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 - closed by its user
        return Full(handle) if any(c in mode for c in "wax") and matches(Path(path)) else handle

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def test_a_full_disk_during_a_checkpoint_stops_in_one_line_and_resume_works(photos, tmp_path, monkeypatch):
    out, flags = tmp_path / "out", ("--steps", "6", "--save-every", "2", "--ema", "0.9")
    straight = CliRunner().invoke(cli, ["train", *_cli_flags(photos, tmp_path / "straight", *flags)])
    assert straight.exit_code == 0, straight.output
    _full_disk_on(monkeypatch, checkpoint, lambda path: path.parent.name.startswith(".step-00000004."))
    result = CliRunner().invoke(cli, ["train", *_cli_flags(photos, out, *flags)])
    target = out / "train" / "checkpoints" / "step-00000004"
    assert _one_error(result, 1) == (
        f"error: cannot write the checkpoint {target}: [Errno {errno.ENOSPC}] {FULL}; the run stopped "
        "(the checkpoint of step 2 is kept; free some space, then run again to resume)"
    )
    assert _checkpoints(out) == ["latest.json", "step-00000002"] and not _temporaries(out)
    assert checkpoint.checkpoint_problem(target.with_name("step-00000002"), thorough=True) is None
    monkeypatch.undo()
    resumed = CliRunner().invoke(cli, ["train", *_cli_flags(photos, out, *flags)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming at step 2" in resumed.stderr and _same(tmp_path / "straight", out)


def test_a_full_disk_before_any_checkpoint_leaves_nothing_behind(photos, tmp_path, monkeypatch):
    config = tiny_config(photos, tmp_path / "out", steps=4, save_every=2)
    _full_disk_on(monkeypatch, checkpoint, lambda path: path.name == "state.pt", after=2)  # within torch.save
    tail = r"\(no checkpoint yet; free some space, then run again\)$"
    with pytest.raises(DeblurkitError, match=r"step-00000002: \[Errno 28\] .*; the run stopped " + tail):
        train(config)
    assert _checkpoints(tmp_path / "out") == [] and not _temporaries(tmp_path / "out")


def test_a_full_disk_while_logging_stops_in_one_line_and_the_torn_line_is_repaired(
    photos, tmp_path, monkeypatch
):
    config = tiny_config(photos, tmp_path / "out", steps=6, save_every=2)
    log = tmp_path / "out" / "train" / "log.jsonl"
    appended = []

    def fifth_append(path: Path) -> bool:
        appended.append(path)
        return path == log and len(appended) == 5

    _full_disk_on(monkeypatch, events_module, fifth_append)
    with pytest.raises(DeblurkitError) as caught:
        train(config)
    assert str(caught.value) == (
        f"cannot write {log}: {FULL}; the run stopped (free some space, then run again to resume)"
    )
    assert read_log(log)[1] == [5]  # the torn line
    monkeypatch.undo()
    events: list = []
    assert train(config, events=events.append).resumed_from == 4
    assert any("dropped 1 torn" in note for note in _notes(events))
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == list(range(1, 7))


# -- 4. resuming as another network ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Two model folders of the same tiny NAFNet, and a weights file of each."""
    folder = tmp_path_factory.mktemp("bases")
    made = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        network = build_network("nafnet", TINY_NAFNET)
        restorer = Restorer(network, get_architecture("nafnet"), TINY_NAFNET)
        made.append(save_model(restorer, folder / f"base{seed}"))
    return made


def _model_config(photos, out, model, **overrides):
    return tiny_config(photos, out, architecture="", arch_config={}, model=str(model), **overrides)


@pytest.mark.parametrize("resume", [False, True])
def test_resuming_with_another_model_is_refused_naming_both(photos, tmp_path, bases, resume):
    config = _model_config(photos, tmp_path / "out", bases[0], steps=4, save_every=2)
    _stopped(config, 2)
    other = dataclasses.replace(config, model=str(bases[1]))
    with pytest.raises(ConfigError) as caught:
        train(other, resume=resume)
    assert str(caught.value) == (
        f"{tmp_path / 'out'} holds a run (step 2) of --model {bases[0]}, not --model {bases[1]}; "
        f"continue it with --model {bases[0]}, or choose another --output"
    )
    scratch = dataclasses.replace(config, model="", architecture="nafnet", arch_config=dict(TINY_NAFNET))
    with pytest.raises(ConfigError, match=rf"of --model {bases[0]}, not --architecture nafnet;"):
        train(scratch, resume=resume)


def test_the_same_model_written_another_way_still_resumes(photos, tmp_path, bases, monkeypatch):
    config = _model_config(photos, tmp_path / "out", bases[0], steps=4, save_every=2)
    _stopped(config, 2)
    monkeypatch.chdir(bases[0].parent)
    assert train(dataclasses.replace(config, model=f"./{bases[0].name}")).resumed_from == 2


def test_resuming_from_other_starting_weights_is_refused(photos, tmp_path, bases):
    files = [base / "model.safetensors" for base in bases]
    config = _model_config(
        photos, tmp_path / "out", bases[0], steps=4, save_every=2, pretrained=True, weights=str(files[0])
    )
    _stopped(config, 2)
    with pytest.raises(ConfigError) as caught:
        train(dataclasses.replace(config, weights=str(files[1])), resume=True)
    assert str(caught.value) == (
        f"{tmp_path / 'out'} holds a run (step 2) started from --weights {files[0]}, not --weights "
        f"{files[1]}; continue it with --weights {files[0]}, or choose another --output"
    )
    with pytest.raises(ConfigError, match=r"started from --weights .*, not random weights; continue it with"):
        train(dataclasses.replace(config, pretrained=False, weights=""), resume=True)


def test_the_cli_refuses_another_model_in_one_line(photos, tmp_path, bases):
    out = tmp_path / "out"
    _stopped(_model_config(photos, out, bases[0], steps=4, save_every=2), 2)
    flags = _cli_flags(photos, out, "--steps", "4", "--save-every", "2")
    at = flags.index("--architecture")
    del flags[at : at + 4]  # no --architecture/--arch-config: the model says
    result = CliRunner().invoke(cli, ["train", "--resume", "--model", str(bases[1]), *flags])
    line = _one_error(result, 2)
    assert f"of --model {bases[0]}, not --model {bases[1]}" in line
