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
