"""The EMA update as one ``torch._foreach_lerp_`` per dtype equals the per-tensor loop it replaced, bit
for bit, in fp32 and bf16 (and mixed), warm-up included; integer buffers are copied."""

import copy

import pytest
import torch
from torch import nn

from deblurkit.training.ema import EMA


def loop_update(average: nn.Module, network: nn.Module, decay: float) -> None:
    """The reference: the loop over tensors deblurkit used before."""
    source = network.state_dict()
    with torch.no_grad():
        for name, target in average.state_dict().items():
            value = source[name].detach()
            if target.is_floating_point():
                target.lerp_(value.to(target.dtype), 1.0 - decay)
            else:
                target.copy_(value)


def small_network(dtype: torch.dtype | None) -> nn.Module:
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 1), nn.LayerNorm(3))
    if dtype is None:  # mixed: the first conv in bf16, the rest fp32
        network[0].to(torch.bfloat16)
        return network
    return network.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, None], ids=["fp32", "bf16", "mixed"])
@pytest.mark.parametrize("warmup", [True, False])
def test_foreach_update_equals_the_loop(dtype, warmup):
    network = small_network(dtype)
    ema = EMA(network, 0.9, warmup=warmup)
    reference = copy.deepcopy(network).eval().requires_grad_(False)
    for step in range(5):
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
            network[1].running_mean.add_(0.5)
            network[1].num_batches_tracked += 1
        loop_update(reference, network, ema.current_decay())
        ema.update(network)
        assert ema.updates == step + 1
        expected = reference.state_dict()
        for name, value in ema.state_dict().items():
            assert value.dtype == expected[name].dtype
            assert torch.equal(value, expected[name]), name
    assert int(ema.state_dict()["1.num_batches_tracked"]) == 5
    assert not torch.equal(ema.state_dict()["0.weight"], network.state_dict()["0.weight"])
