"""What is verified when no card pins a sha256, in each Hub cache layout, and on a read-only cache.

Offline throughout (``HF_HUB_OFFLINE=1`` from conftest) against real cache layouts built on disk; the
one call that cannot happen offline, the Hub API's file listing, is replaced where a test needs an
online answer.
"""

import io
import json
import os

import pytest
import torch
from hubcache import add_to_hub_cache, etag_of, repo_dir
from huggingface_hub import HfApi, constants
from huggingface_hub.hf_api import RepoFile
from safetensors.torch import load_file, save

from deblurkit.errors import WeightsError
from deblurkit.zoo import hub, weights
from deblurkit.zoo.cards import WeightsSource

STATE = {"conv.weight": torch.arange(12.0).reshape(3, 4), "conv.bias": torch.ones(3)}


def _data(seed: float = 0.0) -> bytes:
    return save({name: tensor + seed for name, tensor in STATE.items()})


def _loads(path) -> bool:
    return torch.equal(load_file(path)["conv.bias"], STATE["conv.bias"])


def _tamper(path) -> None:
    """Same size, different bytes, new mtime (so no verification stamp vouches for it any more)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    os.unlink(path)
    path.write_bytes(bytes(data))


def _online(monkeypatch, answer) -> list:
    """Online mode, with the Hub API's ``get_paths_info`` answering ``answer`` (a list, or an error)."""
    calls = []

    def get_paths_info(self, repo_id, paths, *, revision=None, **kwargs):
        calls.append((repo_id, list(paths), revision))
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "get_paths_info", get_paths_info)
    return calls


def _lfs_entry(path: str, data: bytes) -> RepoFile:
    """The Hub API's listing of an LFS file, as huggingface_hub parses it."""
    lfs = {"size": len(data), "oid": etag_of(data), "pointerSize": 134}
    return RepoFile(path=path, size=len(data), oid="1" * 40, lfs=lfs)


# -- a cache with symlinks: the blob's name is the Hub's checksum ---------------------------------------
def test_the_blob_name_is_the_checksum_and_a_wrong_file_is_refused():
    data = _data()
    add_to_hub_cache("verify/lfs", {"model.safetensors": data})
    source = WeightsSource(filename="model.safetensors", repo_id="verify/lfs")
    assert _loads(hub.fetch_weights(source))
    _tamper(repo_dir("verify/lfs") / "blobs" / etag_of(data))
    with pytest.raises(
        WeightsError, match="sha256 mismatch .*as huggingface_hub named the file's blob"
    ) as err:
        hub.fetch_weights(source)
    assert "\n" not in str(err.value)


def test_shared_blob_store_of_huggingface_hub_2_is_followed_one_link_only():
    """``blobs/<etag>`` links on into the shared store, whose names are Xet hashes, not checksums."""
    data = _data(1.0)
    add_to_hub_cache("verify/shared", {"model.safetensors": data}, shared=True)
    source = WeightsSource(filename="model.safetensors", repo_id="verify/shared")
    path = hub.fetch_weights(source)
    assert path.resolve().name != etag_of(data)  # resolving every link would have named the Xet hash
    assert torch.equal(load_file(path)["conv.bias"], STATE["conv.bias"] + 1.0)


def test_a_small_file_kept_in_git_is_checked_against_its_git_blob_id():
    data = _data(2.0)
    add_to_hub_cache("verify/git", {"model.safetensors": data}, lfs=False)
    source = WeightsSource(filename="model.safetensors", repo_id="verify/git")
    assert torch.equal(load_file(hub.fetch_weights(source))["conv.bias"], STATE["conv.bias"] + 2.0)
    _tamper(repo_dir("verify/git") / "blobs" / etag_of(data, lfs=False))
    with pytest.raises(WeightsError, match="git blob id mismatch"):
        hub.fetch_weights(source)


# -- a cache without symlinks (Windows): the cache proves nothing by itself -----------------------------
def test_without_symlinks_offline_and_never_checked_online_is_refused():
    add_to_hub_cache("verify/copied", {"model.safetensors": _data()}, symlinks=False)
    source = WeightsSource(filename="model.safetensors", repo_id="verify/copied")
    with pytest.raises(WeightsError, match="cannot verify model.safetensors") as err:
        hub.fetch_weights(source, name="copied")
    message = str(err.value)
    assert "\n" not in message and "without symlinks" in message and "HF_HUB_OFFLINE is set" in message


def test_without_symlinks_a_pinned_sha256_is_enough():
    data = _data()
    add_to_hub_cache("verify/copied-pinned", {"model.safetensors": data}, symlinks=False)
    source = WeightsSource(filename="model.safetensors", repo_id="verify/copied-pinned", sha256=etag_of(data))
    assert _loads(hub.fetch_weights(source))


