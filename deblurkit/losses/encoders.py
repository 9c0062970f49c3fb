"""Frozen transformer encoders for perceptual losses (the φ of the MAE losses).

:func:`load_encoder` builds a timm ``VisionTransformer`` from a zoo encoder entry (``mae-vit-base`` by
default), a timm model name or an explicit config, loads its weights (fetched from the Hub at the
zoo's pinned revision and verified, or read from a local file with ``weights=``) and wraps it in a
:class:`ViTEncoder`:

* frozen (no parameter gradients, always in eval mode) but differentiable with respect to its input;
* any input whose sides are multiples of the patch size: the checkpoint's position embedding is resized
  bicubically to the input's patch grid (``align_corners=False``, no antialiasing, as the official
  MAE code's ``interpolate_pos_embed``), the prefix (CLS) positions kept as they are;
* ImageNet normalisation inside: images go in as RGB in [0, 1];
* token sampling before the blocks: keep ``int(N·(1−r))`` of the N patch tokens (per-sample random
  order, as the official code's ``random_masking``), or exactly the tokens given in ``ids``; the CLS
  token (``cls_token + pos_embed[0]``) is prepended and only the kept tokens run through the blocks;
* only as many blocks run as the deepest one requested; their raw outputs (no final norm, CLS
  included) are returned.

Attention is timm's own, so it uses ``F.scaled_dot_product_attention`` (fused kernels on CUDA) unless
``TIMM_FUSED_ATTN=0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import DeblurkitError, WeightsError
from ..zoo.cards import get_entry

__all__ = [
    "DEFAULT_BLOCKS",
    "DEFAULT_ENCODER",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ViTEncoder",
    "keep_count",
    "load_encoder",
    "resize_pos_embed",
    "sample_token_ids",
]

DEFAULT_ENCODER = "mae-vit-base"
DEFAULT_BLOCKS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Keys of an encoder config that are not timm constructor arguments.
_NON_TIMM_KEYS = ("timm_model", "mean", "std")


def keep_count(num_patches: int, ratio: float) -> int:
    """How many of ``num_patches`` tokens a sampling ratio ``ratio`` keeps: ``int(N·(1−r))``, as the
    official code (at least one)."""
    if not 0.0 <= ratio < 1.0:
        raise DeblurkitError(f"token sampling ratio must be in [0, 1), got {ratio}")
    return max(1, int(num_patches * (1 - ratio)))


def sample_token_ids(
    batch: int,
    num_patches: int,
    ratio: float,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random kept-token indices, B × ``keep_count(N, r)``, a fresh per-sample random order.

    As the official ``random_masking``: argsort of uniform noise, the first ``keep`` positions; with
    ``ratio=0`` every token is kept, in a random order.
    """
    keep = keep_count(num_patches, ratio)
    noise = torch.rand(batch, num_patches, device=device, generator=generator)
    return noise.argsort(dim=1)[:, :keep]


