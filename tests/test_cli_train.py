"""``deblurkit train/finetune/synth`` from the command line: config files and flags, a real SIGKILL
and resume, and DistributedDataParallel on two CPU processes (gloo)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from test_training import TINY_NAFNET, small_photos

from deblurkit.cli.train import finetune, synth, train_command

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "recipes"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return small_photos(tmp_path_factory.mktemp("photos"))


def _flags(photos, output, *extra):
    return [
        "--architecture", "nafnet", "--arch-config", json.dumps(TINY_NAFNET), "--data", str(photos),
        "--synthesize", "--crop", "32", "--batch-size", "2", "--workers", "0", "--loss", "l1",
        "--val-every", "0", "--tile", "64", "--synth-motion-length", "3,9", "-o", str(output), *extra,
    ]  # fmt: skip


def test_synth_command_writes_a_reproducible_pair_folder(tmp_path, photos):
    runner = CliRunner()
    result = runner.invoke(
        synth,
        [str(photos), "-o", str(tmp_path / "a"), "--seed", "3", "--kernels", "motion", "--jpeg", "1", "-q"],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 pairs" in result.output
    runner.invoke(
        synth,
        [str(photos), "-o", str(tmp_path / "b"), "--seed", "3", "--kernels", "motion", "--jpeg", "1", "-q"],
    )
    for name in ("astronaut", "camera"):
        assert (tmp_path / "a" / "blur" / f"{name}.png").read_bytes() == (
            tmp_path / "b" / "blur" / f"{name}.png"
        ).read_bytes()
    records = [json.loads(line) for line in (tmp_path / "a" / "synth.jsonl").read_text().splitlines()]
    assert records[0]["seed"] == 3 and all(r["kind"] == "motion" for r in records[1:])
    bad = runner.invoke(synth, [str(photos), "-o", str(tmp_path / "c"), "--kernels", "shake"])
    assert bad.exit_code != 0 and "unknown blur kernel 'shake'" in str(bad.exception or bad.output)


def test_train_command_with_config_file_and_flag_overrides(tmp_path, photos):
    config = tmp_path / "recipe.toml"
    config.write_text("[optim]\nsteps = 3\nlr = 0.002\n[output]\nsave_every = 2\n")
    result = CliRunner().invoke(
        train_command, ["-c", str(config), *_flags(photos, tmp_path / "out", "--steps", "2", "-q")]
    )
    assert result.exit_code == 0, result.output
    saved = (tmp_path / "out" / "train" / "config.toml").read_text()
    assert "steps = 2\n" in saved and "lr = 0.002\n" in saved
    assert "model written to" in result.output


def test_a_run_with_validation_writes_its_report_page(tmp_path, photos):
    flags = _flags(photos, tmp_path / "out", "--steps", "2", "--val-split", "1", "-q")
    result = CliRunner().invoke(train_command, flags)
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "train" / "report.html").read_text()
    assert "report_files/001/input.jpg" in page and "Sharpness" in page
    assert (tmp_path / "out" / "train" / "report_files" / "001" / "sharp.jpg").is_file()


def test_errors_are_one_line_with_the_exit_code(tmp_path, photos):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", *_flags(photos, tmp_path / "o", "--crop", "30")]
    done = subprocess.run(
        [sys.executable, "-m", "deblurkit", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: --crop 30")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.toml")))
def test_recipes_parse(recipe):
    from deblurkit.training import load_config

    assert load_config(RECIPES / recipe).steps > 0


def test_finetune_needs_a_model(tmp_path, photos):
    result = CliRunner().invoke(finetune, ["--data", str(photos), "-o", str(tmp_path / "o")])
    assert result.exit_code != 0 and "finetune needs --model" in str(result.exception)


def _run_cli(args, env, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "deblurkit", *args], env=env, **kwargs)


def test_sigkill_after_a_checkpoint_then_rerun_continues_exactly(tmp_path, photos):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = ("--steps", "40", "--save-every", "2", "--ema", "0.9", "--workers", "1", "-q")
    args = _flags(photos, tmp_path / "killed", *run)
    latest = tmp_path / "killed" / "train" / "checkpoints" / "latest.json"
    process = _run_cli(["train", *args], env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not latest.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = json.loads(latest.read_text())["step"]
    assert 2 <= killed_at < 40 and not (tmp_path / "killed" / "model.safetensors").exists()
    resumed = _run_cli(["train", *args], env, stderr=subprocess.PIPE, text=True)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming at step {killed_at}" in err
    straight = _run_cli(
        [
            "train",
            *_flags(photos, tmp_path / "straight", *run),
        ],
        env,
        stderr=subprocess.PIPE,
    )
    straight.communicate(timeout=300)
    a = load_file(str(tmp_path / "killed" / "model.safetensors"))
    b = load_file(str(tmp_path / "straight" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path, photos):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--steps", "3", "--batch-size", "4", "--save-every", "2", "-q"]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "deblurkit", "train", *_flags(photos, tmp_path / "ddp", *common)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "2 process(es)" in ddp.stderr
    one = CliRunner().invoke(train_command, _flags(photos, tmp_path / "one", *common))
    assert one.exit_code == 0, one.output
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a)
