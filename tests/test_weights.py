"""Weight files on disk: safe .pth reading (wrappers, refusals) and atomic safetensors writing."""

import pickle

import pytest
import torch

from deblurkit.errors import WeightsError
from deblurkit.zoo import weights

STATE = {"conv.weight": torch.arange(12.0).reshape(3, 4), "conv.bias": torch.ones(3)}


class _NotATensor:
    pass


def test_pickle_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params": STATE, "extra": _NotATensor()}, path)
    with pytest.raises(WeightsError, match="not a plain-tensor checkpoint; refusing"):
        weights.read_pth_state_dict(path)


def test_raw_pickle_is_refused(tmp_path):
    path = tmp_path / "raw.pth"
    path.write_bytes(pickle.dumps(_NotATensor()))
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        weights.read_pth_state_dict(path)


@pytest.mark.parametrize(
    ("wrapped", "key", "prefix"),
    [
        ({"params": STATE}, "", ""),
        ({"params_ema": STATE, "params": {"x": torch.zeros(1)}}, "", ""),
        ({"state_dict": {f"module.{k}": v for k, v in STATE.items()}, "epoch": 3}, "state_dict", "module."),
        ({f"module.{k}": v for k, v in STATE.items()}, "", ""),
        (STATE, "", ""),
    ],
)
def test_official_wrappers_are_unwrapped(tmp_path, wrapped, key, prefix):
    path = tmp_path / "w.pth"
    torch.save(wrapped, path)
    state = weights.read_pth_state_dict(path, key=key, strip_prefix=prefix)
    assert set(state) == set(STATE)


def test_missing_wrapper_key_is_named(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"params": STATE}, path)
    with pytest.raises(WeightsError, match="no 'state_dict' entry"):
        weights.read_pth_state_dict(path, key="state_dict")


def test_write_safetensors_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.safetensors"
    weights.write_safetensors({"a": torch.ones(2)}, target)
    before = target.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        weights.write_safetensors({"a": torch.zeros(2)}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
