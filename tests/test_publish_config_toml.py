"""``to_toml`` writes valid TOML with tomli-w for every literal: NaN and infinities, nested lists and
tables, strings and keys that need escaping all read back through ``tomllib`` unchanged."""

import dataclasses
import math
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from deblurkit.training import TrainConfig, from_toml, to_toml


def same(a: object, b: object) -> bool:
    """Equality with NaN equal to NaN, through lists and dicts (and the float type kept)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_nan_inf_and_nested_lists_round_trip():
    config = TrainConfig(
        lr=float("nan"),
        grad_clip=float("inf"),
        weight_decay=-float("inf"),
        min_lr=-0.0,
        betas=[0.9, float("nan")],
        synth_motion_length=[float("-inf"), 1e300],
        frames_count=[[1, 2], [3, [4.5, float("inf")]], []],
        arch_config={
            "blocks": [[1, 2], [3]],
            "scale": float("nan"),
            "inner": {"deep": [float("-inf"), {"x": "y"}], "empty": {}},
            "odd key": 1,
            "ключ": True,
        },
        name='tab\there "quote" back\\slash\nnew line \x7f del \x01 ctl ünï',
        data="C:\\photos\\blur",
    )
    text = to_toml(config, "header with nan and a # hash")
    parsed = tomllib.loads(text)  # valid TOML
    assert math.isnan(parsed["optim"]["lr"]) and parsed["optim"]["grad_clip"] == math.inf
    assert parsed["model"]["arch_config"]["blocks"] == [[1, 2], [3]]
    back = from_toml(text)
    for field in dataclasses.fields(TrainConfig):
        assert same(getattr(back, field.name), getattr(config, field.name)), field.name


def test_defaults_round_trip_equal_and_every_line_is_one_line():
    config = TrainConfig()
    text = to_toml(config)
    assert from_toml(text) == config
    for line in text.splitlines():
        assert not line or line.startswith(("[", "#")) or " = " in line
