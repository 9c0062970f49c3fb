"""Faults around the files a run touches: concurrent runs into one folder, read-only and full disks,
looping and dangling symbolic links, bad numeric training options, a file given for a folder, and
``--compile`` on CPU."""

from __future__ import annotations

import builtins
import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from cli_results import one_error
from click.testing import CliRunner
from PIL import Image

import deblurkit.imaging.atomic as atomic
from deblurkit.archs import get_architecture
from deblurkit.cli import cli
from deblurkit.cli.params import FiniteFloatRange
from deblurkit.cli.train import _Listed, finetune, synth, train_command
from deblurkit.errors import UsageError
from deblurkit.imaging.atomic import atomic_path, check_writable, write_atomic
from deblurkit.imaging.discovery import OUTPUT_MARKER
from deblurkit.inference.deblurrer import Deblurrer
from deblurkit.zoo.models import build_network, save_model
from deblurkit.zoo.restorer import Restorer

TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


@pytest.fixture(scope="module")
def model() -> Restorer:
    torch.manual_seed(0)
    return Restorer(build_network("nafnet", TINY), get_architecture("nafnet"), TINY, name="tiny")


@pytest.fixture(scope="module")
def model_dir(model: Restorer, tmp_path_factory) -> Path:
    """The tiny NAFNet as a model folder ``--model PATH`` accepts."""
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny")


def _photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    return folder


def _deblur(model_dir: Path, *args: str):
    return CliRunner().invoke(cli, ["deblur", *args, "--model", str(model_dir), "-q", "--tile", "0"])


def _outputs(folder: Path) -> list[str]:
    """The names of the outputs in ``folder``, each decoded fully; no other file may be there."""
    names = []
    for path in sorted(folder.iterdir()):
        assert path.name == OUTPUT_MARKER or not path.name.startswith("."), f"left-over file {path.name}"
        if path.name != OUTPUT_MARKER:
            with Image.open(path) as image:
                image.load()
            names.append(path.name)
    return names


# --- 1. concurrent runs into one folder ------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_write_removes_only_temporaries_no_running_writer_owns(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with atomic_path(target) as mine:
        mine.write_bytes(b"first writer, still busy")
        host = mine.name.removeprefix(".out.png.").split("-")[0]
        live = tmp_path / f".out.png.{host}-{os.getppid()}-00.tmp"
        other_host = tmp_path / f".out.png.{'0' * 8 if host != '0' * 8 else '1' * 8}-{_dead_pid()}-00.tmp"
        other_target = tmp_path / f".out.png.png.{host}-{_dead_pid()}-00.tmp"
        dead = tmp_path / f".out.png.{host}-{_dead_pid()}-00.tmp"
        for path in (live, other_host, other_target, dead):
            path.write_bytes(b"someone's temporary")
        write_atomic(target, lambda handle: handle.write(b"second writer"))
        assert all(path.exists() for path in (mine, live, other_host, other_target)) and not dead.exists()
    assert target.read_bytes() == b"first writer, still busy" and not mine.exists()


