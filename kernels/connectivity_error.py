"""Triton connectivity_error (DIM's Conn) with a GPU union-find shared by the ten thresholds.

The images are read transposed, so a pixel's label is its column-major index x * H + y and
the smallest label of a component is its first pixel in MATLAB's order. Each pixel's level is
the number of thresholds t_k = k/10 that pred and gt both reach; the k-th mask is level >= k.
Working from k = 10 down, with no host synchronization:
  union    every 4-neighbor pair whose lower level is k is united (atomic_min on the larger
           root, retried while other programs move it), so the forest holds the components of
           the k-th mask;
  sizes    each pixel's root (stored back: path compression) and one atomic add per root and
           block (lanes of a block mostly share a root);
  best     each root's key size << 32 | (2^31 - 1 - label), one atomic_max per block: the
           largest component, ties to the smallest label;
  members  bit k of each pixel: in Omega_k.
A last pass turns the bits into l = t_{j-1} (j: the lowest k whose bit is clear) and sums
|phi_pred - phi_gt| over the counted pixels in float64, one atomic add per block and image.
uint8 mattes are read as they are, each sample as v / 255 correctly rounded in float32.
"""
import torch
import triton
import triton.language as tl

from fastmatte.kernels.gradient_error import counted_pixels, mask_argument

LEVELS = tl.constexpr(10)
BLOCK = tl.constexpr(1024)
TILE = tl.constexpr(32)


@triton.jit
def _values(ptr, at, inside):
    """The matte samples at ptr + at (0 outside): uint8 v as v / 255 correctly rounded in
    float32 (what a float32 copy holds), float samples as stored."""
    v = tl.load(ptr + at, mask=inside, other=0)
    if ptr.dtype.element_ty == tl.uint8:
        v = tl.math.div_rn(v.to(tl.float32), 255.0)
    return v


@triton.jit
def _levels_kernel(pred_ptr, gt_ptr, thresholds_ptr, level_ptr, parent_ptr, H, W):
    # A TILE x TILE tile of the transposed image: rows are x, columns y.
    b = tl.program_id(2)
    x = tl.program_id(1) * TILE + tl.arange(0, TILE)[:, None]
    y = tl.program_id(0) * TILE + tl.arange(0, TILE)[None, :]
    inside = (x < W) & (y < H)
    at = b * H * W + y * W + x
    p = _values(pred_ptr, at, inside)
    g = _values(gt_ptr, at, inside)
    level = tl.zeros([TILE, TILE], tl.int32) + LEVELS
    for k in tl.static_range(1, LEVELS + 1):  # NaN reaches no threshold
        t = tl.load(thresholds_ptr + k)
        level = tl.where((p >= t) & (g >= t), level, tl.minimum(level, k - 1))
    label = x * H + y
    tl.store(level_ptr + b * H * W + label, level.to(tl.uint8), mask=inside)
    tl.store(parent_ptr + b * H * W + label, label, mask=inside)


@triton.jit
def _find(parent_ptr, r, todo):
    """The roots of labels r (pointers already offset to the image), for the lanes in todo."""
    p = tl.where(todo, tl.load(parent_ptr + r, mask=todo, other=0, cache_modifier=".cg"), r)
    while tl.max((p != r).to(tl.int32), axis=0) > 0:
        r = p
        p = tl.where(todo, tl.load(parent_ptr + r, mask=todo, other=0, cache_modifier=".cg"), r)
    return r


@triton.jit
def _unite(parent_ptr, a, b, todo):
    # Link the larger root below the smaller one. atomic_min returns what was there: if that
    # was no longer the root (another program linked it meanwhile), unite that instead.
    while tl.max(todo.to(tl.int32), axis=0) > 0:
        a = _find(parent_ptr, a, todo)
        b = _find(parent_ptr, b, todo)
        todo = todo & (a != b)
        high = tl.maximum(a, b)
        low = tl.minimum(a, b)
        old = tl.atomic_min(parent_ptr + high, low, mask=todo)
        todo = todo & (old != high)
        a = tl.where(todo, old, a)
        b = tl.where(todo, low, b)


@triton.jit
def _lanes(H, W):
    """This program's labels (one image per grid row) and which are pixels."""
    label = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    return tl.program_id(1) * H * W, label, label < H * W


@triton.jit
def _union_kernel(level_ptr, parent_ptr, H, W, k):
    base, label, valid = _lanes(H, W)
    level = tl.load(level_ptr + base + label, mask=valid, other=0).to(tl.int32)
    active = valid & (level >= k)
    y = label % H
    below = tl.load(level_ptr + base + label + 1, mask=active & (y + 1 < H), other=0).to(tl.int32)
    _unite(parent_ptr + base, label, label + 1, active & (y + 1 < H) & (tl.minimum(level, below) == k))
    right = tl.load(level_ptr + base + label + H, mask=active & (label + H < H * W), other=0).to(tl.int32)
    _unite(parent_ptr + base, label, label + H,
           active & (label + H < H * W) & (tl.minimum(level, right) == k))


@triton.jit
def _sizes_kernel(level_ptr, parent_ptr, size_ptr, H, W, k):
    base, label, valid = _lanes(H, W)
    active = valid & (tl.load(level_ptr + base + label, mask=valid, other=0).to(tl.int32) >= k)
    root = _find(parent_ptr + base, label, active)
    tl.store(parent_ptr + base + label, root, mask=active)
    # A few block-wide counts for the most common roots, then one atomic per remaining lane.
    pending = active
    for _ in tl.static_range(4):
        first = tl.min(tl.where(pending, root, H * W), axis=0)
        same = pending & (root == first)
        count = tl.sum(same.to(tl.int32), axis=0)
        tl.atomic_add(size_ptr + base + first, count, mask=count > 0)
        pending = pending & ~same
    tl.atomic_add(size_ptr + base + root, tl.full([BLOCK], 1, tl.int32), mask=pending)


