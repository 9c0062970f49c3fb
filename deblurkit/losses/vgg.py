"""VGG19 perceptual losses, the baseline the MAE losses are compared with.

Features come from VGG19's ``features`` stack with the weights of ``timm/vgg19.tv_in1k``
(torchvision's ImageNet weights; timm and torchvision share the ``features.N`` names), frozen, on
ImageNet-normalised inputs in [0, 1]. Only the layers up to the deepest one used run.

* ``vgg`` (:class:`VGGPerceptualLoss` defaults): the widely used multi-layer loss on relu1_2, relu2_2,
  relu3_4, relu4_4 and relu5_4, layer weights 1/32, 1/16, 1/8, 1/4, 1 (pix2pixHD's weighting), L1.
* ``vgg_pool5``: the official repository's variant: MSE between pool5 features (weight ~1e-4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DeblurkitError, WeightsError
from .encoders import IMAGENET_MEAN, IMAGENET_STD
from .pixel import at_least_fp32, check_pair

__all__ = [
    "CLASSIC_LAYERS",
    "CLASSIC_WEIGHTS",
    "VGG19_LAYERS",
    "VGG19_WIDTHS",
    "VGGFeatures",
    "VGGPerceptualLoss",
    "load_vgg",
    "make_vgg19_features",
]


def _vgg19_layer_names() -> list[str]:
    names: list[str] = []
    for stage, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for conv in range(1, convs + 1):
            names += [f"conv{stage}_{conv}", f"relu{stage}_{conv}"]
        names.append(f"pool{stage}")
    return names


VGG19_LAYERS: tuple[str, ...] = tuple(_vgg19_layer_names())  # index i is ``features[i]``
VGG19_WIDTHS = (64, 128, 256, 512, 512)


def make_vgg19_features(widths: Sequence[int] = VGG19_WIDTHS) -> nn.Sequential:
    """VGG19's ``features`` stack (timm/torchvision layout and names, no classifier), randomly
    initialised as torchvision does (Kaiming normal, fan-out). ``widths``: channels of the 5 stages."""
    layers: list[nn.Module] = []
    channels = 3
    for stage, convs in enumerate((2, 2, 4, 4, 4)):
        for _ in range(convs):
            conv = nn.Conv2d(channels, widths[stage], kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=False)]
            channels = widths[stage]
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


CLASSIC_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")
CLASSIC_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


class VGGFeatures(nn.Module):
    """A frozen VGG19 feature stack returning named intermediate outputs."""

    def __init__(
        self,
        features: nn.Sequential,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if len(features) != len(VGG19_LAYERS):
            raise DeblurkitError(
                f"expected VGG19 features with {len(VGG19_LAYERS)} layers, got {len(features)}"
            )
        for layer in features:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False  # a stored conv output must not be overwritten
        self.features = features
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def random(cls, seed: int | None = 0, widths: Sequence[int] = VGG19_WIDTHS) -> VGGFeatures:
        """VGG19 features with random weights (benchmarks and tests); ``widths`` can shrink it."""
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            features = make_vgg19_features(widths)
        return cls(features)

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always in eval mode."""
        return super().train(False)

    def forward(self, images: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """The outputs of ``layers`` (names from :data:`VGG19_LAYERS`) for images in [0, 1]."""
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown:
            raise DeblurkitError(f"unknown VGG19 layer {unknown[0]!r}; layers are conv1_1 .. pool5")
        wanted = {VGG19_LAYERS.index(name): name for name in layers}
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        out: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features[: max(wanted) + 1]):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


def load_vgg(
    ref: str = "vgg19",
    *,
    weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> VGGFeatures:
    """The frozen VGG19 features of zoo entry ``ref`` (``timm/vgg19.tv_in1k``), or of a local file
    (``weights=``, timm/torchvision names ``features.N.weight``); only ``features.*`` is read."""
    from ..inference.device import resolve_device
    from ..zoo.hub import fetch_weights
    from ..zoo.weights import load_state_dict

    config: dict[str, Any] = {}
    if weights is None:
        from ..zoo.cards import get_entry

        entry = get_entry(ref)
        if entry.kind != "encoder" or entry.weights is None:
            raise WeightsError(f"{ref!r} is not an encoder entry with published weights")
        config = dict(entry.config)
        if config.get("timm_model", "vgg19") != "vgg19":
            raise DeblurkitError(f"{ref!r} is not a VGG19 (timm_model {config['timm_model']!r})")
        state = load_state_dict(fetch_weights(entry.weights, name=ref))
    elif isinstance(weights, Mapping):
        state = dict(weights)
    else:
        state = load_state_dict(Path(weights))
    features = make_vgg19_features()
    own = features.state_dict()
    feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    missing = [k for k in own if k not in feats]
    bad = [k for k in own if k in feats and feats[k].shape != own[k].shape]
    if missing or bad:
        first = (missing or bad)[0]
        raise WeightsError(
            f"the VGG19 weights do not fit: features.{first} is missing or has the wrong shape"
        )
    features.load_state_dict({k: feats[k] for k in own})
    vgg = VGGFeatures(features, mean=config.get("mean", IMAGENET_MEAN), std=config.get("std", IMAGENET_STD))
    return vgg.to(resolve_device(device))


class VGGPerceptualLoss(nn.Module):
    """``Σ_i w_i · criterion(φ_i(Î), φ_i(I))`` over VGG19 layers; the target branch under no_grad."""

    def __init__(
        self,
        vgg: VGGFeatures,
        layers: Sequence[str] = CLASSIC_LAYERS,
        layer_weights: Sequence[float] | None = CLASSIC_WEIGHTS,
        criterion: str = "l1",
    ) -> None:
        super().__init__()
        self.vgg = vgg
        self.layers = tuple(layers)
        if not self.layers:
            raise DeblurkitError("no VGG layers chosen")
        unknown = [name for name in self.layers if name not in VGG19_LAYERS]
        if unknown:
            raise DeblurkitError(f"unknown VGG19 layer {unknown[0]!r}; layers are conv1_1 .. pool5")
        weights = tuple(layer_weights) if layer_weights is not None else (1.0,) * len(self.layers)
        if len(weights) != len(self.layers):
            raise DeblurkitError(f"{len(self.layers)} VGG layers but {len(weights)} layer weights")
        self.layer_weights = weights
        if criterion not in ("l1", "mse"):
            raise DeblurkitError(f"VGG criterion must be 'l1' or 'mse', got {criterion!r}")
        self.criterion = criterion

    def forward(self, restored: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_pair(restored, target)
        with torch.no_grad():
            feats_t = self.vgg(target.detach(), self.layers)
        feats_r = self.vgg(restored, self.layers)
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        total = restored.new_zeros((), dtype=torch.float32)
        for name, weight in zip(self.layers, self.layer_weights, strict=True):
            total = total + weight * distance(at_least_fp32(feats_r[name]), at_least_fp32(feats_t[name]))
        return total

    def extra_repr(self) -> str:
        return f"layers={self.layers}, layer_weights={self.layer_weights}, criterion={self.criterion!r}"
