"""The training loop with tiny networks and a tiny ViT: loss goes down, exact resumption, config
round trip, clear failures, and a model folder that ``load_model`` accepts."""

import dataclasses
import itertools
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from deblurkit.errors import DeblurkitError, WeightsError
from deblurkit.imaging.discovery import DataError
from deblurkit.synthesis.pairs import write_sample_photos
from deblurkit.training import (
    ConfigError,
    NonFiniteLossError,
    TrainConfig,
    default_loss,
    from_toml,
    push_to_hub,
    to_toml,
    train,
)
from deblurkit.training.schedule import lr_at
from deblurkit.zoo.models import build_network, load_model, save_model
from deblurkit.zoo.restorer import Restorer

TINY_NAFNET = {
    "img_channel": 3,
    "width": 8,
    "middle_blk_num": 1,
    "enc_blk_nums": [1, 1],
    "dec_blk_nums": [1, 1],
}
TINY_VIT = {"img_size": 64, "patch_size": 16, "embed_dim": 48, "depth": 6, "num_heads": 3, "num_classes": 0}
ENCODER_CARD = """name = "tiny-mae"
kind = "encoder"
summary = "a tiny ViT for tests"
architecture = "timm"
license = "CC-BY-NC-4.0"

[config]
timm_model = "vit_base_patch16_224"
img_size = 64
patch_size = 16
embed_dim = 48
depth = 6
num_heads = 3
num_classes = 0
"""


def small_photos(folder, names=("astronaut", "camera", "coffee", "chelsea"), side=72):
    """scikit-image photographs, centre-cropped small so that tests are fast."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in write_sample_photos(folder, names):
        image = Image.open(path)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image.crop((left, top, left + side, top + side)).save(path)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A zoo card ``tiny-mae`` (via $DEBLURKIT_ZOO_PATH) and a safetensors file of its weights."""
    folder = tmp_path_factory.mktemp("encoder")
    (folder / "tiny-mae.toml").write_text(ENCODER_CARD)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, **TINY_VIT)
    weights = folder / "tiny-mae.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(weights))
    return folder, weights


@pytest.fixture
def encoder_env(tiny_encoder, monkeypatch):
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(tiny_encoder[0]))
    return tiny_encoder[1]


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    return small_photos(tmp_path_factory.mktemp("photos"))


def tiny_config(photos, output, **overrides) -> TrainConfig:
    base = {
        "architecture": "nafnet",
        "arch_config": dict(TINY_NAFNET),
        "data": str(photos),
        "synthesize": True,
        "crop": 32,
        "batch_size": 2,
        "workers": 0,
        "steps": 6,
        "lr": 1e-3,
        "loss": "l1",
        "log_every": 1,
        "val_every": 0,
        "save_every": 3,
        "tile": 64,
        "output": str(output),
        "synth_motion_length": [3.0, 9.0],
        "synth_defocus_radius": [1.0, 2.0],
        "synth_gaussian_sigma": [0.5, 1.5],
    }
    return TrainConfig(**{**base, **overrides})


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_a_few_steps_reduce_the_loss_with_the_mae_term(photos, tmp_path, encoder_env):
    config = tiny_config(
        photos,
        tmp_path / "out",
        steps=16,
        batch_size=3,
        lr=2e-3,
        loss="l1 + 0.1*mae_local",
        encoder="tiny-mae",
        encoder_weights=str(encoder_env),
        val_split=1,
        val_every=8,
    )
    events = []
    result = train(config, events=events.append)
    records = [
        json.loads(line) for line in (tmp_path / "out" / "train" / "log.jsonl").read_text().splitlines()
    ]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 16 and {"l1", "mae_local", "lr", "samples_per_s"} <= set(records[0])
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    vals = [r for r in records if r["kind"] == "val"]
    assert [v["step"] for v in vals] == [8, 16] and {"psnr", "ssim", "mae_distance", "input_psnr"} <= set(
        vals[0]
    )
    assert {e.kind for e in events} >= {"start", "log", "val", "checkpoint", "done"}
    assert result.step == 16 and result.best["step"] in (8, 16)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "tiny-mae" in card and "l1 + 0.1*mae_local" in card
    assert (tmp_path / "out" / "train" / "curves.png").is_file()
    assert (tmp_path / "out" / "train" / "best" / "model.safetensors").is_file()


