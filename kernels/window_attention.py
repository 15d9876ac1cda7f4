"""Triton forward kernel of window_attention (Swin's shifted-window attention).

One launch, one program per (batch, window of the map padded to whole windows, head): the
program computes the original (un-rolled) positions of its window's wh * ww members and reads
their q/k/v rows straight from qkv (no padding, roll, partition or copy; zeros past the map),
takes each score's bias from the table by relative position (no bias tensor), blocks padded keys
and keys of another shift region from index arithmetic (no mask tensor), and writes the output
rows of the real tokens back at their original positions.
Q K^T and P V are tl.dot with the members padded to a power of two >= 16: half-precision
operands go in as they are (exact products, fp32 accumulator), fp32 with input_precision="ieee"
(no TF32), fp64 in fp64. The softmax is in fp32 (fp64 for fp64) and normalized after P V.
"""
import os

import torch
import triton
import triton.language as tl

from fastmatte.kernels.attention_common import sqrt_dim

_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
# The interpreter's tl.dot multiplies bfloat16 bit patterns (triton-lang/triton#11584): there,
# bfloat16 operands go in as fp32, which is the same math (their products are exact in fp32).
_UPCAST_BF16_DOT = tl.constexpr(_INTERPRETER)


@triton.jit
def _dot(a, b):
    """a @ b with exact products, accumulated in fp32 (fp64 for fp64 operands)."""
    if _UPCAST_BF16_DOT and a.dtype == tl.bfloat16:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _forward_kernel(qkv, table, out, height, width, Hp, Wp, sh, sw, WH: tl.constexpr,
                    WW: tl.constexpr, WINDOW: tl.constexpr, HEADS: tl.constexpr, DIM: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr):
    windows_x = Wp // WW
    windows = (Hp // WH) * windows_x
    pid = tl.program_id(0)
    h = tl.program_id(1)
    b = (pid // windows).to(tl.int64)
    w = pid % windows
    n = tl.arange(0, BLOCK_N)
    d = tl.arange(0, BLOCK_D)
    iy = n // WW
    ix = n % WW
    member = n < WH * WW
    ry = (w // windows_x) * WH + iy  # rolled coordinates
    rx = (w % windows_x) * WW + ix
    y = (ry + sh) % Hp  # original coordinates
    x = (rx + sw) % Wp
    real = member & (y < height) & (x < width)
    # Shift regions: only the last window along an axis straddles them, split at P - s.
    region_y = ry >= Hp - sh
    region_x = rx >= Wp - sw
    token = tl.where(real, (b * height + y) * width + x, 0)
    channels = 3 * HEADS * DIM
    offsets = token[:, None] * channels + h * DIM + d[None, :]
    mask = real[:, None] & (d[None, :] < DIM)
    q = tl.load(qkv + offsets, mask=mask, other=0.0)
    k = tl.load(qkv + offsets + HEADS * DIM, mask=mask, other=0.0)
    v = tl.load(qkv + offsets + 2 * HEADS * DIM, mask=mask, other=0.0)

    rel = ((iy[:, None] - iy[None, :] + WINDOW - 1) * (2 * WINDOW - 1)
           + ix[:, None] - ix[None, :] + WINDOW - 1)
    pair = member[:, None] & member[None, :]
    bias = tl.load(table + rel * HEADS + h, mask=pair, other=0.0).to(ACC)
    allowed = (pair & real[None, :] & (region_y[:, None] == region_y[None, :])
               & (region_x[:, None] == region_x[None, :]))
    scores = _dot(q, tl.trans(k)) / sqrt_dim(DIM, ACC) + bias
    scores = tl.where(allowed, scores, float("-inf"))
    top = tl.max(scores, axis=1)
    top = tl.where(top == float("-inf"), 0.0, top)  # a query with every key blocked
    p = tl.where(allowed, tl.exp(scores - top[:, None]), 0.0)
    total = tl.sum(p, axis=1)
    o = _dot(p.to(v.dtype), v) / tl.where(total > 0, total, 1.0)[:, None]
    out_offsets = token[:, None] * (HEADS * DIM) + h * DIM + d[None, :]
    tl.store(out + out_offsets, o.to(out.dtype.element_ty), mask=mask)


def window_attention_forward(qkv: torch.Tensor, bias_table: torch.Tensor, window: int, window_size,
                             shift) -> torch.Tensor:
    """Launch on contiguous, already-checked inputs; see fastmatte.ops.window_attention."""
    batch, height, width, channels = qkv.shape
    heads = bias_table.shape[1]
    dim = channels // (3 * heads)
    (wh, ww), (sh, sw) = window_size, shift
    hp, wp = -(-height // wh) * wh, -(-width // ww) * ww  # the map padded to whole windows
    out = qkv.new_empty((batch, height, width, heads * dim))
    if out.numel() == 0:
        return out
    grid = (batch * (hp // wh) * (wp // ww), heads)
    _forward_kernel[grid](
        qkv, bias_table, out, height, width, hp, wp, sh, sw, WH=wh, WW=ww, WINDOW=window,
        HEADS=heads, DIM=dim, BLOCK_N=max(16, triton.next_power_of_2(wh * ww)),
        BLOCK_D=max(16, triton.next_power_of_2(dim)),
        ACC=tl.float64 if qkv.dtype == torch.float64 else tl.float32,
        num_warps=1 if _INTERPRETER else 4)
    return out
