"""``load_model`` through every kind of reference, offline, with tiny networks."""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hubcache import add_to_hub_cache

import deblurkit
from deblurkit.cli import cli
from deblurkit.errors import ModelNotFoundError, WeightsError
from deblurkit.zoo import cards as zoo
from deblurkit.zoo.models import build_network, convert_checkpoint, load_model, save_model
from deblurkit.zoo.restorer import Restorer

TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


def _tiny_network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    network = build_network("nafnet", TINY)
    with torch.no_grad():  # NAFNet zero-initialises beta/gamma; make the network do something.
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return network.eval()


def _pth_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_card(folder: Path, name: str, weights_toml: str) -> None:
    """A zoo card for the TINY NAFNet called ``name``, with the given ``[weights]`` table."""
    config = "\n".join(f"{key} = {json.dumps(value)}" for key, value in TINY.items())
    (folder / f"{name}.toml").write_text(
        f'''name = "{name}"
kind = "deblur"
summary = "test"
architecture = "nafnet"
license = "MIT"
paper = "test"

[config]
{config}

[weights]
{weights_toml}'''
    )


@pytest.fixture
def tiny_card(tmp_path, monkeypatch):
    """A zoo card of our own (``$DEBLURKIT_ZOO_PATH``) whose pinned .pth sits in the Hub cache."""
    network = _tiny_network()
    data = _pth_bytes({"params": network.state_dict()})
    add_to_hub_cache("test/tiny-nafnet", {"tiny.pth": data})
    cards = tmp_path / "cards"
    cards.mkdir()
    _write_card(
        cards,
        "tiny-nafnet",
        f"""repo_id = "test/tiny-nafnet"
filename = "tiny.pth"
sha256 = "{hashlib.sha256(data).hexdigest()}"
format = "pth"
key = "params"
""",
    )
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(cards))
    return network


def _expected(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    restorer = Restorer(network, deblurkit.archs.get_architecture("nafnet"), TINY)
    with torch.no_grad():
        return restorer(x)


def test_zoo_name_loads_from_the_hub_cache(tiny_card):
    model = load_model("tiny-nafnet")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 19, 23)
    assert torch.allclose(model(x), _expected(tiny_card, x), atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (17, 2), (33, 47)])
def test_any_size_in_same_size_out(tiny_card, size):
    model = load_model("tiny-nafnet")
    assert model(torch.rand(1, 3, *size)).shape == (1, 3, *size)


def test_model_folder_round_trip(tmp_path, tiny_card):
    model = load_model("tiny-nafnet")
    folder = save_model(model, tmp_path / "my-model", card="# my model\n", info={"base_model": "tiny-nafnet"})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["base_model"] == "tiny-nafnet"
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # a file written the ordinary way: the permissions the umask gives
    for written in folder.iterdir():
        assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    again = load_model(folder)
    single = load_model(folder / "model.safetensors")
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(again(x), model(x)) and torch.equal(single(x), model(x))


def test_hf_reference_loads_a_published_model_folder(tmp_path, tiny_card):
    folder = save_model(load_model("tiny-nafnet"), tmp_path / "pub")
    commit = add_to_hub_cache(
        "someone/tiny-deblur", {"config.json": (folder / "config.json").read_bytes()}, lfs=False
    )
    add_to_hub_cache(
        "someone/tiny-deblur",
        {"model.safetensors": (folder / "model.safetensors").read_bytes()},
        commit=commit,
    )
    x = torch.rand(1, 3, 16, 16)
    for ref in ("hf:someone/tiny-deblur", f"hf:someone/tiny-deblur@{commit}"):
        assert torch.equal(load_model(ref)(x), _expected(tiny_card, x))


def test_hf_reference_resolves_one_commit_for_config_and_weights(tmp_path, monkeypatch):
    """refs/main moves between the two downloads (a push): both files still come from one commit."""
    from deblurkit.zoo import hub
    from deblurkit.zoo.models import resolve_model

    old_net, new_net = _tiny_network(seed=1), _tiny_network(seed=2)
    old = save_model(Restorer(old_net, deblurkit.archs.get_architecture("nafnet"), TINY), tmp_path / "old")
    new = save_model(Restorer(new_net, deblurkit.archs.get_architecture("nafnet"), TINY), tmp_path / "new")
    files = {name: (old / name).read_bytes() for name in ("config.json", "model.safetensors")}
    old_commit = add_to_hub_cache("someone/moving", files, commit="a" * 40)
    files = {name: (new / name).read_bytes() for name in ("config.json", "model.safetensors")}
    new_commit = add_to_hub_cache("someone/moving", files, commit="b" * 40)  # refs/main -> b...
    refs_main = Path(hub.constants.HF_HUB_CACHE) / "models--someone--moving" / "refs" / "main"
    assert refs_main.read_text() == new_commit

    real, revisions = hub.hf_hub_download, []

    def download_then_push(repo_id, filename, *, revision, **kwargs):
        revisions.append((filename, revision))
        path = real(repo_id, filename, revision=revision, **kwargs)
        refs_main.write_text(old_commit)  # the branch moves under us
        return path

    monkeypatch.setattr(hub, "hf_hub_download", download_then_push)
    spec = resolve_model("hf:someone/moving")
    assert revisions == [("config.json", "main"), ("model.safetensors", new_commit)]
    assert spec.weights_path is not None and spec.weights_path.parent.name == new_commit
    refs_main.write_text(new_commit)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(load_model("hf:someone/moving")(x), _expected(new_net, x))


