"""Triton kernels of trimap_fusion. Each program classifies a BLOCK_H x BLOCK_W block of output
pixels from the low-res semantic scores, resampled on the fly as ATen's CUDA F.interpolate does
(then rounded to semantic's dtype, as the tensor it returns is), and writes that block once:
alpha in the forward, the detail gradient in the backward. Neither reads the full-resolution
tensor outside the unknown region."""
import os

import torch
import triton
import triton.language as tl

from fastmatte.kernels.resample import bilinear_sample, bilinear_tap, source_scale


def _configs():
    # One config under the interpreter (TRITON_INTERPRET=1, tests on CPU): see scatter_tiles.
    if os.environ.get("TRITON_INTERPRET") == "1":
        return [triton.Config({"BLOCK_H": 16, "BLOCK_W": 64}, num_warps=4)]
    shapes = [(1, 256, 2), (2, 256, 4), (4, 128, 4), (4, 256, 8), (8, 128, 8)]
    return [triton.Config({"BLOCK_H": bh, "BLOCK_W": bw}, num_warps=nw) for bh, bw, nw in shapes]


@triton.jit
def _class_score(plane, y, x, y0, y1, ly, x0, x1, lx, w, mask, IDENTITY: tl.constexpr,
                 OPMATH: tl.constexpr):
    """One class's score at full-resolution pixels (y, x): read directly when the semantic is
    already full resolution, else resampled and rounded to the semantic's dtype."""
    if IDENTITY:
        return tl.load(plane + y * w + x, mask=mask, other=0.0).to(OPMATH)
    else:
        up = bilinear_sample(plane, y0, y1, ly, x0, x1, lx, w, mask, OPMATH)
        return up.to(plane.dtype.element_ty).to(OPMATH)


@triton.autotune(configs=_configs(), key=["H", "W", "IDENTITY"])
@triton.jit
def _trimap_fusion_kernel(semantic_ptr, source_ptr, out_ptr, h, w, H, W, fg_class, unknown_class,
                          IDENTITY: tl.constexpr, OPMATH: tl.constexpr,
                          BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    # Axis 0 walks (plane, row block), axis 1 the column blocks. source is detail in the forward
    # (fg_class >= 0) and grad_alpha in the backward (fg_class = -1: zero outside unknown).
    row_blocks = tl.cdiv(H, BLOCK_H)
    plane = tl.program_id(0) // row_blocks
    y = (tl.program_id(0) % row_blocks) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    x = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    inside = (y < H) & (x < W)

    scores = semantic_ptr + plane.to(tl.int64) * 3 * h * w
    if IDENTITY:
        y0, y1, ly, x0, x1, lx = y, y, 0.0, x, x, 0.0  # unused
    else:
        y0, y1, ly = bilinear_tap(y, source_scale(h, H, OPMATH), h, OPMATH)
        x0, x1, lx = bilinear_tap(x, source_scale(w, W, OPMATH), w, OPMATH)
    s0 = _class_score(scores, y, x, y0, y1, ly, x0, x1, lx, w, inside, IDENTITY, OPMATH)
    s1 = _class_score(scores + h * w, y, x, y0, y1, ly, x0, x1, lx, w, inside, IDENTITY, OPMATH)
    s2 = _class_score(scores + 2 * h * w, y, x, y0, y1, ly, x0, x1, lx, w, inside, IDENTITY, OPMATH)
    # torch.argmax: the first maximum wins, and the first NaN beats everything.
    take1 = (s1 > s0) | ((s1 != s1) & (s0 == s0))
    best = tl.where(take1, s1, s0)
    take2 = (s2 > best) | ((s2 != s2) & (best == best))
    index = tl.where(take2, 2, take1.to(tl.int32))

    offset = (plane.to(tl.int64) * H + y) * W + x
    unknown = index == unknown_class
    v = tl.load(source_ptr + offset, mask=inside & unknown, other=0.0)
    v = tl.where(unknown, v, tl.where(index == fg_class, 1.0, 0.0).to(v.dtype))
    tl.store(out_ptr + offset, v, mask=inside)


def _launch(semantic, source, fg_class, unknown_class):
    semantic, source = semantic.contiguous(), source.contiguous()
    h, w = semantic.shape[-2:]
    planes, _, H, W = source.shape
    out = torch.empty_like(source)
    if out.numel() == 0:
        return out
    opmath = tl.float64 if semantic.dtype == torch.float64 else tl.float32
    grid = lambda meta: (planes * triton.cdiv(H, meta["BLOCK_H"]), triton.cdiv(W, meta["BLOCK_W"]))  # noqa: E731
    _trimap_fusion_kernel[grid](semantic, source, out, h, w, H, W, fg_class, unknown_class,
                                IDENTITY=(h, w) == (H, W), OPMATH=opmath)
    return out


def trimap_fusion_forward(semantic, detail, fg_class: int, unknown_class: int):
    """alpha [B, 1, H, W] in detail's dtype from validated semantic [B, 3, h, w] and detail
    [B, 1, H, W] (see fastmatte.ops.trimap_fusion)."""
    return _launch(semantic, detail, fg_class, unknown_class)


def trimap_fusion_backward(grad_alpha, semantic, unknown_class: int):
    """grad_detail [B, 1, H, W]: grad_alpha where the class is unknown_class, else 0."""
    return _launch(semantic, grad_alpha, -1, unknown_class)
