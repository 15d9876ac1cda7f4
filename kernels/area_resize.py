"""Triton kernel of area_resize (F.adaptive_avg_pool2d): a program takes BLOCK output elements in
the output's memory order (NCHW or channels-last, x's suggested format) and averages each one's
source window [hs, he) x [ws, we) (ATen's start_index / end_index, int64), looping over the
largest window the ratio allows (ceil(h / H) + 1 rows by ceil(w / W) + 1 columns), masked. x is
read through its strides, whatever its layout: nothing is copied, nothing waits on the host."""
import torch
import triton
import triton.language as tl


@triton.jit
def _area_resize_kernel(in_ptr, out_ptr, total, C, h, w, H, W, KH, KW,
                        stride_b, stride_c, stride_h, stride_w,
                        CHANNELS_LAST: tl.constexpr, OPMATH: tl.constexpr, BLOCK: tl.constexpr):
    index = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = index < total
    if CHANNELS_LAST:  # ((b * H + i) * W + j) * C + c
        c = index % C
        rest = index // C
        j = rest % W
        rest = rest // W
        i = rest % H
        b = rest // H
    else:  # ((b * C + c) * H + i) * W + j
        j = index % W
        rest = index // W
        i = rest % H
        rest = rest // H
        c = rest % C
        b = rest // C
    h64 = tl.cast(h, tl.int64)
    w64 = tl.cast(w, tl.int64)
    # ATen's start_index(a, b, c) = (a / b) * c + ((a % b) * c) / b, end_index = 1 + ((a + 1) * c - 1) / b
    hs = (i // H) * h64 + ((i % H) * h64) // H
    he = 1 + ((i + 1) * h64 - 1) // H
    ws = (j // W) * w64 + ((j % W) * w64) // W
    we = 1 + ((j + 1) * w64 - 1) // W
    base = in_ptr + b * stride_b + c * stride_c
    acc = tl.zeros([BLOCK], dtype=OPMATH)
    for dy in range(0, KH):
        y = hs + dy
        row = base + y * stride_h
        row_mask = mask & (y < he)
        for dx in range(0, KW):
            x = ws + dx
            value = tl.load(row + x * stride_w, mask=row_mask & (x < we), other=0.0)
            acc += value.to(OPMATH)
    count = ((he - hs) * (we - ws)).to(OPMATH)
    if OPMATH == tl.float64:
        mean = acc / count
    else:
        mean = tl.math.div_rn(acc, count)  # correctly rounded, as the CPU's division
    tl.store(out_ptr + index, mean.to(out_ptr.dtype.element_ty), mask=mask)


def area_resize_forward(x, size):
    """[B, C, H, W] in x's suggested memory format from validated inputs (see
    fastmatte.ops.area_resize)."""
    from torch._prims_common import suggest_memory_format

    H, W = int(size[0]), int(size[1])
    B, C, h, w = x.shape
    format = suggest_memory_format(x)
    out = torch.empty(B, C, H, W, dtype=x.dtype, device=x.device, memory_format=format)
    total = out.numel()
    if total == 0:
        return out
    # the widest window: at most ceil(h / H) + 1 rows (and no more than h)
    kh = min(h, -(-h // H) + 1)
    kw = min(w, -(-w // W) + 1)
    opmath = tl.float64 if x.dtype == torch.float64 else tl.float32
    block = 512
    grid = (triton.cdiv(total, block),)
    _area_resize_kernel[grid](x, out, total, C, h, w, H, W, kh, kw, *x.stride(),
                              CHANNELS_LAST=format == torch.channels_last, OPMATH=opmath, BLOCK=block)
    return out
