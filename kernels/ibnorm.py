"""Triton kernels of ibnorm (MODNet's IBNorm in inference, with its ReLU): three launches, no host
sync, NCHW or channels-last.

1. _moments_kernel: the H x W reduction of the instance channels is split into runs of pixels, one
   program per (sample, block of channels, run), so that batch 1 with 8 instance channels still
   fills the GPU. A program loads [BLOCK_P pixels, BLOCK_C channels] tiles (laid along the
   contiguous axis: pixels for NCHW, channels for channels-last), takes each tile's mean and the
   squared deviations from it (two reductions of the tile in registers) and merges the tiles with
   Chan et al.'s update. Everything is relative to shift = the channel's first value in the
   sample, so that a large mean is a small number here and nothing cancels.
2. _coefficients_kernel: per (sample, channel), the runs merged (mean = the count-weighted mean of
   their means; M2 = the sum of their M2 + n (mean_r - mean)^2) into (m, a, d): m = shift,
   a = weight * rstd, d = bias - mean * a for the instance channels; 0, scale, shift for the
   BatchNorm ones.
3. _apply_kernel: y = max((x - m) * a + d, 0) over [BLOCK_P, BLOCK_C] tiles.
The math type is float32 (float64 for float64); outputs in x's dtype."""
import os

import torch
import triton
import triton.language as tl

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
# Programs the moments pass aims at: a few per SM of an H100 (132 SMs). Under the interpreter
# (tests on the CPU) fewer, larger runs, still more than one per channel block on 64 x 64 maps.
TARGET_PROGRAMS = 16 if INTERPRETER else 1024


