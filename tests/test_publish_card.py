"""Hub-native model cards: an offline round trip through a local folder (``ModelCard.load`` parses the
card; its metadata carries the model-index, base model, licence and library) and cards that state only
the run's facts (the method and encoder only with MAE terms, the licence logic, working usage lines)."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors import safe_open
from tinymodels import TINY_NAFNET

import deblurkit
from deblurkit.synthesis.pairs import write_sample_photos
from deblurkit.training import TrainConfig, train
from deblurkit.training.card import CardInfo, Licence, card_licence, effective_licence, model_card
from deblurkit.training.preparation import Source
from deblurkit.training.publish import card_info, hub_model_id, write_model_folder
from deblurkit.zoo.cards import get_entry
from deblurkit.zoo.models import build_network

METRICS = {"psnr": 27.123456, "ssim": 0.876543, "mae_distance": 0.25}
INPUTS = {"psnr": 25.5, "ssim": 0.8, "mae_distance": 0.5}
MAE_CARD = """name = "tiny-mae-encoder"
kind = "encoder"
summary = "a tiny ViT for tests"
architecture = "timm"
license = "CC-BY-NC-4.0"
code_url = "https://github.com/facebookresearch/mae"

[config]
timm_model = "vit_base_patch16_224"
img_size = 64
patch_size = 16
embed_dim = 48
depth = 6
num_heads = 3
num_classes = 0
"""


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """An encoder card ``tiny-mae-encoder`` (CC-BY-NC-4.0) in $DEBLURKIT_ZOO_PATH."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "tiny-mae-encoder.toml").write_text(MAE_CARD)
    monkeypatch.setenv("DEBLURKIT_ZOO_PATH", str(folder))
    return folder


def finetune_info(tmp_path, *, loss="l1 + 0.1*mae_local", base="hf:someone/nafnet-base@main", licence="MIT"):
    config = TrainConfig(
        model=base,
        pretrained=True,
        data=str(tmp_path / "pairs"),
        val_split=4,
        encoder="tiny-mae-encoder",
        push_to_hub="me/nafnet-sharp",
        name="nafnet-sharp",
        output=str(tmp_path / "out"),
    )
    source = Source("nafnet", dict(TINY_NAFNET), base=base, base_licence=licence)
    return card_info(
        config,
        source,
        command="finetune",
        precision="fp32",
        loss=loss,
        steps=5,
        with_encoder="mae" in loss,
        metrics={k: v for k, v in METRICS.items() if "mae" in loss or k != "mae_distance"},
        input_metrics={k: v for k, v in INPUTS.items() if "mae" in loss or k != "mae_distance"},
        best={"psnr": METRICS["psnr"], "ssim": METRICS["ssim"], "step": 5},
    )


def test_model_folder_round_trip_offline(tmp_path, zoo):
    info = finetune_info(tmp_path)
    network = build_network("nafnet", TINY_NAFNET)
    folder = write_model_folder(tmp_path / "out", network, info)

    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "deblurkit"
    assert data["license"] == "cc-by-nc-4.0"  # the encoder's licence is more restrictive than MIT
    assert data["base_model"] == "someone/nafnet-base" and data["base_model_relation"] == "finetune"
    assert {"image-restoration", "deblurring", "nafnet"} <= set(data["tags"])
    [result] = data["model-index"][0]["results"]
    assert data["model-index"][0]["name"] == "nafnet-sharp"
    assert result["task"]["type"] == "image-to-image" and result["dataset"]["split"] == "validation"
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"psnr": round(METRICS["psnr"], 4), "ssim": round(METRICS["ssim"], 4)}

    text = card.text
    assert "fine-tuned from `hf:someone/nafnet-base@main`" in text
    assert "deblurkit deblur photos/ --model hf:me/nafnet-sharp" in text
    assert "deblurkit deblur photos/ --model PATH" in text
    assert "## Method" in text and "tiny-mae-encoder" in text
    assert "most restrictive of these: CC-BY-NC-4.0" in text

    model = deblurkit.load_model(folder)
    assert model.architecture.name == "nafnet"
    loaded = model.network.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in network.state_dict().items())
    saved = json.loads((folder / "config.json").read_text())
    assert saved["license"] == "CC-BY-NC-4.0" and saved["training"]["encoder"] == "tiny-mae-encoder"
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        assert handle.metadata()["format"] == "pt" and "deblurkit_model" in handle.metadata()


def test_pixel_only_card_has_no_mae_method_or_encoder(tmp_path, zoo):
    info = finetune_info(tmp_path, loss="l1")
    assert info.encoder == "" and info.encoder_licence == ""
    text = model_card(info)
    assert "## Method" not in text and "MAE" not in text and "tiny-mae-encoder" not in text
    assert card_licence(info) == "mit"
    assert "The `license` tag, `mit`, is that licence, MIT (permissive)." in text