def resize_pos_embed(
    pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix: int
) -> torch.Tensor:
    """Resize a 1 × (P + H·W) × C position embedding to a new patch grid; the P prefix rows are kept.

    Bicubic, ``align_corners=False``, no antialiasing: what the official MAE ``interpolate_pos_embed``
    does (timm's ``resample_abs_pos_embed`` antialiases, which changes the bicubic kernel).
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    channels = grid.shape[-1]
    work_dtype = torch.promote_types(grid.dtype, torch.float32)  # at least fp32; fp64 stays fp64
    grid = grid.to(work_dtype).reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], channels).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def _normalise_blocks(blocks: int | Iterable[int], depth: int) -> tuple[int, ...]:
    chosen = (blocks,) if isinstance(blocks, int) else tuple(int(b) for b in blocks)
    if not chosen:
        raise DeblurkitError("no encoder blocks requested")
    bad = [b for b in chosen if not 1 <= b <= depth]
    if bad:
        raise DeblurkitError(f"encoder blocks must be in 1..{depth} (1-based), got {bad[0]}")
    return chosen


class ViTEncoder(nn.Module):
    """A frozen timm ViT that returns the raw outputs of chosen blocks for (sampled) patch tokens.

    ``forward(images, blocks=(1..6), ids=None, ratio=0.0)`` → a list (in the order of ``blocks``) of
    B × (P + K) × C tensors, P prefix tokens (the CLS token) first, then the K kept patch tokens in the
    order of ``ids`` (row-major patch indices, B × K). With neither ``ids`` nor ``ratio``, all patch
    tokens in raster order.
    """

    def __init__(
        self,
        vit: nn.Module,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        name: str = "",
    ) -> None:
        super().__init__()
        proj = getattr(getattr(vit, "patch_embed", None), "proj", None)
        if not isinstance(proj, nn.Conv2d) or not hasattr(vit, "blocks"):
            raise DeblurkitError(
                f"encoder {name or type(vit).__name__} is not a plain timm VisionTransformer"
            )
        if getattr(vit, "pos_embed", None) is None:
            raise DeblurkitError("encoder has no absolute position embedding (only such ViTs are supported)")
        if proj.kernel_size != proj.stride or proj.padding != (0, 0):
            raise DeblurkitError("encoder patch embedding must be non-overlapping (kernel == stride)")
        self.vit = vit
        self.name = name
        self.patch_size: tuple[int, int] = tuple(proj.kernel_size)  # type: ignore[assignment]
        self.embed_dim = int(proj.out_channels)
        if len(mean) != proj.in_channels or len(std) != proj.in_channels:
            raise DeblurkitError(
                f"encoder normalisation needs {proj.in_channels} means and stds, "
                f"got {len(mean)} and {len(std)}"
            )
        self.mean: tuple[float, ...] = tuple(float(m) for m in mean)
        self.std: tuple[float, ...] = tuple(float(s) for s in std)
        self._stats_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._pos_cache: dict[tuple, torch.Tensor] = {}
        self.requires_grad_(False)
        self.eval()

    # -- properties -------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of transformer blocks available."""
        return len(self.vit.blocks)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens (CLS, registers)."""
        return int(getattr(self.vit, "num_prefix_tokens", 1))

    @property
    def _embeds_prefix(self) -> bool:
        """True when ``pos_embed`` has rows for the prefix tokens (original ViT/MAE/DINO)."""
        return not getattr(self.vit, "no_embed_class", False)

    @property
    def pos_grid(self) -> tuple[int, int]:
        """The patch grid the checkpoint's position embedding was made for."""
        rows = self.vit.pos_embed.shape[1] - (self.num_prefix_tokens if self._embeds_prefix else 0)
        grid = tuple(getattr(self.vit.patch_embed, "grid_size", ()) or ())
        if len(grid) == 2 and grid[0] * grid[1] == rows:
            return grid  # type: ignore[return-value]
        side = math.isqrt(rows)
        if side * side != rows:
            raise DeblurkitError(f"position embedding with {rows} rows is not a square grid")
        return side, side

    def train(self, mode: bool = True) -> ViTEncoder:
        """The encoder stays in eval mode whatever the parent module does."""
        return super().train(False)

    # -- geometry -----------------------------------------------------------------------------------
    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid of an input of that size; a one-line error when it is not a multiple."""
        ph, pw = self.patch_size
        if height % ph or width % pw or height < ph or width < pw:
            raise DeblurkitError(
                f"encoder input {height}×{width} is not a multiple of the patch size {ph}×{pw} "
                f"(crop or pad the images to a multiple of {ph})"
            )
        return height // ph, width // pw

    def num_patches(self, height: int, width: int) -> int:
        """Number of patch tokens for an input of that size."""
        gh, gw = self.grid_size(height, width)
        return gh * gw

    def sample_ids(
        self, images: torch.Tensor, ratio: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Fresh random kept-token indices for a batch of images (B × ``int(N·(1−r))``)."""
        n = self.num_patches(*images.shape[-2:])
        return sample_token_ids(images.shape[0], n, ratio, device=images.device, generator=generator)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``(images − mean) / std`` with the statistics made in the images' dtype from the exact
        decimal values (as torchvision's ``normalize``), cached per device and dtype."""
        key = (images.device, images.dtype)
        stats = self._stats_cache.get(key)
        if stats is None:
            mean, std = (
                torch.tensor(v, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
                for v in (self.mean, self.std)
            )
            stats = self._stats_cache[key] = (mean, std)
        return (images - stats[0]) / stats[1]

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """The position embedding for a patch grid (cached per grid, device and dtype)."""
        pos = self.vit.pos_embed
        key = (grid, pos.device, pos.dtype, pos._version)
        cached = self._pos_cache.get(key)
        if cached is None:
            prefix = self.num_prefix_tokens if self._embeds_prefix else 0
            with torch.no_grad():
                cached = resize_pos_embed(pos.detach(), self.pos_grid, grid, prefix)
            self._pos_cache = {key: cached} if len(self._pos_cache) > 8 else {**self._pos_cache, key: cached}
        return cached

    # -- forward ------------------------------------------------------------------------------------
    def tokens(
        self, images: torch.Tensor, *, ids: torch.Tensor | None = None, ratio: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalise, patch-embed, add positions, sample and prepend the prefix tokens.

        Returns the B × (P + K) × C token sequence that enters the first block, and the ids used.
        """
        if images.ndim != 4 or images.shape[1] != len(self.mean):
            raise DeblurkitError(f"encoder input must be B×{len(self.mean)}×H×W, got {tuple(images.shape)}")
        grid = self.grid_size(*images.shape[-2:])
        vit = self.vit
        x = vit.patch_embed.proj(self.normalise(images)).flatten(2).transpose(1, 2)  # B × N × C, raster
        x = vit.patch_embed.norm(x)
        pos = self.pos_embed_for(grid).to(x.dtype)
        n_prefix = self.num_prefix_tokens if self._embeds_prefix else 0
        x = x + pos[:, n_prefix:]
        if ids is None and ratio > 0:
            ids = sample_token_ids(x.shape[0], x.shape[1], ratio, device=x.device)
        if ids is not None:
            ids = ids.to(device=x.device, dtype=torch.long)
            if ids.ndim != 2 or ids.shape[0] != x.shape[0]:
                raise DeblurkitError(f"token ids must be B×K with B={x.shape[0]}, got {tuple(ids.shape)}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= x.shape[1]):
                raise DeblurkitError(f"token ids must index the {x.shape[1]} patches of a {grid} grid")
            x = x.gather(1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        prefix = []
        if getattr(vit, "cls_token", None) is not None:
            cls = vit.cls_token.to(x.dtype)
            if n_prefix:
                cls = cls + pos[:, :1]
            prefix.append(cls.expand(x.shape[0], -1, -1))
        if getattr(vit, "reg_token", None) is not None:
            reg = vit.reg_token.to(x.dtype)
            if n_prefix:
                reg = reg + pos[:, 1 : 1 + reg.shape[1]]
            prefix.append(reg.expand(x.shape[0], -1, -1))
        if prefix:
            x = torch.cat([*prefix, x], dim=1)
        x = vit.norm_pre(x) if hasattr(vit, "norm_pre") else x
        return x, ids

    def forward(
        self,
        images: torch.Tensor,
        *,
        blocks: int | Iterable[int] = DEFAULT_BLOCKS,
        ids: torch.Tensor | None = None,
        ratio: float = 0.0,
    ) -> list[torch.Tensor]:
        """Outputs of the requested blocks (1-based), in the order asked, for images in [0, 1]."""
        chosen = _normalise_blocks(blocks, self.depth)
        x, _ = self.tokens(images, ids=ids, ratio=ratio)
        wanted = set(chosen)
        outputs: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.vit.blocks[: max(chosen)], start=1):
            x = block(x)
            if index in wanted:
                outputs[index] = x
        return [outputs[b] for b in chosen]

    def features_pair(
        self,
        restored: torch.Tensor,
        target: torch.Tensor,
        *,
        blocks: int | Iterable[int] = DEFAULT_BLOCKS,
        ratio: float = 0.5,
        ids: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Features of a restored and a target batch at the same kept tokens.

        The target branch runs under ``torch.no_grad``; the restored branch keeps its graph. ``ids``
        (B × K) overrides the sampling; otherwise a fresh random draw with ratio ``ratio`` (a random
        order even at ``ratio=0``, as the official code — it matters to the batch-pooled global loss).
        Returns (restored features, target features, ids).
        """
        if restored.shape != target.shape:
            raise DeblurkitError(
                "restored and target batches differ in shape: "
                f"{tuple(restored.shape)} vs {tuple(target.shape)}"
            )
        if ids is None:
            ids = self.sample_ids(restored, ratio)
        with torch.no_grad():
            target_feats = self(target.detach(), blocks=blocks, ids=ids)
        restored_feats = self(restored, blocks=blocks, ids=ids)
        return restored_feats, target_feats, ids

    def extra_repr(self) -> str:
        return f"name={self.name!r}, patch={self.patch_size}, dim={self.embed_dim}, depth={self.depth}"


# -- loading ----------------------------------------------------------------------------------------
def _resolve_config(ref: str | Mapping[str, Any], weights: Any) -> tuple[str, dict[str, Any], Any]:
    """(display name, encoder config, weights source or None) for a reference."""
    if isinstance(ref, Mapping):
        return str(ref.get("timm_model", "encoder")), dict(ref), None
    if not isinstance(ref, str) or not ref:
        raise DeblurkitError(
            f"encoder reference must be a zoo name, a timm model name or a config, got {ref!r}"
        )
    if weights is None and ref.endswith((".safetensors", ".pth", ".pt")) and Path(ref).is_file():
        raise DeblurkitError(f"{ref} is a weights file: pass it as weights= (and the encoder name as ref)")
    from ..zoo.cards import all_entries

    if ref not in all_entries():
        import timm

        if timm.is_model(ref):
            return ref, {"timm_model": ref, "num_classes": 0}, None
    entry = get_entry(ref)
    if entry.kind != "encoder":
        raise DeblurkitError(f"{ref!r} is a {entry.kind} model, not an encoder")
    if entry.architecture != "timm":
        raise DeblurkitError(
            f"encoder {ref!r} has architecture {entry.architecture!r}; only 'timm' is supported"
        )
    return ref, dict(entry.config), entry.weights


def _build_timm(name: str, config: Mapping[str, Any]) -> nn.Module:
    import timm

    model_name = config.get("timm_model")
    if not model_name:
        raise DeblurkitError(f"encoder {name!r}: its config names no timm_model")
    kwargs = {k: v for k, v in config.items() if k not in _NON_TIMM_KEYS}
    try:
        return timm.create_model(str(model_name), pretrained=False, **kwargs)
    except (RuntimeError, TypeError, ValueError) as err:
        raise DeblurkitError(f"encoder {name!r}: timm cannot build {model_name!r}: {err}") from None


def _load_weights(
    module: nn.Module, state: Mapping[str, torch.Tensor], what: str, prefixes: tuple[str, ...]
) -> None:
    """Copy the tensors of ``state`` whose names start with one of ``prefixes`` into ``module``.

    Every parameter/buffer of ``module`` under those prefixes must be present with the same shape,
    except ``pos_embed``, which is adopted whatever its grid (resized per input later). Other names
    (final norm, classifier head) are ignored.
    """
    own = module.state_dict()
    needed = [k for k in own if k.startswith(prefixes)]
    missing = [k for k in needed if k not in state]
    if missing:
        raise WeightsError(
            f"{what} does not fit the encoder: {len(missing)} tensors missing (first: {missing[0]})"
        )
    for key in needed:
        src = state[key]
        if key == "pos_embed" and src.shape != own[key].shape:
            if src.ndim != 3 or src.shape[-1] != own[key].shape[-1]:
                raise WeightsError(
                    f"{what}: pos_embed has shape {tuple(src.shape)}, expected 1×N×{own[key].shape[-1]}"
                )
            module.pos_embed = nn.Parameter(src.detach().clone().to(own[key].dtype), requires_grad=False)
            continue
        if src.shape != own[key].shape:
            raise WeightsError(
                f"{what} does not fit the encoder: {key} has shape {tuple(src.shape)}, "
                f"expected {tuple(own[key].shape)}"
            )
    loadable = {k: state[k] for k in needed if k != "pos_embed" or state[k].shape == own[k].shape}
    module.load_state_dict(loadable, strict=False)


def _state_from(weights: Any, source: Any, name: str) -> tuple[dict[str, torch.Tensor], str]:
    from ..zoo.hub import fetch_weights
    from ..zoo.weights import load_state_dict

    if weights is not None:
        if isinstance(weights, Mapping):
            return dict(weights), "the given state dict"
        path = Path(weights)
        return load_state_dict(path), str(path)
    if source is None:
        raise WeightsError(
            f"encoder {name!r} has no published weights: give a local copy (weights=FILE in Python, "
            "--encoder-weights FILE in train and finetune)"
        )
    path = fetch_weights(source, name=name)
    return load_state_dict(path), f"the weights of {name!r}"


def load_encoder(
    ref: str | Mapping[str, Any] = DEFAULT_ENCODER,
    *,
    weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    depth: int | None = None,
) -> ViTEncoder:
    """The frozen encoder ``ref``: a zoo encoder entry (``mae-vit-base``, ``mae-vit-large``,
    ``mae-vit-huge``, ``dino-vit-base``, ``vit-base-supervised``), a timm model name, or a config dict
    (``{"timm_model": "vit_base_patch16_224", "embed_dim": ..., "mean": [...], "std": [...]}``).

    Weights come from the Hub at the zoo's pinned revision (verified by :mod:`deblurkit.zoo.hub`), or,
    with ``weights=``, from a local safetensors (or plain-tensor ``.pth``) file in timm's ViT naming
    (the official MAE encoder checkpoint uses the same names), or a state dict; the Hub is then not
    touched. ``depth`` keeps only the first ``depth`` blocks (saves memory when only early blocks are
    used). Normalisation is ImageNet mean/std unless the config gives ``mean``/``std``.
    """
    from ..inference.device import resolve_device

    name, config, source = _resolve_config(ref, weights)
    vit = _build_timm(name, config)
    state, what = _state_from(weights, source, name)
    used = ("cls_token", "reg_token", "pos_embed", "patch_embed.", "norm_pre.", "blocks.")
    _load_weights(vit, state, what, used)
    if depth is not None:
        if not 1 <= depth <= len(vit.blocks):
            raise DeblurkitError(f"encoder depth must be in 1..{len(vit.blocks)}, got {depth}")
        vit.blocks = vit.blocks[:depth]
    encoder = ViTEncoder(
        vit,
        mean=config.get("mean", IMAGENET_MEAN),
        std=config.get("std", IMAGENET_STD),
        name=name,
    )
    return encoder.to(resolve_device(device))
