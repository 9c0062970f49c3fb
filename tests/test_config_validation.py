"""Issue #12: architecture configs are checked before any network is built (types, ranges, list
lengths, unknown settings, a parameter ceiling counted on the meta device); every refusal is one
:class:`UsageError` line naming the setting."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from tinymodels import TINY_MAXIM, TINY_NAFNET
from torch.nn.modules import module as module_hooks

from deblurkit.archs import ARCHITECTURES, all_architectures, get_architecture
from deblurkit.errors import UsageError
from deblurkit.training.config import from_toml
from deblurkit.zoo.cards import all_entries
from deblurkit.zoo.validation import MAX_PARAMETERS, count_parameters, validate_config

REPO = Path(__file__).resolve().parents[1]

# Configs other tests and the example recipes build: validation must keep accepting them.
TEST_CONFIGS = [
    ("nafnet", TINY_NAFNET),
    (
        "nafnet",
        {"img_channel": 3, "width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]},
    ),
    ("nafnet", {}),
    (
        "nafnet-local",
        {**TINY_NAFNET, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1], "train_size": 256},
    ),
    ("nafnet-local", {**TINY_NAFNET, "train_size": [1, 3, 256, 256]}),
    ("restormer", {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1}),
    (
        "uformer",
        {"img_size": 128, "embed_dim": 8, "depths": [1] * 9, "num_heads": [1, 2, 4, 8, 8, 8, 8, 4, 2]},
    ),
    (
        "maxim",
        {**TINY_MAXIM, "keep_stages": 1, "multiscale_outputs": False},
    ),
]


def _official_configs() -> list[tuple[str, str, dict]]:
    """(label, architecture, config) of every default config, deblurring card and example recipe."""
    configs = [
        (f"default:{name}", name, dict(arch.default_config)) for name, arch in all_architectures().items()
    ]
    configs += [
        (f"card:{entry.name}", entry.architecture, dict(entry.config))
        for entry in all_entries().values()
        if entry.kind == "deblur"
    ]
    for path in sorted((REPO / "examples" / "recipes").glob("*.toml")):
        recipe = from_toml(path.read_text(encoding="utf-8"), where=path.name)
        if recipe.architecture:
            configs.append((f"recipe:{path.name}", recipe.architecture, dict(recipe.arch_config)))
    return configs


OFFICIAL = _official_configs()


def _shapes(network: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in network.state_dict().items()]


@pytest.mark.parametrize(("label", "architecture", "config"), OFFICIAL, ids=[c[0] for c in OFFICIAL])
def test_every_official_config_passes(label, architecture, config):
    merged = validate_config(architecture, config)
    assert {key: merged[key] for key in config} == config


def test_the_zoo_has_cards_for_every_architecture():
    assert {arch for label, arch, _ in OFFICIAL if label.startswith("card:")} == set(all_architectures())


@pytest.mark.parametrize(("architecture", "config"), TEST_CONFIGS)
def test_the_merged_config_builds_the_same_network(architecture, config):
    arch = get_architecture(architecture)
    merged = validate_config(architecture, config)
    assert set(merged) == set(arch.config_schema)
    with torch.device("meta"):
        assert _shapes(arch.build(**merged)) == _shapes(arch.build(**config))


def _constructor_defaults(name: str) -> dict:
    arch = get_architecture(name)
    if name == "maxim":
        from deblurkit.archs.maxim import MaximConfig

        return {f.name: f.default for f in dataclasses.fields(MaximConfig)}
    parameters = inspect.signature(arch.build).parameters.values()
    return {p.name: p.default for p in parameters if p.name != "pool_for_level"}  # a callable, not a setting


@pytest.mark.parametrize("name", ["nafnet", "nafnet-local", "restormer", "uformer", "maxim"])
def test_each_schema_lists_every_setting_with_the_constructors_default(name):
    schema = get_architecture(name).config_schema
    defaults = _constructor_defaults(name)
    assert set(schema) == set(defaults)
    for key, spec in schema.items():
        assert spec.default == defaults[key], key
        assert validate_config(name, {key: spec.default})[key] == spec.default  # a default is in range


HOSTILE = [
    # (architecture, config, the setting the message names, what else it says)
    ("nafnet", {"width": 1_000_000_000}, "width", "between 1 and 1024, got 1000000000"),
    ("nafnet", json.loads('{"width": 1e9}'), "width", "got 1000000000.0"),
    ("nafnet", {"width": -5}, "width", "got -5"),
    (
        "nafnet",
        {"enc_blk_nums": [1] * 40, "dec_blk_nums": [1] * 40},
        "enc_blk_nums",
        "got a list of 40 entries",
    ),
    ("maxim", {"depth": 40}, "depth", "between 1 and 8, got 40"),
    ("nafnet", [1, 2], "config", "must be a JSON object of settings, got a list"),
    ("nafnet", "abc", "config", "got a string"),
    ("nafnet", {"width": 16.0}, "width", "must be an integer"),
    ("nafnet", {"middle_blk_num": 1.5}, "middle_blk_num", "must be an integer"),
    ("nafnet", {"width": True}, "width", "got true"),
    ("nafnet", {"enc_blk_nums": [1, True]}, "enc_blk_nums", "got [1, true]"),
    ("nafnet", {"enc_blk_nums": [1, 2.0]}, "enc_blk_nums", "got [1, 2.0]"),
    ("nafnet", {"enc_blk_nums": 4}, "enc_blk_nums", "must be a list"),
    ("restormer", {"bias": 0}, "bias", "must be true or false, got 0"),
    ("restormer", {"ffn_expansion_factor": True}, "ffn_expansion_factor", "must be a number"),
    ("restormer", {"ffn_expansion_factor": float("nan")}, "ffn_expansion_factor", "got NaN"),
    ("restormer", {"ffn_expansion_factor": "2.66"}, "ffn_expansion_factor", 'got "2.66"'),
    ("restormer", {"num_blocks": [4, 6, 6]}, "num_blocks", "a list of 4 integers"),
    ("restormer", {"heads": [1, 2, 4, 8, 16]}, "heads", "a list of 4 integers"),
    ("restormer", {"LayerNorm_type": "biasfree"}, "LayerNorm_type", 'one of "WithBias", "BiasFree"'),
    ("uformer", {"depths": [2] * 8}, "depths", "a list of 9 integers"),
    ("uformer", {"qk_scale": "x"}, "qk_scale", "null or a number"),
    ("uformer", {"drop_path_rate": 2}, "drop_path_rate", "between 0 and 1"),
    ("maxim", {"block_size_hr": [16]}, "block_size_hr", "a list of 2 integers"),
    ("nafnet-local", {"train_size": -1}, "train_size", "or a list of 2 to 4 of them"),
    ("nafnet", {"widht": 16}, "widht", '(did you mean "width"?)'),
    ("maxim", {"feature": 16}, "feature", '(did you mean "features"?)'),
    ("nafnet", {"pool_for_level": None}, "pool_for_level", "unknown setting"),
    ("nafnet", {1: 2}, "setting names", "must be strings, got 1"),
    ("nafnet", {"a\nb" * 40: 1}, "unknown setting", '"a\\nba\\nb'),
    # settings that do not fit together
    ("nafnet", {"enc_blk_nums": [1, 1, 1], "dec_blk_nums": [1, 1]}, "dec_blk_nums", '"enc_blk_nums" (3)'),
    ("nafnet-local", {"fast_imp": True}, "fast_imp", "must be false"),
    ("restormer", {"dim": 47}, "dim", "must be even"),
    ("restormer", {"dim": 50, "heads": [1, 2, 4, 3]}, "heads", "entry 4 (3) must divide the 400 channels"),
    ("uformer", {"num_heads": [3] * 9}, "num_heads", "entry 1 (3) must divide the 32 channels"),
    ("maxim", {"depth": 2}, "num_supervision_scales", 'must not exceed "depth" (2)'),
    ("maxim", {"keep_stages": 4}, "keep_stages", '"num_stages" (3)'),
    ("maxim", {"input_proj_factor": 3}, "input_proj_factor", "must be even"),
    ("maxim", {"features": 2}, "channels_reduction", 'must not exceed "features" (2)'),
]


@pytest.mark.parametrize(("architecture", "config", "setting", "says"), HOSTILE)
def test_hostile_configs_are_one_usage_error_line_naming_the_setting(architecture, config, setting, says):
    with pytest.raises(UsageError) as err:
        validate_config(architecture, config)
    message = str(err.value)
    assert message.startswith("config.json: ") and "\n" not in message and len(message) < 400, message
    named = setting if " " in setting else f'"{setting}"'
    assert named in message and says in message, message
    assert err.value.exit_code == 2


def test_the_source_names_where_the_config_came_from():
    with pytest.raises(UsageError, match=r'^m\.safetensors: "width" must be'):
        validate_config("nafnet", {"width": 0}, source="m.safetensors")


def test_an_unknown_architecture_is_a_key_error_as_in_the_registry():
    with pytest.raises(KeyError, match="unknown architecture"):
        validate_config("nafnett", {})


@pytest.fixture
def registrations():
    """Every parameter and buffer registered while the test runs, with its device."""
    seen: list[torch.device] = []

    def record(module, name, tensor):
        if tensor is not None:
            seen.append(tensor.device)

    hooks = [
        module_hooks.register_module_parameter_registration_hook(record),
        module_hooks.register_module_buffer_registration_hook(record),
    ]
    yield seen
    for hook in hooks:
        hook.remove()


def test_a_network_over_the_parameter_ceiling_is_refused_without_allocating(registrations):
    # 6 levels of width 1024: tens of billions of parameters (hundreds of GB if it were built).
    huge = {"width": 1024, "enc_blk_nums": [1] * 6, "dec_blk_nums": [1] * 6}
    with pytest.raises(UsageError) as err:
        validate_config("nafnet", huge)
    message = str(err.value)
    assert message.startswith("config.json: this config makes a network of at least ")
    assert message.endswith(f"parameters, more than the {MAX_PARAMETERS:,} allowed")
    count = int(message.split("at least ")[1].split(" ")[0].replace(",", ""))
    assert count > MAX_PARAMETERS
    assert registrations and all(device.type == "meta" for device in registrations)


@pytest.mark.parametrize("name", ["nafnet", "nafnet-local", "restormer", "uformer", "maxim"])
def test_the_count_is_taken_on_the_meta_device(name, registrations):
    arch = get_architecture(name)
    with pytest.raises(
        UsageError, match=r"makes a network of at least [\d,]+ parameters, more than the 1,000 "
    ):
        validate_config(name, arch.default_config, max_parameters=1000)
    assert registrations and all(device.type == "meta" for device in registrations)


def test_the_count_is_exact_when_under_the_ceiling():
    from deblurkit.zoo.cards import get_entry

    arch = get_architecture("maxim")
    size = count_parameters(arch, get_entry("maxim-gopro").config)
    assert size.complete and size.elements == 22_207_605  # the TF.js graph's count (test_arch_maxim)
    stopped = count_parameters(arch, get_entry("maxim-gopro").config, max_elements=10_000)
    assert not stopped.complete and 10_000 < stopped.elements < size.elements


def test_too_many_layers_are_refused():
    deep = {"width": 1, "middle_blk_num": 64, "enc_blk_nums": [64] * 2, "dec_blk_nums": [64] * 2}
    with pytest.raises(
        UsageError, match=r"^config\.json: this config makes a network of at least 1,001 layers"
    ):
        validate_config("nafnet", deep, max_modules=1000)


def test_validation_leaves_the_random_state_alone():
    state = torch.random.get_rng_state()
    validate_config("uformer", {"embed_dim": 8, "num_heads": [1, 2, 4, 8, 8, 8, 8, 4, 2], "depths": [1] * 9})
    assert torch.equal(state, torch.random.get_rng_state())


def test_an_architecture_without_a_schema_is_only_counted():
    arch = dataclasses.replace(
        get_architecture("nafnet"), name="schemaless", config_schema={}, check_config=None
    )
    ARCHITECTURES["schemaless"] = arch
    try:
        assert validate_config("schemaless", {"width": 2}) == {"width": 2}
        with pytest.raises(UsageError, match="bad config for architecture 'schemaless': TypeError: "):
            validate_config("schemaless", {"widht": 2})
    finally:
        del ARCHITECTURES["schemaless"]


# Through load_model and the CLI: needs build_network (deblurkit/zoo/models.py) to call validate_config.


def _model_folder(tmp_path: Path, config: object) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "nafnet", "config": config}))
    save_file({"x": torch.zeros(1)}, folder / "model.safetensors")
    return folder


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"width": 1_000_000_000},
            '"width" must be an integer between 1 and 1024, got 1000000000',
        ),
        ({"width": -5}, '"width" must be an integer between 1 and 1024, got -5'),
        ({"enc_blk_nums": [1] * 40}, '"enc_blk_nums" must be a list of 0 to 8 integers'),
        (
            {"widht": 8},
            'unknown setting "widht" for architecture \'nafnet\' (did you mean "width"?)',
        ),
    ],
)
def test_load_model_and_the_cli_refuse_a_hostile_model_folder(tmp_path, config, message):
    from deblurkit.cli import cli
    from deblurkit.zoo.models import load_model

    folder = _model_folder(tmp_path, config)
    with pytest.raises(UsageError) as err:
        load_model(folder)
    assert str(err.value).startswith(f"{folder / 'config.json'}: {message}")
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    result = CliRunner().invoke(
        cli, ["deblur", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "-m", str(folder)]
    )
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr == f"error: {err.value}\n"