def test_scratch_card_names_deblurkits_licence_plainly():
    info = CardInfo(
        name="scratch",
        command="train",
        architecture="nafnet",
        arch_config=TINY_NAFNET,
        data="photos",
        synthesized=True,
        loss="l1",
        steps=3,
        recipe={},
        encoder="mae-vit-base",  # recorded by mistake: no MAE term, so not involved
        encoder_licence="CC-BY-NC-4.0",
    )
    text = model_card(info)
    assert card_licence(info) == "mit"
    assert "most restrictive" not in text and "deblurkit's own licence, MIT" in text
    assert "mae-vit-base" not in text and "No validation was run." in text
    assert "model-index" not in text and "base_model" not in text
    assert "--model hf:ORG/NAME" in text and "--model PATH" in text


def test_a_non_hub_licence_uses_other_with_its_name_and_link(tmp_path, zoo):
    info = finetune_info(tmp_path, loss="l1", licence="Academic Public License (non-commercial)")
    info.base_licence_link = "https://github.com/swz30/Restormer"
    data = ModelCard(model_card(info)).data.to_dict()
    assert data["license"] == "other"
    assert data["license_name"] == "academic-public-license-non-commercial"
    assert data["license_link"] == "https://github.com/swz30/Restormer"


@pytest.mark.parametrize(
    ("base", "encoder", "expected"),
    [
        ("MIT", "CC-BY-NC-4.0", "CC-BY-NC-4.0"),
        ("CC-BY-NC-4.0", "Apache-2.0", "CC-BY-NC-4.0"),
        ("MIT", "Apache-2.0", "Apache-2.0"),
        ("Apache-2.0", "MIT", "Apache-2.0"),
        (
            "Academic Public License (non-commercial)",
            "Apache-2.0",
            "Academic Public License (non-commercial)",
        ),
        ("", "Apache-2.0", ""),  # an unknown base licence outranks a known permissive one
        ("MIT", "MIT", "MIT"),
    ],
)
def test_effective_licence_is_the_most_restrictive(base, encoder, expected):
    info = CardInfo(
        name="m",
        command="finetune",
        architecture="nafnet",
        arch_config={},
        data="d",
        synthesized=False,
        loss="l1 + 0.1*mae_local",
        steps=1,
        recipe={},
        base_model="base",
        base_licence=base,
        encoder="enc",
        encoder_licence=encoder,
    )
    assert effective_licence(info).name == expected


def test_licence_hub_fields():
    assert Licence("CC-BY-NC-4.0", "x").hub_id == "cc-by-nc-4.0"
    assert Licence("Apache-2.0", "x").hub_id == "apache-2.0"
    assert Licence("", "x").hub_id == "unknown"
    assert Licence("Academic Public License (non-commercial)", "x").hub_id == "other"
    assert Licence("NCSA", "x").restrictiveness == 0  # not mistaken for "NC"


def test_hub_ids_of_base_models():
    assert hub_model_id("hf:org/name@v1") == "org/name"
    assert hub_model_id("nafnet-gopro-width32") == get_entry("nafnet-gopro-width32").weights.repo_id
    assert hub_model_id("some/local/folder") == ""


def test_a_trained_folder_reports_its_measured_validation(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in write_sample_photos(photos, ("astronaut", "camera", "coffee")):
        Image.open(path).crop((0, 0, 64, 64)).save(path)
    config = TrainConfig(
        architecture="nafnet",
        arch_config=dict(TINY_NAFNET),
        data=str(photos),
        synthesize=True,
        crop=32,
        batch_size=2,
        workers=0,
        steps=2,
        loss="l1",
        val_split=1,
        val_every=0,
        save_every=2,
        tile=64,
        output=str(tmp_path / "out"),
    )
    train(config)
    records = [
        json.loads(line) for line in (tmp_path / "out" / "train" / "log.jsonl").read_text().splitlines()
    ]
    measured = next(r for r in reversed(records) if r["kind"] == "val")
    data = ModelCard.load(tmp_path / "out" / "README.md").data.to_dict()
    values = {m["type"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]}
    assert values == {"psnr": round(measured["psnr"], 4), "ssim": round(measured["ssim"], 4)}
    assert data["license"] == "mit" and "base_model" not in data and data["library_name"] == "deblurkit"
    assert "## Method" not in ModelCard.load(tmp_path / "out" / "README.md").text
    assert deblurkit.load_model(tmp_path / "out").architecture.name == "nafnet"
