"""The zoo's model cards: every card parses, names a real architecture, and says its licence."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deblurkit.archs import all_architectures
from deblurkit.cli import cli
from deblurkit.errors import DeblurkitError, ModelNotFoundError
from deblurkit.zoo.cards import _parse_card, all_entries, get_entry
from deblurkit.zoo.models import build_network

REQUIRED_DEBLUR = {
    "nafnet-gopro-width32",
    "nafnet-gopro-width64",
    "restormer-motion",
    "restormer-defocus",
    "uformer-b-gopro",
    "nafnet-mae",
}
REQUIRED_ENCODERS = {
    "mae-vit-base",
    "mae-vit-large",
    "mae-vit-huge",
    "dino-vit-base",
    "dinov2-vit-base",
    "vgg19",
}
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

# (repo, commit, sha256 or "") of every Hub-backed card, as established from the Hub's pages (#13).
PINS = {
    "nafnet-gopro-width32": (
        "nyanko7/nafnet-models",
        "08e8c701eb662688cccda3bf3074e90e902bcd3b",
        "19394e6155d12ef6371d1d57496f87f0ec88f92bdffa27c0792690722d5d1a5c",
    ),
    "nafnet-gopro-width64": (
        "nyanko7/nafnet-models",
        "08e8c701eb662688cccda3bf3074e90e902bcd3b",
        "329d3ab4077b8d6b7ff61de376e483714667960bf85be027bf4335cda701196f",
    ),
    "restormer-motion": ("deepinv/Restormer", "aa2667c79d766b67da2c1489c7ce5f0423bae798", ""),
    "restormer-defocus": ("deepinv/Restormer", "aa2667c79d766b67da2c1489c7ce5f0423bae798", ""),
    "mae-vit-base": ("timm/vit_base_patch16_224.mae", "9085cfddecbe125d73b95d25b7d4eb4832f216fa", ""),
    "mae-vit-large": (
        "timm/vit_large_patch16_224.mae",
        "4b308043edaf05585fd5762ea4fb78cf75d9ac4c",
        "d58a1a547a07c3c41917c23069dcaadab6f469a8cf793a3cba5fe404c344ab68",
    ),
    "mae-vit-huge": (
        "timm/vit_huge_patch14_224.mae",
        "007fb32550ad33651c5dd46afd86251f452b0334",
        "4c1c77c532753bf1d5dc5ec1dd7052d819986a6532df5e1c81b821611948be98",
    ),
    "dino-vit-base": (
        "timm/vit_base_patch16_224.dino",
        "9578d3895b3c81965d4fb6de0ffb14491b6fc8f9",
        "93181583427d6de3e18ab0e6ee4df35736cfc51a3c1bf9ae0e9b53b1316598dc",
    ),
    "dinov2-vit-base": (
        "timm/vit_base_patch14_dinov2.lvd142m",
        "1926dc569694559b394898d7ba5d88a775301036",
        "55cbb5d887b336d430e649c277b85a1429e724871f9d02ac16203235886d8c7b",
    ),
    "vit-base-supervised": (
        "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "3feba41e737e1b28af8e1fd7dca8eed073385972",
        "",
    ),
    "vgg19": (
        "timm/vgg19.tv_in1k",
        "128d4708565b3a414bcbb9bbad440b2fe37b9f18",
        "11aea017b543ff59233749d8f1cf544cda749378f5790d2fedab841fb86b7669",
    ),
}


def test_required_entries_exist():
    names = set(all_entries())
    assert names >= REQUIRED_DEBLUR | REQUIRED_ENCODERS


@pytest.mark.parametrize("name", sorted(all_entries()))
def test_every_card_is_complete(name):
    entry = get_entry(name)
    assert entry.summary and entry.license and entry.paper
    if entry.kind == "deblur":
        assert entry.architecture in all_architectures()
        if entry.weights is None:
            assert entry.base_model in all_entries() and entry.unpublished_hint
        elif entry.weights.bundled:
            assert Path(entry.weights.local_path).is_file()
            assert entry.weights.sha256
        elif entry.weights.on_hub:
            assert entry.weights.revision and entry.weights.filename
        elif entry.weights.npm_package:
            assert entry.weights.sha256 and entry.weights.content_sha256 and entry.weights.format == "tfjs"
        else:
            assert entry.weights.download_page


@pytest.mark.parametrize("name", sorted(n for n, e in all_entries().items() if e.kind == "deblur"))
def test_deblur_cards_build_on_meta_device(name):
    import torch

    entry = get_entry(name)
    with torch.device("meta"):
        network = build_network(entry.architecture, entry.config)
    assert sum(p.numel() for p in network.parameters()) > 1_000_000


def test_pinned_checksums_from_the_issue():
    assert get_entry("nafnet-gopro-width32").weights.sha256 == (
        "19394e6155d12ef6371d1d57496f87f0ec88f92bdffa27c0792690722d5d1a5c"
    )
    assert get_entry("nafnet-gopro-width64").weights.sha256 == (
        "329d3ab4077b8d6b7ff61de376e483714667960bf85be027bf4335cda701196f"
    )


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ModelNotFoundError, match="did you mean nafnet-gopro-width32"):
        get_entry("nafnet-gopro-width23")


def test_cli_list_table_and_json():
    runner = CliRunner()
    table = runner.invoke(cli, ["zoo", "list"])
    assert table.exit_code == 0
    assert "nafnet-gopro-width32" in table.output and "CC-BY-NC-4.0" in table.output
    data = json.loads(runner.invoke(cli, ["zoo", "list", "--json", "--kind", "encoder"]).output)
    assert {item["name"] for item in data} >= REQUIRED_ENCODERS
    assert all(item["kind"] == "encoder" for item in data)


def test_cli_info_shows_licence_and_unpublished_hint():
    result = CliRunner().invoke(cli, ["zoo", "info", "nafnet-mae"])
    assert result.exit_code == 0
    assert "not published yet" in result.output and "deblurkit finetune" in result.output
    restormer = CliRunner().invoke(cli, ["zoo", "info", "restormer-motion"]).output
    assert "non-commercial" in restormer


def test_cli_info_unknown_is_one_line():
    result = CliRunner().invoke(cli, ["zoo", "info", "nope"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and result.output.startswith("error: no model called")


# -- pinned revisions (#13) ---------------------------------------------------------------------------
def _is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


HUB_CARDS = sorted(n for n, e in all_entries().items() if e.weights and e.weights.on_hub)


@pytest.mark.parametrize("name", HUB_CARDS)
def test_hub_cards_pin_a_commit_or_say_why(name):
    weights = get_entry(name).weights
    assert _is_commit(weights.revision) or weights.revision_note.strip()
    assert weights.revision_pinned == _is_commit(weights.revision)


def test_every_hub_card_is_accounted_for():
    assert set(HUB_CARDS) == set(PINS)


@pytest.mark.parametrize("name", sorted(PINS))
def test_pinned_commits_and_checksums(name):
    repo, commit, sha256 = PINS[name]
    weights = get_entry(name).weights
    assert (weights.repo_id, weights.revision, weights.sha256) == (repo, commit, sha256)
    assert weights.revision_pinned
    if not sha256:  # unpinned content: the card says why
        assert "sha256" in weights.revision_note


def test_nafnet_sizes_from_the_lfs_pointers():
    assert get_entry("nafnet-gopro-width32").weights.size_bytes == 68_671_121
    assert get_entry("nafnet-gopro-width64").weights.size_bytes == 271_778_961


@pytest.mark.parametrize("name", ["restormer-motion", "restormer-defocus"])
def test_restormer_cards_say_the_hub_file_is_unconfirmed(name):
    entry = get_entry(name)
    assert entry.weights.filename in entry.weights.revision_note
    assert "NOT confirmed" in entry.weights.revision_note
    assert "unconfirmed" in entry.description
    assert entry.weights.download_page


CARD = """name = "{name}"
kind = "encoder"
summary = "test"
architecture = "timm"
license = "MIT"
paper = "test"