def test_threads_writing_one_target_at_once_all_succeed(tmp_path: Path) -> None:
    target, errors = tmp_path / "out.bin", []
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        def save(handle) -> None:
            handle.write(bytes([i]) * 1000)
            barrier.wait(timeout=10)  # every thread holds its temporary at the same moment
            handle.write(bytes([i]) * 1000)

        try:
            write_atomic(target, save)
        except Exception as err:  # pragma: no cover - what the test is looking for
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    data = target.read_bytes()
    assert errors == [] and len(data) == 2000 and len(set(data)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_two_runs_into_one_folder_both_succeed(tmp_path: Path, model_dir: Path) -> None:
    photos, out = _photos(tmp_path / "photos", 12), tmp_path / "out"
    command = [sys.executable, "-m", "deblurkit", "deblur", str(photos), "-o", str(out)]
    command += ["--model", str(model_dir), "--overwrite", "--tile", "0", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert all("12 done, 0 skipped, 0 failed" in err for err in errors), errors
    assert _outputs(out) == [f"img{i:02d}.png" for i in range(12)]


# --- 2. read-only and full disks ---------------------------------------------------------------------


def _failing_open(monkeypatch, code: int, *, after: int = 0, probe: bool = True) -> None:
    """Make atomic writes fail with ``OSError(code)``: the folder probe (when ``probe``) and every file
    after the first ``after``, each having written half of its first chunk (a truncated temporary)."""
    opened = []

    class Failing:
        def __init__(self, handle) -> None:
            self.handle = handle

        def write(self, data: bytes) -> int:
            self.handle.write(data[: len(data) // 2])
            raise OSError(code, os.strerror(code))

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def __getattr__(self, name: str):
            return getattr(self.handle, name)

    def fake_open(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 - closed by its user
        if Path(path).name.startswith(".deblurkit-probe."):
            return Failing(handle) if probe else handle
        opened.append(path)
        return Failing(handle) if len(opened) > after else handle

    monkeypatch.setattr(atomic, "open", fake_open, raising=False)


@pytest.mark.parametrize(
    ("code", "exit_code"), [(errno.EROFS, 2), (errno.EACCES, 2), (errno.ENOSPC, 1), (errno.EDQUOT, 1)]
)
def test_an_unwritable_output_folder_is_one_line_before_any_image(
    tmp_path: Path, model_dir: Path, monkeypatch, code: int, exit_code: int
) -> None:
    photos, out = _photos(tmp_path / "photos", 2), tmp_path / "out"
    out.mkdir()
    _failing_open(monkeypatch, code)
    result = _deblur(model_dir, str(photos), "-o", str(out))
    line = one_error(result, exit_code)
    assert line == f"error: cannot write into the output folder {out}: {os.strerror(code)}"
    assert list(out.iterdir()) == [] and "done" not in result.stderr


def test_an_output_folder_below_a_file_is_one_line(tmp_path: Path, model_dir: Path) -> None:
    photos = _photos(tmp_path / "photos", 1)
    (tmp_path / "file").write_bytes(b"not a folder")
    result = _deblur(model_dir, str(photos), "-o", str(tmp_path / "file" / "out"))
    line = one_error(result, 2)
    assert line.startswith(f"error: cannot write into the output folder {tmp_path / 'file' / 'out'}: ")
    with pytest.raises(UsageError, match="a file is in the way"):
        check_writable(tmp_path / "file")


def test_a_disk_that_fills_up_mid_run_stops_it_with_one_line(
    tmp_path: Path, model_dir: Path, monkeypatch
) -> None:
    photos, out = _photos(tmp_path / "photos", 5), tmp_path / "out"
    _failing_open(monkeypatch, errno.ENOSPC, after=1, probe=False)
    result = _deblur(model_dir, str(photos), "-o", str(out))
    line = one_error(result, 1)
    assert line.startswith(f"error: cannot write {out / 'img01.png'}: [Errno {errno.ENOSPC}]")
    assert line.endswith("the run stopped (free some space, then run again to resume)")
    assert _outputs(out) == ["img00.png"]  # complete, and nothing truncated or temporary left


def test_synth_on_a_full_disk_stops_with_one_line(tmp_path: Path, monkeypatch) -> None:
    photos, out = _photos(tmp_path / "photos", 3), tmp_path / "pairs"
    _failing_open(monkeypatch, errno.ENOSPC, after=1, probe=False)
    result = CliRunner().invoke(cli, ["synth", str(photos), "-o", str(out), "-q"])
    line = one_error(result, 1)
    assert line == f"error: cannot write the pairs into {out}: {os.strerror(errno.ENOSPC)}"
    written = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.name for p in written) == ["img00.png", "synth.jsonl"]


# --- 3. looping and dangling symbolic links ----------------------------------------------------------


@pytest.mark.parametrize("as_folder", [True, False])
def test_looping_and_dangling_links_fail_alone(tmp_path: Path, model_dir: Path, as_folder: bool) -> None:
    photos = _photos(tmp_path / "photos", 2)
    (photos / "a.png").symlink_to("b.png")
    (photos / "b.png").symlink_to("a.png")
    (photos / "gone.png").symlink_to("missing.png")
    inputs = [str(photos)] if as_folder else sorted(str(p) for p in photos.iterdir())
    result = _deblur(model_dir, *inputs, "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    failed = sorted(line for line in result.stderr.splitlines() if line.startswith("failed:"))
    assert [line.split(": ")[1] for line in failed] == [
        str(photos / n) for n in ("a.png", "b.png", "gone.png")
    ]
    assert "2 done, 0 skipped, 3 failed" in result.stderr
    assert _outputs(tmp_path / "out") == ["img00.png", "img01.png"]


# --- 4. numeric options of train, finetune and synth -------------------------------------------------


def _numeric_options(command: click.Command) -> list[str]:
    """The options that take numbers (plain, ranged or listed)."""
    kinds = (click.types.IntParamType, click.types.FloatParamType)
    return [
        p.opts[0]
        for p in command.params
        if isinstance(p, click.Option)
        and (isinstance(p.type, kinds) or (isinstance(p.type, _Listed) and p.type.numbers))
    ]


@pytest.mark.parametrize("command", [train_command, finetune, synth], ids=lambda c: c.name)
def test_every_numeric_option_has_a_range(command: click.Command) -> None:
    options = _numeric_options(command)
    assert len(options) >= (12 if command is synth else 25)
    for param in command.params:
        if param.opts[0] in options and not isinstance(param.type, _Listed):
            assert isinstance(param.type, click.IntRange | FiniteFloatRange), param.opts[0]


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf"])
@pytest.mark.parametrize("name", ["train", "finetune", "synth"])
def test_bad_numbers_are_usage_errors_before_any_work(tmp_path: Path, name: str, value: str) -> None:
    photos = _photos(tmp_path / "photos", 1)
    command = {"train": train_command, "finetune": finetune, "synth": synth}[name]
    for option in _numeric_options(command):
        given = f"{value},{value}" if option in ("--frames-count", "--betas") else value
        args = [name, str(photos)] if name == "synth" else [name, "--data", str(photos)]
        result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "out"), option, given])
        assert result.exit_code == 2, (option, value, result.output)
        assert f"Invalid value for '{option}'" in result.stderr, (option, value)
    assert not (tmp_path / "out").exists()


# --- 5. a file where a folder is expected ------------------------------------------------------------


def test_synth_of_a_photo_is_one_clear_usage_error(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    result = CliRunner().invoke(cli, ["synth", str(photo), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Invalid value for 'SHARP_DIR': Directory '{photo}' is a file." in result.stderr
    assert "codec" not in result.stderr and not (tmp_path / "out").exists()
    below = CliRunner().invoke(cli, ["synth", str(tmp_path), "-o", str(photo / "out")])
    assert one_error(below, 2).startswith(f"error: cannot write into the output folder {photo / 'out'}")


# --- 6. --compile on CPU -----------------------------------------------------------------------------


def test_compile_is_ignored_on_cpu_with_a_note(tmp_path: Path, model: Restorer, model_dir: Path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.compile called on CPU")

    monkeypatch.setattr(torch, "compile", refuse)
    deblurrer = Deblurrer(model, compile=True, tile=0)
    assert deblurrer.notes == [
        "--compile is ignored on CPU: it would recompile the network for every new image size"
    ]
    assert deblurrer(np.zeros((16, 16, 3), np.float32)).pixels.shape == (16, 16, 3)
    photos = _photos(tmp_path / "photos", 1)
    result = _deblur(model_dir, str(photos), "-o", str(tmp_path / "out"), "--compile", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "note: --compile is ignored on CPU: " in result.stderr
