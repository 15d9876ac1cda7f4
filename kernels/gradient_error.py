"""Triton gradient_error (DIM's Grad): the separable form of gaussgradient's 9x9 kernels in two
passes. The horizontal pass stretches both mattes (mat2gray) and writes their rows filtered
with the derivative and the smoothing taps (4 planes); the vertical pass finishes gx and gy,
takes the magnitudes' squared difference and adds each block's masked sum (in float64) to its
image's total with one atomic add. Replicate border by clamping indices; 'conv' orientation.
uint8 mattes are read as they are: the horizontal pass looks each sample up in its image's
table of the 256 stretched values (made by torch from v / 255 as the float path stretches it).
"""
import math

import torch
import triton
import triton.language as tl

_RADIUS = 4  # gaussgradient's half size at sigma = 1.4
RADIUS = tl.constexpr(_RADIUS)
TAPS = tl.constexpr(2 * _RADIUS + 1)
BLOCK_H = tl.constexpr(16)
BLOCK_W = tl.constexpr(64)


def gaussgradient_taps(dtype, device) -> torch.Tensor:
    """[2, 9]: the unit-norm smoothing (row 0) and derivative (row 1) factors of gaussgradient's
    x-kernel hx = smooth (x) derivative, computed in float64 and rounded to dtype."""
    sigma = 1.4
    u = [i - _RADIUS for i in range(2 * _RADIUS + 1)]
    gauss = [math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi)) for x in u]
    deriv = [-x * g / (sigma * sigma) for x, g in zip(u, gauss)]
    rows = [[v / math.sqrt(sum(w * w for w in f)) for v in f] for f in (gauss, deriv)]
    return torch.tensor(rows, dtype=torch.float64).to(device=device, dtype=dtype)


@triton.jit
def _tile(H, W):
    rows = tl.cdiv(H, BLOCK_H)
    b = tl.program_id(0) // rows
    y = (tl.program_id(0) % rows) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    x = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    return b, y, x


@triton.jit
def _filter_rows(src, lo_ptr, hi_ptr, table_ptr, taps_ptr, b, y, x, inside, H, W):
    """One matte stretched (mat2gray) and filtered along its rows: (derivative, smoothing).
    A uint8 matte's samples index its image's table (table_ptr + 256 b) of stretched values;
    a float matte is stretched here with its image's lo and hi (a constant image stays as is)."""
    is_uint8: tl.constexpr = src.dtype.element_ty == tl.uint8
    if not is_uint8:
        lo = tl.load(lo_ptr + b)
        hi = tl.load(hi_ptr + b)
        stretch = hi > lo
        scale = tl.where(stretch, hi - lo, 1.0)
    deriv = tl.zeros([BLOCK_H, BLOCK_W], taps_ptr.dtype.element_ty)
    smooth = tl.zeros([BLOCK_H, BLOCK_W], taps_ptr.dtype.element_ty)
    for j in tl.static_range(TAPS):
        xs = tl.minimum(tl.maximum(x - (j - RADIUS), 0), W - 1)
        v = tl.load(src + (b * H + y) * W + xs, mask=inside, other=0)
        if is_uint8:
            v = tl.load(table_ptr + b * 256 + v.to(tl.int32))  # v = 0 outside the image
        else:
            v = tl.where(stretch, (v - lo) / scale, v)
        smooth += tl.load(taps_ptr + j) * v
        deriv += tl.load(taps_ptr + TAPS + j) * v
    return deriv, smooth


@triton.jit
def _horizontal_kernel(pred_ptr, gt_ptr, lo_ptr, hi_ptr, table_ptr, taps_ptr, planes_ptr, B, H, W):
    b, y, x = _tile(H, W)
    inside = (y < H) & (x < W)
    plane = B * H * W
    at = (b * H + y) * W + x
    deriv, smooth = _filter_rows(pred_ptr, lo_ptr, hi_ptr, table_ptr, taps_ptr, b, y, x, inside, H, W)
    tl.store(planes_ptr + at, deriv, mask=inside)
    tl.store(planes_ptr + plane + at, smooth, mask=inside)
    deriv, smooth = _filter_rows(gt_ptr, lo_ptr + B, hi_ptr + B, table_ptr + 256 * B, taps_ptr, b, y, x,
                                 inside, H, W)
    tl.store(planes_ptr + 2 * plane + at, deriv, mask=inside)
    tl.store(planes_ptr + 3 * plane + at, smooth, mask=inside)