[config]
timm_model = "vit_base_patch16_224"
{config}
[weights]
repo_id = "test/encoder"
filename = "model.safetensors"
{weights}"""


def _card(tmp_path, weights="", config="", name="test-card"):
    path = tmp_path / f"{name}.toml"
    path.write_text(CARD.format(name=name, weights=weights, config=config))
    return path


@pytest.mark.parametrize(
    "weights",
    [
        "",  # the default, main
        'revision = "main"\n',
        'revision = "4b30804"\n',  # a short hash can be ambiguous and is not accepted
        'revision = "4B308043EDAF05585FD5762EA4FB78CF75D9AC4C"\n',
        'revision = "main"\nrevision_note = "   "\n',
    ],
)
def test_builtin_cards_refuse_a_moving_revision_without_a_note(tmp_path, weights):
    with pytest.raises(DeblurkitError, match="not a 40-hex commit id"):
        _parse_card(_card(tmp_path, weights), builtin=True)


@pytest.mark.parametrize(
    "weights",
    [
        'revision = "4b308043edaf05585fd5762ea4fb78cf75d9ac4c"\n',
        'revision = "main"\nrevision_note = "the repository publishes no commits we could read"\n',
    ],
)
def test_builtin_cards_accept_a_commit_or_a_note(tmp_path, weights):
    assert _parse_card(_card(tmp_path, weights), builtin=True).weights.on_hub


def test_your_own_cards_may_follow_a_branch(tmp_path, monkeypatch):
    _card(tmp_path, name="my-encoder")
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(tmp_path))
    weights = get_entry("my-encoder").weights
    assert weights.revision == "main" and not weights.revision_pinned


# -- encoders -----------------------------------------------------------------------------------------
EXPECTED_NORMALISATION = {
    "mae-vit-base": IMAGENET,
    "mae-vit-large": IMAGENET,
    "mae-vit-huge": IMAGENET,
    "dino-vit-base": IMAGENET,
    "dinov2-vit-base": IMAGENET,
    "vgg19": IMAGENET,
    "vit-base-supervised": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
}


def test_every_encoder_card_states_its_normalisation():
    encoders = {name for name, entry in all_entries().items() if entry.kind == "encoder"}
    assert encoders == set(EXPECTED_NORMALISATION)


@pytest.mark.parametrize("name", sorted(EXPECTED_NORMALISATION))
def test_encoder_normalisation_matches_the_pretrained_weights(name):
    from timm.models import get_pretrained_cfg

    config = get_entry(name).config
    assert (config["mean"], config["std"]) == EXPECTED_NORMALISATION[name]
    # ... and timm's own pretrained_cfg of the very weights the card downloads
    cfg = get_pretrained_cfg(get_entry(name).weights.repo_id.removeprefix("timm/"))
    assert tuple(config["mean"]) == pytest.approx(cfg.mean)
    assert tuple(config["std"]) == pytest.approx(cfg.std)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("mean = [0.5, 0.5, 0.5]\n", "must both be given"),
        ("mean = [0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n", "equal-length lists of numbers"),
        ('mean = ["a", 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n', "equal-length lists of numbers"),
        ("mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.0, 0.5]\n", "std must be positive"),
    ],
)
def test_bad_encoder_normalisation_is_refused(tmp_path, config, message):
    path = _card(tmp_path, 'revision = "4b308043edaf05585fd5762ea4fb78cf75d9ac4c"\n', config)
    with pytest.raises(DeblurkitError, match=message):
        _parse_card(path, builtin=True)


def test_dinov2_card():
    from deblurkit.losses.encoders import _build_timm

    entry = get_entry("dinov2-vit-base")
    assert (entry.kind, entry.architecture, entry.license) == ("encoder", "timm", "Apache-2.0")
    assert entry.config["timm_model"] == "vit_base_patch14_dinov2"
    assert (entry.weights.filename, entry.weights.format) == ("model.safetensors", "safetensors")
    vit = _build_timm(entry.name, entry.config)
    # ViT-B/14 whose position embedding is the checkpoint's: 518 / 14 = 37 patches a side, plus CLS
    assert tuple(vit.patch_embed.proj.kernel_size) == (14, 14)
    assert tuple(vit.patch_embed.grid_size) == (37, 37)
    assert tuple(vit.pos_embed.shape) == (1, 1 + 37 * 37, 768)
    assert len(vit.blocks) == 12