@triton.jit
def _moments_kernel(x_ptr, shift_ptr, mean_ptr, m2_ptr, C, K, Ci, HW, stride_p, stride_c, run, runs,
                    ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    # Axis 0: (sample, block of instance channels); axis 1: the run of pixels.
    cblocks = tl.cdiv(Ci, BLOCK_C)
    b = tl.program_id(0) // cblocks
    c = (tl.program_id(0) % cblocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    r = tl.program_id(1)
    inside_c = c < Ci
    channel = x_ptr + b.to(tl.int64) * C * HW + (K + c).to(tl.int64) * stride_c  # pixel 0
    shift = tl.load(channel, mask=inside_c, other=0.0).to(ACC)
    start = r * run
    stop = tl.minimum(start + run, HW)
    n = tl.zeros([BLOCK_C], ACC)
    mean = tl.zeros([BLOCK_C], ACC)
    m2 = tl.zeros([BLOCK_C], ACC)
    for p0 in range(start, stop, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        inside = (p < stop)[:, None] & inside_c[None, :]
        v = tl.load(channel[None, :] + p[:, None].to(tl.int64) * stride_p, mask=inside, other=0.0)
        v = tl.where(inside, v.to(ACC) - shift[None, :], 0.0)
        count = tl.minimum(stop - p0, BLOCK_P).to(ACC)
        tile_mean = tl.sum(v, axis=0) / count
        deviation = tl.where(inside, v - tile_mean[None, :], 0.0)
        tile_m2 = tl.sum(deviation * deviation, axis=0)
        total = n + count
        delta = tile_mean - mean
        mean += delta * (count / total)
        m2 += tile_m2 + delta * delta * (n * (count / total))
        n = total
    row = (b * Ci + c).to(tl.int64)
    tl.store(shift_ptr + row, shift, mask=inside_c & (r == 0))
    tl.store(mean_ptr + row * runs + r, mean, mask=inside_c)
    tl.store(m2_ptr + row * runs + r, m2, mask=inside_c)


@triton.jit
def _coefficients_kernel(shift_ptr, mean_ptr, m2_ptr, scale_ptr, offset_ptr, weight_ptr, bias_ptr,
                         coef_ptr, C, K, Ci, HW, run, runs, eps_hi, eps_lo, ACC: tl.constexpr,
                         BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr):
    # Axis 0: the sample; axis 1: a block of channels (all C of them).
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    batch_norm = c < K
    instance = (c >= K) & (c < C)
    row = (b * Ci + tl.where(instance, c - K, 0)).to(tl.int64)
    # Pass 1: the count-weighted mean of the runs' means (each relative to the same shift).
    total = tl.zeros([BLOCK_C], ACC)
    for r0 in range(0, runs, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        inside = instance[:, None] & (r < runs)[None, :]
        count = tl.minimum(HW - r * run, run).to(ACC)
        mean_r = tl.load(mean_ptr + row[:, None] * runs + r[None, :], mask=inside, other=0.0)
        total += tl.sum(tl.where(inside, mean_r * count[None, :], 0.0), axis=1)
    mean = total / HW
    # Pass 2: M2 = sum of the runs' M2 + n_r (mean_r - mean)^2.
    m2 = tl.zeros([BLOCK_C], ACC)
    for r0 in range(0, runs, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        inside = instance[:, None] & (r < runs)[None, :]
        count = tl.minimum(HW - r * run, run).to(ACC)
        mean_r = tl.load(mean_ptr + row[:, None] * runs + r[None, :], mask=inside, other=0.0)
        m2_r = tl.load(m2_ptr + row[:, None] * runs + r[None, :], mask=inside, other=0.0)
        d = mean_r - mean[:, None]
        m2 += tl.sum(tl.where(inside, m2_r + count[None, :] * d * d, 0.0), axis=1)
    # eps arrives as two float32 scalars (a float argument is float32): hi + lo is it to ~1e-15.
    eps = tl.cast(eps_hi, ACC) + tl.cast(eps_lo, ACC)
    if ACC == tl.float64:
        rstd = 1.0 / tl.sqrt(m2 / HW + eps)  # float64 sqrt is correctly rounded
    else:
        rstd = 1.0 / tl.sqrt_rn(m2 / HW + eps)  # tl.sqrt's float32 one is approximate
    weight = tl.load(weight_ptr + (c - K), mask=instance, other=0.0).to(ACC)
    bias = tl.load(bias_ptr + (c - K), mask=instance, other=0.0).to(ACC)
    scale = tl.load(scale_ptr + c, mask=batch_norm, other=0.0).to(ACC)
    offset = tl.load(offset_ptr + c, mask=batch_norm, other=0.0).to(ACC)
    a = tl.where(instance, weight * rstd, scale)
    shift = tl.load(shift_ptr + row, mask=instance, other=0.0)
    out = coef_ptr + (b * C + c).to(tl.int64) * 3
    inside_c = c < C
    tl.store(out, tl.where(instance, shift, 0.0), mask=inside_c)
    tl.store(out + 1, a, mask=inside_c)
    tl.store(out + 2, tl.where(instance, bias - mean * a, offset), mask=inside_c)


@triton.jit
def _apply_kernel(x_ptr, y_ptr, coef_ptr, C, HW, stride_p, stride_c, pblocks, RELU: tl.constexpr,
                  ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    # Axis 0: (sample, block of channels, block of pixels), pixels fastest.
    pid = tl.program_id(0)
    cblocks = tl.cdiv(C, BLOCK_C)
    p = (pid % pblocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = ((pid // pblocks) % cblocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    b = pid // (pblocks * cblocks)
    inside_c = c < C
    coef = coef_ptr + (b * C + c).to(tl.int64) * 3
    m = tl.load(coef, mask=inside_c, other=0.0)
    a = tl.load(coef + 1, mask=inside_c, other=0.0)
    d = tl.load(coef + 2, mask=inside_c, other=0.0)
    offsets = (b.to(tl.int64) * C * HW + c[None, :].to(tl.int64) * stride_c
               + p[:, None].to(tl.int64) * stride_p)
    inside = (p < HW)[:, None] & inside_c[None, :]
    v = tl.load(x_ptr + offsets, mask=inside, other=0.0).to(ACC)
    out = (v - m[None, :]) * a[None, :] + d[None, :]
    if RELU:
        out = tl.where(out < 0.0, 0.0, out)  # torch.relu: a NaN passes through
    tl.store(y_ptr + offsets, out.to(y_ptr.dtype.element_ty), mask=inside)


def _tile(channels: int, channels_last: bool):
    """(BLOCK_P, BLOCK_C, num_warps) of a pass over `channels` channels: NCHW tiles run along the
    pixels (one channel), channels-last ones along the channels (up to 64) then the pixels."""
    if not channels_last:
        return 1024, 1, 4
    block_c = min(64, triton.next_power_of_2(max(channels, 1)))
    return max(16, 2048 // block_c), block_c, 4


def ibnorm_forward(x, bn_scale, bn_shift, in_weight, in_bias, eps, relu):
    """y [B, C, H, W] (torch.empty_like(x)'s layout) from validated inputs (see fastmatte.ops.ibnorm)."""
    out = torch.empty_like(x)
    batch, C, H, W = x.shape
    HW, K = H * W, bn_scale.shape[0]
    Ci = C - K
    if batch == 0 or C == 0:
        return out
    # The layout the kernels run in: out's own where it is NCHW or channels-last, else NCHW through
    # a contiguous buffer (as the CPU kernel).
    channels_last = not out.is_contiguous() and out.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=layout)
    bn_scale, bn_shift, in_weight, in_bias = (t.contiguous() for t in (bn_scale, bn_shift, in_weight,
                                                                        in_bias))
    y = out if out.is_contiguous(memory_format=layout) else torch.empty_like(x)
    stride_p, stride_c = (C, 1) if channels_last else (1, HW)
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    ACC = tl.float64 if acc_dtype == torch.float64 else tl.float32
    warps = 1 if INTERPRETER else None

    # 1. Moments of the instance channels per run of pixels.
    block_p, block_c, num_warps = _tile(Ci, channels_last)
    cblocks = triton.cdiv(Ci, block_c) if Ci else 0
    tiles = triton.cdiv(HW, block_p)
    runs_wanted = max(1, min(tiles, TARGET_PROGRAMS // max(1, batch * cblocks)))
    run = triton.cdiv(tiles, runs_wanted) * block_p
    runs = triton.cdiv(HW, run)
    stats = x.new_empty(3, max(1, batch * Ci * runs), dtype=acc_dtype)  # shift (first row), mean, M2
    shift, mean, m2 = stats[0], stats[1], stats[2]
    if Ci:
        _moments_kernel[(batch * cblocks, runs)](
            x, shift, mean, m2, C, K, Ci, HW, stride_p, stride_c, run, runs, ACC=ACC,
            BLOCK_P=block_p, BLOCK_C=block_c, num_warps=warps or num_warps)

    # 2. Coefficients (m, a, d) per (sample, channel).
    eps_hi = float(torch.tensor(eps, dtype=torch.float32))
    eps_lo = float(torch.tensor(eps - eps_hi, dtype=torch.float32))
    coef = x.new_empty(batch, C, 3, dtype=acc_dtype)
    block_c2 = min(128, triton.next_power_of_2(C))
    _coefficients_kernel[(batch, triton.cdiv(C, block_c2))](
        shift, mean, m2, bn_scale, bn_shift, in_weight, in_bias, coef, C, K, Ci, HW, run, runs, eps_hi,
        eps_lo, ACC=ACC, BLOCK_C=block_c2, BLOCK_R=16, num_warps=warps or 4)

    # 3. y = max((x - m) * a + d, 0).
    block_p, block_c, num_warps = _tile(C, channels_last)
    pblocks = triton.cdiv(HW, block_p)
    _apply_kernel[(batch * triton.cdiv(C, block_c) * pblocks,)](
        x, y, coef, C, HW, stride_p, stride_c, pblocks, RELU=relu, ACC=ACC, BLOCK_P=block_p,
        BLOCK_C=block_c, num_warps=warps or num_warps)
    if y is not out:
        out.copy_(y)
    return out
