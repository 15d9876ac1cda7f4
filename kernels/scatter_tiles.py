"""Triton forward of scatter_tiles: each program writes a BLOCK_H x BLOCK_W block of one output
channel, every pixel once, from its refined patch (looked up through tile_map) or the upsampled
coarse alpha, then clamps it. The backward is the compiled op fastmatte::scatter_tiles_backward.
"""
import os

import torch
import triton
import triton.language as tl

from fastmatte.kernels.resample import bilinear_sample, bilinear_tap


def _configs():
    # The interpreter (TRITON_INTERPRET=1, tests on CPU) runs one config: autotuning it would
    # only multiply its cost.
    if os.environ.get("TRITON_INTERPRET") == "1":
        return [triton.Config({"BLOCK_H": 16, "BLOCK_W": 64}, num_warps=4)]
    shapes = [(1, 256, 2), (2, 256, 4), (4, 128, 4), (4, 256, 8), (8, 128, 8), (16, 64, 4)]
    return [triton.Config({"BLOCK_H": bh, "BLOCK_W": bw}, num_warps=nw) for bh, bw, nw in shapes]


@triton.jit
def _nearest_index(dst, in_size, T: tl.constexpr):
    # PyTorch's nearest works in float32 whatever the dtype: floor(dst * float(1/T)).
    scale = tl.full([], 1.0 / T, tl.float32)
    i = tl.floor(dst.to(tl.float32) * scale).to(tl.int32)
    return tl.minimum(i, in_size - 1)


@triton.autotune(configs=_configs(), key=["H", "W", "T", "BILINEAR"])
@triton.jit
def _scatter_tiles_kernel(coarse_ptr, refined_ptr, tile_map_ptr, count_ptr, alpha_ptr,
                          C, h, w, H, W, capacity,
                          T: tl.constexpr, BILINEAR: tl.constexpr, OPMATH: tl.constexpr,
                          BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    # Axis 0 (up to 2**31 - 1 programs) walks (b, c, row block); axis 1 the column blocks.
    row_blocks = tl.cdiv(H, BLOCK_H)
    bc = tl.program_id(0) // row_blocks
    b = bc // C
    c = bc % C
    y = (tl.program_id(0) % row_blocks) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    x = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    inside = (y < H) & (x < W)

    ty = y // T
    tx = x // T
    r = tl.load(tile_map_ptr + (b * h + ty) * w + tx, mask=inside, other=-1)
    n = tl.minimum(tl.load(count_ptr), capacity)  # a bad count on the GPU is clipped, not trusted
    selected = (r >= 0) & (r < n)
    patch_offset = ((r.to(tl.int64) * C + c) * T + (y - ty * T)) * T + (x - tx * T)
    patch = tl.load(refined_ptr + patch_offset, mask=inside & selected, other=0.0).to(OPMATH)

    plane = coarse_ptr + bc.to(tl.int64) * h * w
    coarse_mask = inside & ~selected
    if BILINEAR:
        # F.interpolate's scale in_size / (in_size * T), computed by PyTorch in OPMATH, is 1/T
        # correctly rounded to OPMATH; the constant is built directly in OPMATH.
        scale = tl.full([], 1.0 / T, OPMATH)
        y0, y1, ly = bilinear_tap(y, scale, h, OPMATH)
        x0, x1, lx = bilinear_tap(x, scale, w, OPMATH)
        up = bilinear_sample(plane, y0, y1, ly, x0, x1, lx, w, coarse_mask, OPMATH)
    else:
        src = plane + _nearest_index(y, h, T) * w + _nearest_index(x, w, T)
        up = tl.load(src, mask=coarse_mask, other=0.0).to(OPMATH)

    v = tl.where(selected, patch, up)
    v = tl.where(v < 0.0, 0.0, tl.where(v > 1.0, 1.0, v))  # torch.clamp: NaN passes through
    out = alpha_ptr + (bc.to(tl.int64) * H + y) * W + x
    tl.store(out, v.to(alpha_ptr.dtype.element_ty), mask=inside)


def scatter_tiles_forward(coarse_alpha, refined, count, tile_map, bilinear: bool):
    """Launch on validated inputs (shapes as in fastmatte.ops.scatter_tiles). Returns
    alpha [B, C, h*t, w*t] in coarse_alpha's dtype; math in float32 (float64 for float64)."""
    coarse_alpha, refined, tile_map = (x.contiguous() for x in (coarse_alpha, refined, tile_map))
    B, C, h, w = coarse_alpha.shape
    t = refined.shape[-1]
    H, W = h * t, w * t
    alpha = torch.empty((B, C, H, W), dtype=coarse_alpha.dtype, device=coarse_alpha.device)
    if alpha.numel() == 0:
        return alpha
    opmath = tl.float64 if coarse_alpha.dtype == torch.float64 else tl.float32
    grid = lambda meta: (B * C * triton.cdiv(H, meta["BLOCK_H"]), triton.cdiv(W, meta["BLOCK_W"]))  # noqa: E731
    _scatter_tiles_kernel[grid](coarse_alpha, refined, tile_map, count, alpha,
                                C, h, w, H, W, refined.shape[0],
                                T=t, BILINEAR=bilinear, OPMATH=opmath)
    return alpha
