"""Triton kernel of guided_upsample. Each program takes a block of BLOCK_W pixels of one output
row: it samples the 8 low-resolution coefficient planes (A's 4, b's 4) bilinearly at those pixels,
reads the frame's 3 channels there once, and writes foreground and alpha once."""
import os

import torch
import triton
import triton.language as tl

from fastmatte.kernels.resample import bilinear_sample, bilinear_tap, source_scale


def _configs():
    # One config under the interpreter (TRITON_INTERPRET=1, tests on CPU): see scatter_tiles.
    if os.environ.get("TRITON_INTERPRET") == "1":
        return [triton.Config({"BLOCK_W": 64}, num_warps=4)]
    return [triton.Config({"BLOCK_W": bw}, num_warps=nw)
            for bw, nw in ((128, 1), (256, 2), (512, 4), (1024, 4), (1024, 8))]


@triton.jit
def _clamp01(v):
    """torch.clamp(v, 0, 1): a NaN passes through."""
    return tl.where(v < 0.0, 0.0, tl.where(v > 1.0, 1.0, v))


@triton.autotune(configs=_configs(), key=["h", "w", "H", "W"])
@triton.jit
def _guided_upsample_kernel(image_ptr, a_ptr, b_ptr, fg_ptr, alpha_ptr, h, w, H, W,
                            OPMATH: tl.constexpr, BLOCK_W: tl.constexpr):
    # Axis 0 walks the B * H output rows, axis 1 the column blocks.
    row = tl.program_id(0)
    n = row // H
    y = row % H
    x = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
    inside = x < W
    y0, y1, ly = bilinear_tap(y, source_scale(h, H, OPMATH), h, OPMATH)
    x0, x1, lx = bilinear_tap(x, source_scale(w, W, OPMATH), w, OPMATH)

    low = h * w
    a_planes = a_ptr + n.to(tl.int64) * 4 * low
    b_planes = b_ptr + n.to(tl.int64) * 4 * low
    plane = tl.cast(H, tl.int64) * W  # tl.cast: a size of 1 arrives as a plain int
    pixel = n.to(tl.int64) * 3 * plane + y.to(tl.int64) * W + x
    r = tl.load(image_ptr + pixel, mask=inside, other=0.0).to(OPMATH)
    g = tl.load(image_ptr + pixel + plane, mask=inside, other=0.0).to(OPMATH)
    b = tl.load(image_ptr + pixel + 2 * plane, mask=inside, other=0.0).to(OPMATH)
    mean = (r + g + b) / 3.0
    out_ty = fg_ptr.dtype.element_ty
    for c in tl.static_range(4):
        coef_a = bilinear_sample(a_planes + c * low, y0, y1, ly, x0, x1, lx, w, inside, OPMATH)
        coef_b = bilinear_sample(b_planes + c * low, y0, y1, ly, x0, x1, lx, w, inside, OPMATH)
        if c == 0:
            tl.store(fg_ptr + pixel, _clamp01(coef_a * r + coef_b + r).to(out_ty), mask=inside)
        elif c == 1:
            tl.store(fg_ptr + pixel + plane, _clamp01(coef_a * g + coef_b + g).to(out_ty), mask=inside)
        elif c == 2:
            tl.store(fg_ptr + pixel + 2 * plane, _clamp01(coef_a * b + coef_b + b).to(out_ty),
                     mask=inside)
        else:
            alpha = _clamp01(coef_a * mean + coef_b)
            tl.store(alpha_ptr + n.to(tl.int64) * plane + y.to(tl.int64) * W + x, alpha.to(out_ty),
                     mask=inside)


def guided_upsample_forward(image, coef_a, coef_b):
    """(foreground [B, 3, H, W], alpha [B, 1, H, W]) from validated inputs (see
    fastmatte.ops.guided_upsample)."""
    image, coef_a, coef_b = image.contiguous(), coef_a.contiguous(), coef_b.contiguous()
    batch, _, H, W = image.shape
    h, w = coef_a.shape[-2:]
    foreground = image.new_empty(batch, 3, H, W)
    alpha = image.new_empty(batch, 1, H, W)
    if batch == 0:
        return foreground, alpha
    opmath = tl.float64 if image.dtype == torch.float64 else tl.float32
    grid = lambda meta: (batch * H, triton.cdiv(W, meta["BLOCK_W"]))  # noqa: E731
    _guided_upsample_kernel[grid](image, coef_a, coef_b, foreground, alpha, h, w, H, W, OPMATH=opmath)
    return foreground, alpha