def test_weights_override_accepts_an_official_pth_of_the_full_network(tmp_path):
    entry = zoo.get_entry("nafnet-gopro-width32")
    network = build_network(entry.architecture, entry.config)
    path = tmp_path / "NAFNet-GoPro-width32.pth"
    torch.save({"params": network.state_dict()}, path)
    model = load_model("nafnet-gopro-width32", weights=path)
    assert torch.equal(model.network.ending.weight, network.ending.weight)


def test_weights_that_do_not_fit_are_named(tmp_path, tiny_card):
    path = tmp_path / "wrong.pth"
    state = tiny_card.state_dict()
    state.pop("ending.bias")
    state["extra"] = torch.zeros(1)
    torch.save({"params": state}, path)
    with pytest.raises(WeightsError, match=r"1 missing \(e.g. ending.bias\), 1 unexpected \(e.g. extra\)"):
        load_model("tiny-nafnet", weights=path)


def test_unpublished_mae_entry_fails_with_one_line():
    with pytest.raises(
        WeightsError, match="nafnet-mae has no published weights yet.*deblurkit finetune"
    ) as err:
        load_model("nafnet-mae")
    assert "\n" not in str(err.value)


def test_real_entry_offline_and_not_cached_fails_clearly():
    with pytest.raises(WeightsError, match="nafnet-gopro-width32 is not in the local Hub cache"):
        load_model("nafnet-gopro-width32")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("hf:not-a-repo", "not a Hub reference"),
        ("mae-vit-base", "is a feature encoder"),
        ("no-such-model", "no model called"),
    ],
)
def test_bad_references(ref, message):
    with pytest.raises((ModelNotFoundError, WeightsError), match=message):
        load_model(ref)


def test_plain_safetensors_without_metadata_needs_a_zoo_name(tmp_path, tiny_card):
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file(tiny_card.state_dict(), path)
    with pytest.raises(ModelNotFoundError, match="--model <zoo name> --weights"):
        load_model(path)
    assert load_model("tiny-nafnet", weights=path)(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_cli_download_and_convert(tmp_path, tiny_card):
    runner = CliRunner()
    result = runner.invoke(cli, ["zoo", "download", "tiny-nafnet", "nafnet-mae"])
    assert result.exit_code == 1
    assert "tiny-nafnet: " in result.output and "nafnet-mae has no published weights" in result.output
    pth = tmp_path / "official.pth"
    torch.save({"params": tiny_card.state_dict()}, pth)
    out = tmp_path / "converted.safetensors"
    assert runner.invoke(cli, ["zoo", "convert", str(pth), str(out), "--model", "tiny-nafnet"]).exit_code == 0
    x = torch.rand(1, 3, 12, 12)
    assert torch.equal(load_model(out)(x), _expected(tiny_card, x))
    assert convert_checkpoint(pth, tmp_path / "again.safetensors", "tiny-nafnet").is_file()


def test_environment_is_honoured_by_a_fresh_process(tmp_path, tiny_card):
    """HF_HOME and HF_HUB_OFFLINE as a user sets them, in a new interpreter."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty-home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "deblurkit", "zoo", "download", "tiny-nafnet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    # The hint names what works: not `zoo download` again, the command that failed.
    assert result.stderr.strip() == (
        "error: tiny-nafnet is not in the local Hub cache and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE "
        "and rerun this where the Hub can be reached, or pass a copy of the weights file to deblur, eval or "
        "train with --weights FILE"
    )
    assert "Traceback" not in result.stderr
    assert Path(env["HF_HOME"]).exists() is False or not any(Path(env["HF_HOME"]).rglob("*.safetensors"))


def _bundled_card(folder: Path, sha256: str) -> None:
    _write_card(
        folder,
        "bundled-nafnet",
        f"""filename = "bundled-nafnet.safetensors"
bundled = true
sha256 = "{sha256}"
""",
    )


def test_bundled_weights_load_without_the_hub_and_are_verified(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    network = _tiny_network(seed=3)
    weights = tmp_path / "bundled-nafnet.safetensors"
    save_file(network.state_dict(), weights)
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(tmp_path))
    _bundled_card(tmp_path, hashlib.sha256(weights.read_bytes()).hexdigest())
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(load_model("bundled-nafnet")(x), _expected(network, x))
    assert zoo.get_entry("bundled-nafnet").weights_status == "bundled, sha256 pinned"
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / weights.name).write_bytes(weights.read_bytes())
    _bundled_card(tampered, "0" * 64)
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(tampered))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_model("bundled-nafnet")
