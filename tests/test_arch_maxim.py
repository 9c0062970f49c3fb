"""MAXIM: structure, size rule, and the pieces whose numerics must follow JAX/Flax exactly.

Parity of the full MAXIM-3S with its original TF.js graph needs TensorFlow and the 84 MB package and
lives in ``benchmarks/maxim_parity.py``; here each piece is checked against an independent
re-implementation of the JAX semantics it ports.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tfjs_graph import randomize
from tinymodels import TINY_MAXIM

from deblurkit.archs import SizeRule, get_architecture
from deblurkit.archs.maxim import (
    MAXIM,
    UpSampleRatio,
    _gelu,
    block_images,
    maxim_size_multiple,
    unblock_images,
)

TINY = TINY_MAXIM


def _tiny(**extra) -> MAXIM:
    return randomize(MAXIM(**{**TINY, **extra}))


def test_the_maxim_gopro_card_builds_the_graphs_parameters():
    # The TF.js graph of MAXIM-3S holds 22,207,605 parameters (2,750 tensors): the S-3 network
    # without the last stage's two coarse output heads.
    from deblurkit.zoo.cards import get_entry

    arch = get_architecture("maxim")
    with torch.device("meta"):
        network = arch.build(**get_entry("maxim-gopro").config)
    assert sum(p.numel() for p in network.parameters()) == 22_207_605
    assert len(network.state_dict()) == 2750
    assert maxim_size_multiple(arch.default_config) == 64


def test_tiny_network_runs_and_supervises_every_stage_and_scale():
    network = _tiny().eval()
    x = torch.rand(2, 3, 16, 24)
    outputs = network.forward_all(x)
    assert [[tuple(o.shape) for o in stage] for stage in outputs] == [[(2, 3, 8, 12), (2, 3, 16, 24)]] * 2
    assert torch.equal(network(x), outputs[-1][-1])


def test_truncated_network_is_the_first_stage_of_the_full_one():
    full = _tiny().eval()
    first = MAXIM(**TINY, keep_stages=1).eval()
    state = full.state_dict()
    assert set(first.state_dict()) < set(state)
    first.load_state_dict({k: state[k] for k in first.state_dict()}, strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(first(x), full.forward_all(x)[0][-1], atol=1e-6)


def test_final_output_only_drops_just_the_coarse_heads():
    full = _tiny().eval()
    final = MAXIM(**TINY, multiscale_outputs=False).eval()
    assert set(full.state_dict()) - set(final.state_dict()) == {
        "stage_1_output_conv_1.conv.weight",
        "stage_1_output_conv_1.conv.bias",
    }
    final.load_state_dict({k: v for k, v in full.state_dict().items() if k in final.state_dict()})
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(final(x), full(x), atol=1e-6)


@pytest.mark.parametrize("bad", [{"features": 0}, {"block_size_hr": [2]}, {"keep_stages": 3}, {"depth": "2"}])
def test_bad_configs_are_refused_before_building(bad):
    with pytest.raises(ValueError):
        MAXIM(**{**TINY, **bad})


def test_block_images_is_the_official_einops_rearrangement():
    x = torch.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
    blocks = block_images(x, (2, 3))
    # n (gh fh) (gw fw) c -> n (gh gw) (fh fw) c, written out with explicit indices
    for g in range(4):
        gh, gw = divmod(g, 2)
        for p in range(6):
            fh, fw = divmod(p, 3)
            assert torch.equal(blocks[:, g, p], x[:, gh * 2 + fh, gw * 3 + fw])
    assert torch.equal(unblock_images(blocks, (2, 2), (2, 3)), x)


def _jax_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """jax.image.scale_and_translate's weights for the triangle kernel (antialiased when shrinking)."""
    scale = n_out / n_in
    kernel_scale = max(1.0 / scale, 1.0)
    sample = (np.arange(n_out) + 0.5) / scale - 0.5
    x = np.abs(sample[None, :] - np.arange(n_in)[:, None]) / kernel_scale
    weights = np.maximum(0.0, 1.0 - x)
    weights /= weights.sum(axis=0, keepdims=True)
    valid = (sample >= -0.5) & (sample <= n_in - 0.5)
    return np.where(valid[None, :], weights, 0.0)  # n_in × n_out