@triton.jit
def _best_kernel(level_ptr, parent_ptr, size_ptr, best_ptr, H, W, k):
    base, label, valid = _lanes(H, W)
    active = valid & (tl.load(level_ptr + base + label, mask=valid, other=0).to(tl.int32) >= k)
    is_root = active & (tl.load(parent_ptr + base + label, mask=active, other=-1) == label)
    size = tl.load(size_ptr + base + label, mask=is_root, other=0)
    key = (size.to(tl.int64) << 32) | (0x7FFFFFFF - label).to(tl.int64)  # labels < 2^31
    best = tl.max(tl.where(is_root, key, 0), axis=0)
    tl.atomic_max(best_ptr + tl.program_id(1) * (LEVELS + 1) + k, best, mask=best > 0)
    tl.store(size_ptr + base + label, tl.zeros([BLOCK], tl.int32), mask=is_root)  # ready for level k-1


@triton.jit
def _members_kernel(level_ptr, parent_ptr, best_ptr, bits_ptr, H, W, k):
    base, label, valid = _lanes(H, W)
    active = valid & (tl.load(level_ptr + base + label, mask=valid, other=0).to(tl.int32) >= k)
    best = tl.load(best_ptr + tl.program_id(1) * (LEVELS + 1) + k)
    omega = (0x7FFFFFFF - (best & 0x7FFFFFFF)).to(tl.int32)
    root = tl.load(parent_ptr + base + label, mask=active, other=-1)  # compressed by _sizes_kernel
    inside = active & (root == omega)
    bits = tl.load(bits_ptr + base + label, mask=inside, other=0)
    tl.store(bits_ptr + base + label, bits | (1 << k), mask=inside)


@triton.jit
def _error_kernel(pred_ptr, gt_ptr, mask_ptr, thresholds_ptr, bits_ptr, out_ptr, H, W,
                  MASK: tl.constexpr):
    b = tl.program_id(2)
    y = tl.program_id(1) * TILE + tl.arange(0, TILE)[:, None]
    x = tl.program_id(0) * TILE + tl.arange(0, TILE)[None, :]
    inside = (y < H) & (x < W)
    at = b * H * W + y * W + x
    bits = tl.load(bits_ptr + b * H * W + x * H + y, mask=inside, other=0)
    leave = tl.zeros([TILE, TILE], tl.int32)  # j - 1: how many of Omega_1, Omega_2, ... in a row
    for k in tl.static_range(1, LEVELS + 1):
        leave = tl.where((leave == k - 1) & ((bits >> k) & 1 == 1), k, leave)
    l_map = tl.load(thresholds_ptr + leave, mask=inside, other=0.0)
    theta = tl.load(thresholds_ptr + LEVELS + 1)
    p = _values(pred_ptr, at, inside)
    g = _values(gt_ptr, at, inside)
    d_pred = p - l_map
    d_gt = g - l_map
    phi_pred = 1.0 - d_pred * (d_pred >= theta).to(p.dtype)
    phi_gt = 1.0 - d_gt * (d_gt >= theta).to(p.dtype)
    counted = counted_pixels(mask_ptr, at, inside, MASK)
    error = tl.where(counted, tl.abs(phi_pred - phi_gt), 0.0).to(tl.float64)
    tl.atomic_add(out_ptr + b, tl.sum(tl.sum(error, axis=1), axis=0))


def connectivity_error_forward(pred, gt, mask, out):
    """Launch on validated, non-empty inputs (pred, gt [B, H, W] uint8/float32/float64, mask
    bool, uint8 trimap or None), summing into out [B] float64 (zeros); returns
    fastmatte.ops.connectivity_error's value."""
    B, H, W = pred.shape
    device, n = pred.device, B * H * W
    # t_0..t_10 = k/10 correctly rounded in the working dtype (float32 for uint8), then theta.
    dtype = torch.float32 if pred.dtype == torch.uint8 else pred.dtype
    thresholds = torch.cat([torch.arange(11, dtype=dtype, device=device) / 10,
                            torch.tensor([0.15], dtype=dtype, device=device)])
    level = torch.empty(n, dtype=torch.uint8, device=device)
    parent = torch.empty(n, dtype=torch.int32, device=device)
    size = torch.zeros(n, dtype=torch.int32, device=device)
    bits = torch.zeros(n, dtype=torch.int32, device=device)
    best = torch.zeros((B, 11), dtype=torch.int64, device=device)
    tiles = (triton.cdiv(H, TILE.value), triton.cdiv(W, TILE.value), B)
    _levels_kernel[tiles](pred, gt, thresholds, level, parent, H, W)
    lanes = (triton.cdiv(H * W, BLOCK.value), B)
    for k in range(10, 0, -1):
        _union_kernel[lanes](level, parent, H, W, k)
        _sizes_kernel[lanes](level, parent, size, H, W, k)
        _best_kernel[lanes](level, parent, size, best, H, W, k)
        _members_kernel[lanes](level, parent, best, bits, H, W, k)
    mask_arg, mask_kind = mask_argument(mask, out)
    pixels = (triton.cdiv(W, TILE.value), triton.cdiv(H, TILE.value), B)
    _error_kernel[pixels](pred, gt, mask_arg, thresholds, bits, out, H, W, MASK=mask_kind)
    return out / 1000