def test_without_symlinks_online_asks_the_hub_at_the_commit_and_records_it_for_offline(monkeypatch):
    data = _data()
    commit = add_to_hub_cache("verify/copied-online", {"model.safetensors": data}, symlinks=False)
    # A commit revision: hf_hub_download returns the cached file without a request.
    source = WeightsSource(filename="model.safetensors", repo_id="verify/copied-online", revision=commit)
    with monkeypatch.context() as online:
        calls = _online(online, [_lfs_entry("model.safetensors", data)])
        assert _loads(hub.fetch_weights(source))
    assert calls == [("verify/copied-online", ["model.safetensors"], commit)]
    # Offline again: the Hub's answer, recorded by that check, vouches for the file...
    assert _loads(hub.fetch_weights(source))
    # ...and a changed file is caught against it.
    _tamper(repo_dir("verify/copied-online") / "snapshots" / commit / "model.safetensors")
    with pytest.raises(WeightsError, match="sha256 mismatch .*recorded by an earlier online check"):
        hub.fetch_weights(source)


def test_without_symlinks_a_file_the_hub_does_not_publish_is_refused(monkeypatch):
    data = _data()
    commit = add_to_hub_cache("verify/copied-other", {"model.safetensors": data}, symlinks=False)
    source = WeightsSource(filename="model.safetensors", repo_id="verify/copied-other", revision=commit)
    _online(monkeypatch, [_lfs_entry("model.safetensors", _data(5.0))])
    with pytest.raises(WeightsError, match="sha256 mismatch .*the Hub's LFS sha256 at commit"):
        hub.fetch_weights(source)


def test_without_symlinks_online_but_the_hub_does_not_answer(monkeypatch):
    # The "no answer" class of whichever HTTP library this huggingface_hub generation uses.
    unreachable = hub._errors().unreachable[0]
    commit = add_to_hub_cache("verify/copied-down", {"model.safetensors": _data()}, symlinks=False)
    source = WeightsSource(filename="model.safetensors", repo_id="verify/copied-down", revision=commit)
    _online(monkeypatch, unreachable("Max retries exceeded\nwith url: /api/models"))
    with pytest.raises(WeightsError, match=r"could not be asked for it \(Max retries exceeded\)") as err:
        hub.fetch_weights(source)
    assert "\n" not in str(err.value)


# -- a read-only cache -----------------------------------------------------------------------------------
def _refuse_stamps(monkeypatch) -> None:
    """Every verification stamp write fails as on a read-only HF_HOME (we run as root: chmod would not)."""

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(weights, "atomic_path", refuse)


@pytest.fixture
def unwritable_stamps(monkeypatch):
    _refuse_stamps(monkeypatch)


def test_read_only_cache_verifies_then_uses_files_without_writing_stamps(unwritable_stamps):
    data = _data(3.0)
    add_to_hub_cache("verify/read-only", {"model.safetensors": data})
    source = WeightsSource(filename="model.safetensors", repo_id="verify/read-only")
    assert torch.equal(load_file(hub.fetch_weights(source))["conv.bias"], STATE["conv.bias"] + 3.0)
    assert not weights._stamp_path(etag_of(data)).exists()
    _tamper(repo_dir("verify/read-only") / "blobs" / etag_of(data))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        hub.fetch_weights(source)


def test_read_only_cache_that_already_holds_verified_files_still_works(monkeypatch):
    data = _data(4.0)
    add_to_hub_cache("verify/stamped-then-read-only", {"model.safetensors": data})
    source = WeightsSource(filename="model.safetensors", repo_id="verify/stamped-then-read-only")
    first = hub.fetch_weights(source)  # writable: the stamp is written
    _refuse_stamps(monkeypatch)
    assert hub.fetch_weights(source) == first


def test_deblurkit_cache_under_a_regular_file(tmp_path, monkeypatch):
    """DEBLURKIT_CACHE where nothing can be written: verification still works; a .pth that needs
    converting fails with one line saying what to do."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("DEBLURKIT_CACHE", str(blocker / "cache"))
    data = _data()
    add_to_hub_cache("verify/no-cache-dir", {"model.safetensors": data})
    assert _loads(
        hub.fetch_weights(WeightsSource(filename="model.safetensors", repo_id="verify/no-cache-dir"))
    )

    buffer = io.BytesIO()
    torch.save({"params": STATE}, buffer)
    add_to_hub_cache("verify/no-cache-dir-pth", {"w.pth": buffer.getvalue()})
    source = WeightsSource(filename="w.pth", repo_id="verify/no-cache-dir-pth", format="pth")
    with pytest.raises(WeightsError, match="cannot be written to .*set DEBLURKIT_CACHE") as err:
        hub.fetch_weights(source, name="pth-model")
    assert "\n" not in str(err.value)


def test_records_are_plain_json_in_deblurkit_cache(monkeypatch):
    data = _data(6.0)
    commit = add_to_hub_cache("verify/record", {"model.safetensors": data}, symlinks=False)
    source = WeightsSource(filename="model.safetensors", repo_id="verify/record", revision=commit)
    _online(monkeypatch, [_lfs_entry("model.safetensors", data)])
    hub.fetch_weights(source)
    record = hub._record_path("verify/record", commit, "model.safetensors")
    assert json.loads(record.read_text()) == {"algorithm": "sha256", "value": etag_of(data)}