@triton.jit
def _magnitude(deriv_ptr, smooth_ptr, taps_ptr, b, y, x, inside, H, W):
    """|grad| from one matte's two row-filtered planes: gx smooths the horizontal derivative
    down the columns, gy (hy = hx') differentiates the horizontal smoothing down them."""
    gx = tl.zeros([BLOCK_H, BLOCK_W], deriv_ptr.dtype.element_ty)
    gy = tl.zeros([BLOCK_H, BLOCK_W], deriv_ptr.dtype.element_ty)
    for i in tl.static_range(TAPS):
        ys = tl.minimum(tl.maximum(y - (i - RADIUS), 0), H - 1)
        at = (b * H + ys) * W + x
        gx += tl.load(taps_ptr + i) * tl.load(deriv_ptr + at, mask=inside, other=0.0)
        gy += tl.load(taps_ptr + TAPS + i) * tl.load(smooth_ptr + at, mask=inside, other=0.0)
    return tl.sqrt(gx * gx + gy * gy)


@triton.jit
def counted_pixels(mask_ptr, at, inside, MASK: tl.constexpr):
    """Which of the pixels at mask_ptr + at (those inside) a metric sums over: by MASK (see
    mask_argument), all of them (0), a bool mask's true ones (1) or a trimap's 128 ones (128)."""
    counted = inside
    if MASK == 1:
        counted = inside & (tl.load(mask_ptr + at, mask=inside, other=0) != 0)
    elif MASK == 128:
        counted = inside & (tl.load(mask_ptr + at, mask=inside, other=0) == 128)
    return counted


def mask_argument(mask, placeholder):
    """The (pointer argument, MASK constexpr) pair of counted_pixels for a metric op's mask:
    None (placeholder stands in for the pointer), bool, or a uint8 trimap."""
    if mask is None:
        return placeholder, 0
    return mask.view(torch.uint8), 1 if mask.dtype == torch.bool else 128


@triton.jit
def _vertical_kernel(planes_ptr, mask_ptr, taps_ptr, out_ptr, B, H, W, MASK: tl.constexpr):
    b, y, x = _tile(H, W)
    inside = (y < H) & (x < W)
    plane = B * H * W
    amplitude_pred = _magnitude(planes_ptr, planes_ptr + plane, taps_ptr, b, y, x, inside, H, W)
    amplitude_gt = _magnitude(planes_ptr + 2 * plane, planes_ptr + 3 * plane, taps_ptr, b, y, x, inside, H, W)
    counted = counted_pixels(mask_ptr, (b * H + y) * W + x, inside, MASK)
    e = amplitude_pred - amplitude_gt
    e = tl.where(counted, e * e, 0.0).to(tl.float64)
    tl.atomic_add(out_ptr + b, tl.sum(tl.sum(e, axis=1), axis=0))


def stretch_tables(lo, hi):
    """[2, B, 256] float32: mat2gray's value of each uint8 sample v of each image, for the
    images' uint8 minima and maxima lo, hi [2, B]: (v/255 - lo/255) / (hi/255 - lo/255), or
    v / 255 for a constant image, with every division correctly rounded as the float path's."""
    values = torch.arange(256, dtype=torch.float32, device=lo.device) / 255
    lo, hi = values[lo.long()][..., None], values[hi.long()][..., None]
    return torch.where(hi > lo, (values - lo) / (hi - lo), values).contiguous()


def gradient_error_forward(pred, gt, mask, out):
    """Launch on validated, non-empty inputs (pred, gt [B, H, W] uint8/float32/float64, mask
    bool, uint8 trimap or None), summing into out [B] float64 (zeros); returns
    fastmatte.ops.gradient_error's value."""
    B, H, W = pred.shape
    (pred_lo, pred_hi), (gt_lo, gt_hi) = (torch.aminmax(t.view(B, -1), dim=1) for t in (pred, gt))
    lo, hi = torch.stack([pred_lo, gt_lo]), torch.stack([pred_hi, gt_hi])  # [2, B]; NaN propagates
    if pred.dtype == torch.uint8:
        dtype, table = torch.float32, stretch_tables(lo, hi)
    else:
        dtype, table = pred.dtype, lo  # the table is not read
    taps = gaussgradient_taps(dtype, pred.device)
    planes = torch.empty((4, B, H, W), dtype=dtype, device=pred.device)
    grid = (B * triton.cdiv(H, BLOCK_H), triton.cdiv(W, BLOCK_W))
    _horizontal_kernel[grid](pred, gt, lo, hi, table, taps, planes, B, H, W)
    mask_arg, mask_kind = mask_argument(mask, out)
    _vertical_kernel[grid](planes, mask_arg, taps, out, B, H, W, MASK=mask_kind)
    has_nan = (lo.isnan() | hi.isnan()).any(0)
    return torch.where(has_nan, float("nan"), out / 1000)