def test_output_is_a_model_folder_that_load_model_accepts(photos, tmp_path):
    train(tiny_config(photos, tmp_path / "out", steps=2, name="my-nafnet"))
    model = load_model(tmp_path / "out")
    assert model.name == "my-nafnet" and model.architecture.name == "nafnet"
    info = json.loads((tmp_path / "out" / "config.json").read_text())
    assert info["training"]["steps"] == 2 and info["config"] == TINY_NAFNET
    assert model(torch.rand(1, 3, 30, 34)).shape == (1, 3, 30, 34)


def _stop_at(step):
    class StopError(Exception):
        pass

    def handler(event):
        if event.kind == "checkpoint" and event.step == step:
            raise StopError

    return StopError, handler


def test_stopped_and_resumed_equals_uninterrupted_bit_for_bit(photos, tmp_path, encoder_env):
    options = {
        "steps": 7,
        "save_every": 3,
        "accumulate": 2,
        "ema": 0.9,
        "grad_clip": 0.5,
        "warmup": 2,
        "loss": "l1 + 0.1*mae_local",
        "encoder": "tiny-mae",
        "encoder_weights": str(encoder_env),
    }
    train(tiny_config(photos, tmp_path / "straight", **options))
    interrupted = tiny_config(photos, tmp_path / "resumed", **options)
    stop, handler = _stop_at(3)
    with pytest.raises(stop):
        train(interrupted, events=handler)
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    result = train(interrupted)
    assert result.resumed_from == 3 and result.step == 7
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpt = tmp_path / "resumed" / "train" / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest.json", "step-00000007"]
    log = (tmp_path / "resumed" / "train" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == list(range(1, 8))


def test_resuming_with_other_settings_needs_resume(photos, tmp_path):
    config = tiny_config(photos, tmp_path / "out", steps=4, save_every=2)
    stop, handler = _stop_at(2)
    with pytest.raises(stop):
        train(config, events=handler)
    changed = dataclasses.replace(config, lr=5e-4)
    with pytest.raises(
        ConfigError, match=r"already holds a run \(step 2\) with other settings \(lr\).*--resume"
    ):
        train(changed)
    assert train(changed, resume=True).resumed_from == 2
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        train(tiny_config(photos, tmp_path / "fresh"), resume=True)


def test_finetune_starts_from_the_weights_and_defaults_to_pixel_plus_mae(photos, tmp_path, encoder_env):
    torch.manual_seed(1)
    network = build_network("nafnet", TINY_NAFNET)
    base = save_model(
        Restorer(network, __import__("deblurkit").archs.get_architecture("nafnet"), TINY_NAFNET),
        tmp_path / "base",
    )
    config = tiny_config(
        photos,
        tmp_path / "tuned",
        architecture="",
        arch_config={},
        model=str(base),
        pretrained=True,
        loss="",
        lr=0.0,
        min_lr=0.0,
        steps=2,
        encoder="tiny-mae",
        encoder_weights=str(encoder_env),
    )
    events = []
    train(config, command="finetune", events=events.append)
    start = next(e for e in events if e.kind == "start")
    assert start.data["loss"] == "psnr + 0.1*mae_local" == default_loss("nafnet")
    tuned = weights(tmp_path / "tuned")
    assert all(torch.equal(tuned[k], v) for k, v in network.state_dict().items())  # lr 0: unchanged
    assert "fine-tuned from" in (tmp_path / "tuned" / "README.md").read_text()


def test_default_loss_table():
    assert default_loss("restormer") == "l1 + 0.1*mae_local"
    assert default_loss("uformer", mae=False) == "charbonnier"
    assert default_loss("nafnet-local") == "psnr + 0.1*mae_local"


def test_nan_loss_stops_naming_the_step_or_is_skipped(photos, tmp_path):
    config = tiny_config(photos, tmp_path / "out", lr=1e30, steps=4, min_lr=1e30)
    with pytest.raises(NonFiniteLossError, match=r"the loss is (nan|inf) at step \d.*--on-nonfinite skip"):
        train(config)
    skipped = []
    train(
        dataclasses.replace(config, output=str(tmp_path / "skip"), on_nonfinite="skip"), events=skipped.append
    )
    assert any(e.kind == "note" and "skipped" in e.data["message"] for e in skipped)


def test_mae_encoder_offline_is_one_clear_line(photos, tmp_path):
    config = tiny_config(photos, tmp_path / "out", loss="l1 + 0.1*mae_local")
    with pytest.raises(WeightsError) as err:
        train(config)
    message = str(err.value)
    assert "\n" not in message and "deblurkit zoo download mae-vit-base" in message
    assert "--encoder-weights" in message and "pixel-only --loss" in message


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"crop": 30}, ConfigError, "must be a multiple of 4"),
        ({"data": ""}, ConfigError, "needs training data"),
        ({"architecture": "", "arch_config": {}}, ConfigError, "needs --model"),
        ({"architecture": "resnet"}, ConfigError, "unknown architecture 'resnet'"),
        ({"push_to_hub": "noslash"}, ConfigError, "org/name"),
        ({"precision": "fp16"}, ConfigError, "fp16 training needs CUDA"),
        ({"batch_size": 64}, DataError, "fewer than one batch of 64"),
        ({"crop": 128}, DataError, "4 images smaller than the 128px crop"),
    ],
)
def test_bad_runs_fail_before_training(photos, tmp_path, overrides, error, message):
    with pytest.raises(error, match=message):
        train(tiny_config(photos, tmp_path / "out", **overrides))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_crop_must_suit_the_encoder_patch(photos, tmp_path, encoder_env):
    config = tiny_config(
        photos,
        tmp_path / "out",
        crop=36,
        loss="l1 + mae_local",
        encoder="tiny-mae",
        encoder_weights=str(encoder_env),
    )
    with pytest.raises(ConfigError, match="multiple of the encoder's patch size 16"):
        train(config)


