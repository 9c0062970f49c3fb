"""The loss spec language: tokenizer, parser, option checking, one-line errors."""

from __future__ import annotations

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deblurkit.errors import DeblurkitError
from deblurkit.losses import LOSS_TERMS, build_loss, describe_terms, parse_spec
from deblurkit.losses.encoders import ViTEncoder, load_encoder
from deblurkit.losses.spec import Range, tokenize

TINY = {
    "timm_model": "vit_base_patch16_224",
    "img_size": 64,
    "embed_dim": 48,
    "depth": 6,
    "num_heads": 3,
    "num_classes": 0,
}


@pytest.fixture(scope="module")
def encoder() -> ViTEncoder:
    kwargs = {k: v for k, v in TINY.items() if k != "timm_model"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = timm.create_model("vit_base_patch16_224", pretrained=False, **kwargs)
    return load_encoder(TINY, weights=vit.state_dict())


# -- parsing ----------------------------------------------------------------------------------------
def test_parse_examples() -> None:
    terms = parse_spec("l1 + 0.1*mae_local")
    assert [(t.name, t.weight, t.options) for t in terms] == [("l1", None, {}), ("mae_local", 0.1, {})]
    terms = parse_spec("psnr + 1e-4*mae_global(blocks=1-6, ratio=0.5)")
    assert terms[1].name == "mae_global"
    assert terms[1].weight == 1e-4
    assert terms[1].options == {"blocks": Range(1, 6), "ratio": 0.5}
    terms = parse_spec("l1 + 1e-4*mae_global(blocks=1-6, ratio=0.5, p=2)")
    assert terms[1].options["p"] == 2 and isinstance(terms[1].options["p"], int)
    assert parse_spec("0.1*mae_local(ratio=0)")[0].options == {"ratio": 0}


def test_parse_forms() -> None:
    (term,) = parse_spec("  MAE_Local ( blocks = [1, 3,5], encoder = 'dino-vit-base', p=2, ) * 0.5 ")
    assert term.name == "mae_local"
    assert term.weight == 0.5
    assert term.options == {"blocks": (1, 3, 5), "encoder": "dino-vit-base", "p": 2}
    (term,) = parse_spec("psnr(to_y=true)")
    assert term.options == {"to_y": True}
    (term,) = parse_spec("mae_local(encoder=mae-vit-large)")
    assert term.options == {"encoder": "mae-vit-large"}
    assert parse_spec("l1+\n2.5e-3*charbonnier(eps=1e-3)")[1].weight == 2.5e-3
    assert parse_spec(".5*l1")[0].weight == 0.5
    assert parse_spec("l1()")[0].options == {}


def test_positions_are_recorded() -> None:
    spec = "l1 + 0.1*mae_local(ratio=0.5)"
    term = parse_spec(spec)[1]
    assert spec[term.pos :].startswith("mae_local")
    assert spec[term.option_pos["ratio"] :].startswith("ratio")


def test_tokenizer() -> None:
    kinds = [t.kind for t in tokenize("1e-4*x(a=1-6,b='s')")]
    assert kinds == [
        "NUMBER",
        "*",
        "NAME",
        "(",
        "NAME",
        "=",
        "NUMBER",
        "-",
        "NUMBER",
        ",",
        "NAME",
        "=",
        "STRING",
        ")",
        "END",
    ]
    assert tokenize("1e-4")[0].value == 1e-4


# -- building ---------------------------------------------------------------------------------------
def test_default_and_explicit_weights(encoder: ViTEncoder) -> None:
    loss = build_loss("l1 + mae_local + mae_global + 0.2*mae_local(blocks=6)", encoder=encoder)
    assert loss.weights == {"l1": 1.0, "mae_local": 0.1, "mae_global": 1e-4, "mae_local_2": 0.2}
    local = loss.losses["mae_local"]
    assert local.blocks == (1, 2, 3, 4, 5, 6) and local.ratio == 0.5 and local.p == 1
    assert loss.losses["mae_global"].p == 2
    assert loss.losses["mae_local_2"].blocks == (6,)
    assert loss.losses["mae_local"].encoder is encoder


def test_options_reach_the_terms(encoder: ViTEncoder) -> None:
    loss = build_loss(
        "charbonnier(eps=1e-2) + psnr(to_y=true)"
        " + mae_global_sliced(projections=8, blocks=[2,4], ratio=0.25, p=1)",
        encoder=encoder,
    )
    assert loss.losses["charbonnier"].eps == 1e-2
    assert loss.losses["psnr"].to_y is True
    sliced = loss.losses["mae_global_sliced"]
    assert (sliced.projections, sliced.blocks, sliced.ratio, sliced.p, sliced.variant) == (
        8,
        (2, 4),
        0.25,
        1,
        "sliced",
    )
    value = loss(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert torch.isfinite(value)


def test_aliases_and_registry() -> None:
    assert "mse" in build_loss("l2").losses
    assert {"l1", "charbonnier", "psnr", "mae_local", "mae_global", "vgg", "vgg_pool5"} <= set(LOSS_TERMS)
    text = describe_terms()
    assert "mae_local(blocks=1-6, ratio=0.5, p=1" in text


BAD_SPECS = [
    ("", "empty loss spec"),
    ("   ", "empty loss spec"),
    ("l1 +", "expected a loss term name"),
    ("l1 + 0.1*mae_locl", "did you mean 'mae_local'"),
    ("l1 0.1", "join terms with '+'"),
    ("l1 - mae_local", "no subtraction"),
    ("0.1 mae_local", "expected '*'"),
    ("0.1*", "expected a loss term name"),
    ("l1 * x", "expected a weight"),
    ("2*l1*3", "one weight"),
    ("mae_local(ratio=0.5", "expected ',' or ')'"),
    ("mae_local(ratio 0.5)", "expected '='"),
    ("mae_local(=0.5)", "option name"),
    ("mae_local(ratio=)", "expected a value"),
    ("mae_local(ratio=0.5, ratio=0.2)", "given twice"),
    ("mae_local(blokcs=1-6)", "did you mean 'blocks'"),
    ("mae_local(ratio=1)", "in [0, 1)"),
    ("mae_local(ratio=true)", "in [0, 1)"),
    ("mae_local(p=3)", "one of 1, 2"),
    ("mae_local(blocks=0-3)", "block 0 does not exist"),
    ("mae_local(blocks=2-9)", "block 7 does not exist"),
    ("mae_local(blocks=6-1)", "empty"),
    ("mae_local(blocks=1.5-3)", "whole numbers"),
    ("mae_local(blocks=x)", "block numbers"),
    ("psnr(to_y=yes)", "true or false"),
    ("charbonnier(eps=abc)", "a number"),
    ("mae_global_sliced(projections=2.5)", "whole number"),
    ("l1(x=1)", "has no option 'x'"),
    ("0*l1", "must be positive"),
    ("l1 $ x", "unexpected character '$'"),
    ("mae_local(encoder='abc)", "unterminated string"),
    ("12abc", "malformed number"),
    ("l1 + (mae_local)", "expected a loss term name"),
    ("mae_local(p=-1)", "negative"),
]


@pytest.mark.parametrize(("spec", "fragment"), BAD_SPECS)
def test_bad_specs_give_one_line_errors(encoder: ViTEncoder, spec: str, fragment: str) -> None:
    with pytest.raises(DeblurkitError) as info:
        build_loss(spec, encoder=encoder)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2  # the user's spec to fix: a usage error
    assert fragment in message
    if spec.strip():
        assert "at column" in message or "at the end" in message


def test_error_column_points_at_the_problem(encoder: ViTEncoder) -> None:
    spec = "l1 + 1e-4*mae_global(blocks=1-6, rato=0.5)"
    with pytest.raises(DeblurkitError, match=f"at column {spec.index('rato') + 1}$"):
        build_loss(spec, encoder=encoder)
    spec = "l1 + mae_local(blocks=1-8)"
    with pytest.raises(DeblurkitError, match=f"at column {spec.index('blocks') + 1}$"):
        build_loss(spec, encoder=encoder)


def test_spec_must_be_a_string() -> None:
    with pytest.raises(DeblurkitError):
        parse_spec(None)  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------------
_names = st.sampled_from(["l1", "mse", "charbonnier", "psnr", "mae_local", "mae_global"])
_weights = st.one_of(st.none(), st.floats(min_value=1e-6, max_value=1e3, allow_nan=False))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_names, _weights, st.booleans()), min_size=1, max_size=5))
def test_roundtrip_of_generated_specs(terms: list[tuple[str, float | None, bool]]) -> None:
    parts = []
    for name, weight, weight_after in terms:
        if weight is None:
            parts.append(name)
        elif weight_after:
            parts.append(f"{name} * {weight!r}")
        else:
            parts.append(f"{weight!r}*{name}")
    parsed = parse_spec(" + ".join(parts))
    assert [t.name for t in parsed] == [name for name, _, _ in terms]
    assert [t.weight for t in parsed] == [w for _, w, _ in terms]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("l1mae_ocgbp+*()=,-.[]'\" 0123456789xe")), max_size=40))
def test_parser_never_fails_with_anything_but_a_clean_error(text: str) -> None:
    message = ""
    try:
        parse_spec(text)
    except DeblurkitError as err:
        message = str(err)
    assert "\n" not in message
