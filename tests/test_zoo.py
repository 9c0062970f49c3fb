"""The zoo's model cards: every card parses, names a real architecture, and says its licence."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deblurkit.archs import all_architectures
from deblurkit.cli import cli
from deblurkit.errors import ModelNotFoundError
from deblurkit.zoo.cards import all_entries, get_entry
from deblurkit.zoo.models import build_network

REQUIRED_DEBLUR = {
    "nafnet-gopro-width32",
    "nafnet-gopro-width64",
    "restormer-motion",
    "restormer-defocus",
    "uformer-b-gopro",
    "nafnet-mae",
}
REQUIRED_ENCODERS = {"mae-vit-base", "mae-vit-large", "mae-vit-huge", "dino-vit-base", "vgg19"}


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
