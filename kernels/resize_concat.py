"""Triton kernel of resize_concat: one launch per input, each writing that input's channel slice of
the channels-last output. A program takes BLOCK_X columns x BLOCK_C channels of one output row
(b, y) and samples the input bilinearly there (or copies it, for an input already at the output
size). Inputs are read through their strides, whatever their layout: nothing is copied."""
import torch
import triton
import triton.language as tl

from fastmatte.kernels.resample import bilinear_tap, source_scale


@triton.jit
def _resize_slice_kernel(in_ptr, out_ptr, C, h, w, H, W, out_channels, offset,
                         stride_b, stride_c, stride_h, stride_w,
                         IDENTITY: tl.constexpr, OPMATH: tl.constexpr,
                         BLOCK_X: tl.constexpr, BLOCK_C: tl.constexpr):
    # Axis 0 walks the B * H output rows, axis 1 the column blocks, axis 2 the channel blocks.
    row = tl.program_id(0)
    n = row // H
    y = row % H
    x = tl.program_id(1) * BLOCK_X + tl.arange(0, BLOCK_X)
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (x < W)[:, None] & (c < C)[None, :]
    base = in_ptr + n.to(tl.int64) * stride_b
    channel = c.to(tl.int64)[None, :] * stride_c
    if IDENTITY:
        src = base + y.to(tl.int64) * stride_h + x.to(tl.int64)[:, None] * stride_w + channel
        value = tl.load(src, mask=mask, other=0.0)
    else:
        y0, y1, ly = bilinear_tap(y, source_scale(h, H, OPMATH), h, OPMATH)
        x0, x1, lx = bilinear_tap(x, source_scale(w, W, OPMATH), w, OPMATH)
        row0 = base + y0.to(tl.int64) * stride_h + channel
        row1 = base + y1.to(tl.int64) * stride_h + channel
        col0 = x0.to(tl.int64)[:, None] * stride_w
        col1 = x1.to(tl.int64)[:, None] * stride_w
        v00 = tl.load(row0 + col0, mask=mask, other=0.0).to(OPMATH)
        v01 = tl.load(row0 + col1, mask=mask, other=0.0).to(OPMATH)
        v10 = tl.load(row1 + col0, mask=mask, other=0.0).to(OPMATH)
        v11 = tl.load(row1 + col1, mask=mask, other=0.0).to(OPMATH)
        lx = lx[:, None]
        value = (1.0 - ly) * ((1.0 - lx) * v00 + lx * v01) + ly * ((1.0 - lx) * v10 + lx * v11)
    pixel = (row.to(tl.int64) * W + x.to(tl.int64)) * out_channels + offset
    tl.store(out_ptr + pixel[:, None] + c.to(tl.int64)[None, :], value.to(out_ptr.dtype.element_ty),
             mask=mask)


def resize_concat_forward(tensors, size):
    """[B, sum C_i, H, W] channels-last from validated inputs (see fastmatte.ops.resize_concat)."""
    H, W = int(size[0]), int(size[1])
    first = tensors[0]
    batch = first.shape[0]
    channels = sum(t.shape[1] for t in tensors)
    out = torch.empty(batch, channels, H, W, dtype=first.dtype, device=first.device,
                      memory_format=torch.channels_last)
    if batch == 0:
        return out
    opmath = tl.float64 if first.dtype == torch.float64 else tl.float32
    offset = 0
    for t in tensors:
        C, h, w = t.shape[1:]
        block_c = min(triton.next_power_of_2(C), 64)
        block_x = max(16, 1024 // block_c)
        grid = (batch * H, triton.cdiv(W, block_x), triton.cdiv(C, block_c))
        _resize_slice_kernel[grid](t, out, C, h, w, H, W, channels, offset, *t.stride(),
                                   IDENTITY=(h, w) == (H, W), OPMATH=opmath, BLOCK_X=block_x,
                                   BLOCK_C=block_c)
        offset += C
    return out
