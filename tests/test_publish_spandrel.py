"""``export_for_spandrel``: a NAFNet's weights as a plain official-layout state dict (no deblurkit
metadata) that spandrel recognises as its NAFNet, which runs without TLC. The spandrel checks run only
where spandrel is installed (it is not a dependency)."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tinymodels import TINY_NAFNET

from deblurkit.archs import get_architecture
from deblurkit.errors import UsageError
from deblurkit.training.publish import export_for_spandrel
from deblurkit.zoo.models import build_network
from deblurkit.zoo.restorer import Restorer

LOCAL = {**TINY_NAFNET, "train_size": 32}


def restorer(architecture: str, config: dict) -> Restorer:
    torch.manual_seed(0)
    network = build_network(architecture, config).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))  # non-trivial attention and gates
    return Restorer(network, get_architecture(architecture), config, name=architecture).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_export_is_a_plain_official_state_dict(tmp_path, suffix):
    model = restorer("nafnet-local", LOCAL)
    path = export_for_spandrel(model, tmp_path / f"nafnet{suffix}")
    if suffix == ".safetensors":
        with safe_open(str(path), "pt") as handle:
            assert handle.metadata() == {"format": "pt"}  # no deblurkit_model entry
        state = load_file(str(path))
    else:
        state = torch.load(path, weights_only=True)
    expected = model.network.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    assert {"intro.weight", "middle_blks.0.sca.1.weight", "encoders.0.0.beta"} <= set(state)


def test_only_nafnets_and_known_suffixes(tmp_path):
    with pytest.raises(UsageError, match="NAFNet"):
        export_for_spandrel(torch.nn.Conv2d(3, 3, 1), tmp_path / "x.safetensors")
    with pytest.raises(UsageError, match=r"\.safetensors or \.pth"):
        export_for_spandrel(restorer("nafnet", TINY_NAFNET), tmp_path / "x.onnx")
    no_middle = build_network("nafnet", {**TINY_NAFNET, "middle_blk_num": 0})
    with pytest.raises(UsageError, match="middle_blks.0"):
        export_for_spandrel(no_middle, tmp_path / "x.safetensors")


def test_spandrel_loads_the_export_as_nafnet_without_tlc(tmp_path):
    spandrel = pytest.importorskip("spandrel")
    model = restorer("nafnet-local", LOCAL)
    path = export_for_spandrel(model, tmp_path / "nafnet.safetensors")
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.architecture.id == "NAFNet"
    plain = restorer("nafnet", TINY_NAFNET)
    plain.network.load_state_dict(model.network.state_dict())
    image = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs, global_pool, tlc = descriptor(image), plain(image), model(image)
    # spandrel (which clamps to [0, 1]) = deblurkit's plain NAFNet, not the TLC model
    assert torch.allclose(theirs, global_pool.clamp(0, 1), atol=1e-5)
    assert (theirs - tlc.clamp(0, 1)).abs().max() > 1e-3
