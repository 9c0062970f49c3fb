"""Weights from the Hub cache, offline: pinned sha256, LFS checksum, .pth conversion, refusals."""

import dataclasses
import hashlib
import io

import pytest
import torch
from hubcache import add_to_hub_cache, blob_path
from safetensors.torch import load_file

from deblurkit.errors import WeightsError
from deblurkit.zoo import hub, weights
from deblurkit.zoo.cards import WeightsSource


def _pth_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


STATE = {"conv.weight": torch.arange(12.0).reshape(3, 4), "conv.bias": torch.ones(3)}


def test_pth_is_verified_converted_once_and_loaded_without_the_pickle(hf_home):
    data = _pth_bytes({"params": STATE, "step": 10})
    add_to_hub_cache("test/pth-model", {"weights.pth": data})
    source = WeightsSource(
        filename="weights.pth",
        repo_id="test/pth-model",
        sha256=hashlib.sha256(data).hexdigest(),
        format="pth",
        key="params",
    )
    path = hub.fetch_weights(source)
    assert path.suffix == ".safetensors" and path.is_relative_to(hf_home / "deblurkit")
    loaded = load_file(path)
    assert set(loaded) == set(STATE) and torch.equal(loaded["conv.weight"], STATE["conv.weight"])
    # The pickle can vanish: the converted file, keyed by the pinned sha256, is used directly.
    blob_path("test/pth-model", data).unlink()
    assert hub.fetch_weights(source) == path


def test_sha256_mismatch_is_refused():
    data = _pth_bytes({"params": STATE})
    add_to_hub_cache("test/tampered", {"weights.pth": data})
    source = WeightsSource(filename="weights.pth", repo_id="test/tampered", sha256="0" * 64, format="pth")
    with pytest.raises(WeightsError, match="sha256 mismatch.*refusing"):
        hub.fetch_weights(source)


def test_unpinned_file_is_checked_against_the_hub_lfs_checksum():
    from safetensors.torch import save

    data = save(STATE)
    add_to_hub_cache("test/unpinned", {"model.safetensors": data})
    source = WeightsSource(filename="model.safetensors", repo_id="test/unpinned")
    assert torch.equal(load_file(hub.fetch_weights(source))["conv.bias"], STATE["conv.bias"])
    # Corrupt the blob (same size, same mtime stamp would not be fooled: content hash differs).
    blob = blob_path("test/unpinned", data)
    blob.write_bytes(data[:-1] + b"\x00")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        hub.fetch_weights(source)


def test_offline_and_not_cached_is_one_clear_line():
    source = WeightsSource(filename="model.safetensors", repo_id="nobody/nothing-here", sha256="a" * 64)
    with pytest.raises(WeightsError, match="not in the local Hub cache and HF_HUB_OFFLINE is set") as err:
        hub.fetch_weights(source, name="nothing-here")
    assert "\n" not in str(err.value)


def test_no_hub_copy_points_at_the_download_page():
    source = WeightsSource(
        filename="Uformer_B.pth", format="pth", download_page="https://example.org/uformer"
    )
    with pytest.raises(WeightsError, match="download Uformer_B.pth from https://example.org/uformer"):
        hub.fetch_weights(source, name="uformer-b-gopro")


def test_verified_files_are_not_rehashed(monkeypatch):
    from safetensors.torch import save

    data = save({"w": torch.zeros(4)})
    add_to_hub_cache("test/stamped", {"model.safetensors": data})
    source = WeightsSource(filename="model.safetensors", repo_id="test/stamped")
    hub.fetch_weights(source)
    calls = []
    monkeypatch.setattr(weights, "sha256_of", lambda path, chunk=0: calls.append(path) or "")
    hub.fetch_weights(source)
    assert calls == []


def test_weights_source_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        WeightsSource(filename="x").sha256 = "y"
