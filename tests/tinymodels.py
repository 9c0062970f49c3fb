"""Configurations of the tiny networks tests build (shared, so tests agree on them)."""

TINY_VIT = {
    "timm_model": "vit_base_patch16_224",
    "img_size": 64,
    "patch_size": 16,
    "embed_dim": 48,
    "depth": 6,
    "num_heads": 3,
    "num_classes": 0,
}
"""A ViT the size of the golden MAE encoder (timm names): 64² input, 16 patches, width 48, 6 blocks."""

TINY_NAFNET = {
    "img_channel": 3,
    "width": 8,
    "middle_blk_num": 1,
    "enc_blk_nums": [1, 1],
    "dec_blk_nums": [1, 1],
}
"""A NAFNet small enough to run on a few small images in milliseconds."""

TINY_MAXIM = {
    "features": 4,
    "depth": 2,
    "num_stages": 2,
    "num_groups": 1,
    "num_bottleneck_blocks": 1,
    "num_supervision_scales": 2,
    "block_size_hr": [2, 2],
    "block_size_lr": [2, 2],
    "grid_size_hr": [2, 2],
    "high_res_stages": 1,
}
"""A two-stage MAXIM with 2×2 blocks and grids: every part of the architecture, in milliseconds."""