def test_bad_pairs_are_reported_before_training_with_a_full_list(tmp_path):
    root = tmp_path / "pairs"
    small_photos(root / "blur", ("camera", "coffee"))
    small_photos(root / "sharp", ("camera",))
    (root / "sharp" / "extra.png").write_bytes(b"junk")
    config = tiny_config(root, tmp_path / "out", synthesize=False)
    with pytest.raises(DataError) as err:
        train(config)
    message = str(err.value)
    assert "2 problems" in message and "inputs without a target (blur/coffee)" in message
    assert "targets without an input (sharp/extra)" in message and "--skip-bad-pairs" in message
    assert "blur/coffee" in (tmp_path / "out" / "train" / "data-problems.txt").read_text()
    with pytest.raises(DataError, match="fewer than one batch"):  # one good pair left, batch of 2
        train(dataclasses.replace(config, skip_bad_pairs=True))


def test_config_toml_round_trip_and_unknown_keys(tmp_path):
    config = tiny_config(
        tmp_path,
        tmp_path / "o",
        arch_config={"width": 8, "enc_blk_nums": [1, 2]},
        betas=[0.9, 0.95],
        name='quote "me"',
        synth_kernels=["motion"],
    )
    text = to_toml(config, "a header")
    assert '[synth]\nkernels = ["motion"]' in text and "[optim]" in text
    assert from_toml(text) == config
    assert from_toml("[optim]\nlr = 3\n").lr == 3.0
    assert from_toml("lr = 0.5\n[synth]\nnoise = 0.0\n").synth_noise == 0.0
    with pytest.raises(ConfigError, match=r"unknown option 'optim.lrr' \(did you mean 'optim.lr'\?\)"):
        from_toml("[optim]\nlrr = 1\n", where="x.toml")
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        from_toml("colour = 1\n")
    with pytest.raises(ConfigError, match="option steps must be a whole number"):
        from_toml("[optim]\nsteps = 1.5\n")
    with pytest.raises(ConfigError, match="option precision must be one of auto, fp32, bf16, fp16"):
        from_toml("[optim]\nprecision = 'fp8'\n")


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = [lr_at(s, lr=1.0, min_lr=0.1, steps=10, warmup=2) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0] and all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert lr_at(10, lr=1.0, min_lr=0.1, steps=10, warmup=2) == pytest.approx(0.1)


def test_push_to_hub_offline_is_one_line(tmp_path, photos):
    train(tiny_config(photos, tmp_path / "out", steps=1))
    with pytest.raises(DeblurkitError) as err:
        push_to_hub(tmp_path / "out", "someone/tiny")
    assert "could not push" in str(err.value) and "\n" not in str(err.value)
    assert load_model(tmp_path / "out")  # what would be uploaded loads