@pytest.mark.parametrize("ratio", [0.25, 0.5, 2, 4])
def test_resize_follows_jax_image_resize_bilinear(ratio):
    up = UpSampleRatio(3, 3, ratio)
    with torch.no_grad():  # make the 1×1 conv the identity to see the resize alone
        up.Conv_0.conv.weight.copy_(torch.eye(3)[:, :, None, None])
        up.Conv_0.conv.bias.zero_()
    x = torch.rand(1, 16, 8, 3, dtype=torch.float64)
    h, w = int(16 * ratio), int(8 * ratio)
    rows, cols = _jax_resize_matrix(16, h), _jax_resize_matrix(8, w)
    expected = np.einsum("ab,nacd,ce->nbed", rows, x.numpy(), cols)
    with torch.no_grad():
        got = up.double()(x)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def test_multiscale_inputs_sample_half_pixel_centres_like_jax_nearest():
    network = _tiny().eval()
    seen = []
    network.stage_0_input_conv_1.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    x = torch.rand(1, 3, 16, 24)
    network(x)
    # jax "nearest": output j samples input floor((j + 0.5) * in / out) = 2j + 1
    assert torch.equal(seen[0], x.permute(0, 2, 3, 1)[:, 1::2, 1::2])


def _official_pad(image: np.ndarray, factor: int) -> tuple[np.ndarray, int, int]:
    """maxim/run_eval.py: make_shape_even, then mod_padding_symmetric (numpy in place of jnp)."""
    h, w = image.shape[:2]
    image = np.pad(image, [(0, h % 2), (0, w % 2), (0, 0)], mode="reflect")
    he, we = image.shape[:2]
    ph = ((he + factor) // factor) * factor - he if he % factor else 0
    pw = ((we + factor) // factor) * factor - we if we % factor else 0
    image = np.pad(image, [(ph // 2, ph // 2), (pw // 2, pw // 2), (0, 0)], mode="reflect")
    nh, nw = image.shape[:2]
    return image, nh // 2 - he // 2, nw // 2 - we // 2


@pytest.mark.parametrize("size", [(64, 64), (65, 70), (100, 129), (37, 64)])
def test_padding_is_the_official_test_procedure(size):
    rule = get_architecture("maxim").size_rule_for(get_architecture("maxim").default_config)
    assert isinstance(rule, SizeRule) and rule.even_first
    image = np.random.default_rng(0).random((*size, 3))
    expected, top, left = _official_pad(image, 64)
    padded, offset = rule.pad(torch.from_numpy(image).permute(2, 0, 1)[None])
    assert offset == (top, left)
    np.testing.assert_array_equal(padded[0].permute(1, 2, 0).numpy(), expected)


def test_restorer_crops_back_to_the_input_size():
    from deblurkit.zoo.restorer import Restorer

    network = _tiny().eval()
    model = Restorer(network, get_architecture("maxim"), TINY)
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        out = model(x)
        padded, (top, left) = model.size_rule.pad(x)
        expected = network(padded)[..., top : top + 13, left : left + 21]
    assert out.shape == x.shape and torch.equal(out, expected)


def test_conv_transpose_matches_tf_conv2d_backprop_input():
    """ConvT_up: out[2m+a, 2n+b, o] = Σ_i x[m, n, i] · filter[a, b, o, i] + bias[o] (TF layout)."""
    from deblurkit.archs.maxim import ConvTransposeUp

    up = randomize(ConvTransposeUp(3, 2))
    tf_filter = up.conv.weight.detach().permute(2, 3, 1, 0).numpy()  # H W out in
    x = np.random.default_rng(1).random((1, 4, 5, 3)).astype(np.float32)
    expected = (
        np.einsum("nmpi,abOi->nmapbO", x, tf_filter).reshape(1, 8, 10, 2) + up.conv.bias.detach().numpy()
    )
    with torch.no_grad():
        got = up(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_layer_norm_and_gelu_follow_flax():
    network = _tiny()
    norm = network.stage_0_encoder_block_0.channel_attention_block_10.LayerNorm
    assert norm.eps == 1e-6
    x = torch.randn(2, 5, 4)
    mean = x.mean(-1, keepdim=True)
    var = (x**2).mean(-1, keepdim=True) - mean**2  # flax's fast variance
    expected = (x - mean) / torch.sqrt(var + 1e-6) * norm.weight + norm.bias
    assert torch.allclose(norm(x), expected, atol=1e-5)
    # flax.linen.gelu defaults to the tanh approximation
    tanh_gelu = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))
    assert torch.allclose(_gelu(x), tanh_gelu, atol=1e-6)
