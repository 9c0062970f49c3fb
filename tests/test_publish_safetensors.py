"""``write_safetensors``: streamed by ``safetensors.torch.save_file`` onto a temporary beside the target
(renamed atomically), with ``format: pt`` beside the caller's metadata, and tensors bit-exact."""

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from deblurkit.zoo import weights


def raw(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes (NaN payloads and signed zeros included)."""
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    base = torch.randn(6, 4)
    return {
        "fp32": torch.randn(3, 5),
        "bf16": torch.randn(4, 4).to(torch.bfloat16),
        "fp16": torch.randn(7).half(),
        "special": torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45]),
        "int64": torch.arange(10),
        "flag": torch.tensor([True, False]),
        "transposed": base.t(),  # not contiguous
        "tied_a": base,
        "tied_b": base,  # the same storage as tied_a
        "row": base[2],  # a view into it
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(3.5),
    }


def test_format_pt_metadata_and_bit_exact_round_trip(tmp_path):
    target = tmp_path / "w.safetensors"
    original = state()
    before = {k: v.clone() for k, v in original.items()}
    weights.write_safetensors(original, target, {"source": "x.pth", "sha256": "ab" * 32})
    with safe_open(str(target), "pt") as handle:
        metadata = handle.metadata()
    assert metadata == {"format": "pt", "source": "x.pth", "sha256": "ab" * 32}
    loaded = load_file(str(target))
    assert set(loaded) == set(original)
    for name, value in original.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        assert raw(loaded[name]).equal(raw(value)), name
    assert all(raw(original[k]).equal(raw(before[k])) for k in original)  # the inputs are untouched


def test_without_metadata_the_format_is_still_written_with_ordinary_permissions(tmp_path):
    target = tmp_path / "plain.safetensors"
    weights.write_safetensors({"a": torch.ones(2)}, target)
    with safe_open(str(target), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("x")  # the permissions the umask gives (safetensors itself makes 0600 files)
    assert target.stat().st_mode & 0o777 == ordinary.stat().st_mode & 0o777


def test_the_file_is_streamed_to_a_temporary_beside_the_target(tmp_path, monkeypatch):
    target = tmp_path / "out.safetensors"
    seen = []
    real = weights.save_file

    def spy(tensors, filename, metadata=None):
        seen.append((Path(filename), target.exists()))
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(weights, "save_file", spy)
    weights.write_safetensors({"a": torch.ones(2)}, target)
    [(temporary, existed)] = seen
    assert temporary.parent == tmp_path and temporary.name.startswith(".out.safetensors.")
    assert temporary.name.endswith(".tmp") and not existed and not temporary.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
    assert torch.equal(load_file(str(target))["a"], torch.ones(2))
