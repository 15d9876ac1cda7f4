"""Benchmark cases of window_attention on the token maps of CRAMatting's Swin-T backbone at
HD/4K (patch 16, window 7): each stage's shifted block (the one with the most masking; the
eager side makes its masks in the call), and all twelve blocks' attention of one frame (2, 2, 6,
2 blocks, regular and shifted in turn; the eager side makes the masks once per stage, as the
eager model does)."""
import math

import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS
from fastmatte.bench.cases import OpCase
from fastmatte.models.backbones.swin_blocks import window_layout
from fastmatte.reference.window_attention import padded_size, window_masks

WINDOW = 7
PATCH = 16  # CRA's patch embedding: the first token map is 1/16 of the frame
STAGES = [(96, 3, 2), (192, 6, 2), (384, 12, 6), (768, 24, 2)]  # Swin-T: (channels, heads, blocks)


def _stage_inputs(height, width, device, dtype, gen):
    """Per stage: (qkv [1, h, w, 3C], table, window_size, shift, blocks) on the token map of an
    H x W frame (1/16, then halved per stage)."""
    h, w = math.ceil(height / PATCH), math.ceil(width / PATCH)
    stages = []
    for channels, heads, blocks in STAGES:
        (wh, ww), shift = window_layout(h, w, WINDOW)
        qkv = torch.randn(1, h, w, 3 * channels, generator=gen)
        table = torch.randn((2 * WINDOW - 1) ** 2, heads, generator=gen) * 0.02
        stages.append((qkv.to(device, dtype), table.to(device, dtype), [wh, ww], list(shift), blocks))
        h, w = (h + 1) // 2, (w + 1) // 2
    return stages


def window_attention_cases(resolution: str, device, dtype=torch.float32):
    """fastmatte.ops.window_attention vs its eager reference (roll, partition, bias and mask
    tensors, scaled_dot_product_attention), batch 1, no gradient."""
    height, width = RESOLUTIONS[resolution]
    stages = _stage_inputs(height, width, torch.device(device), dtype, torch.Generator().manual_seed(7))
    elt = torch.finfo(dtype).bits // 8

    def min_bytes(qkv):  # qkv read once, the output (a third of its size) written once
        return qkv.numel() * 4 // 3 * elt

    def attend(api, qkv, table, window_size, shift):
        with torch.no_grad():
            return api.window_attention(qkv, table, WINDOW, window_size, shift)

    cases = []
    for i, (qkv, table, window_size, shift, _) in enumerate(stages):
        args = (qkv, table, window_size, shift)
        cases.append(OpCase(f"window_attention stage {i + 1}", lambda args=args: attend(ops, *args),
                            lambda args=args: attend(reference, *args), min_bytes(qkv), 0))

    def backbone(fused):
        # the eager side makes its masks once per stage and shares them, as the eager model does
        for qkv, table, window_size, shift, blocks in stages:
            padded, size = padded_size(*qkv.shape[1:3], window_size), list(qkv.shape[1:3])
            masks = [None if fused else window_masks(padded, WINDOW, window_size, s, size, qkv.device)
                     for s in ([0, 0], shift)]
            for j in range(blocks):
                args = (qkv, table, WINDOW, window_size, shift if j % 2 else [0, 0])
                with torch.no_grad():
                    if fused:
                        ops.window_attention(*args)
                    else:
                        reference.window_attention(*args, masks=masks[j % 2])

    total = sum(min_bytes(qkv) * blocks for qkv, *_, blocks in stages)
    cases.append(OpCase("window_attention x12", lambda: backbone(True), lambda: backbone(False),
                        total, 0))
    return cases
