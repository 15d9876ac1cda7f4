"""Triton kernels of gated_conv (PP-Matting's gated convolution, BatchNorms folded in).

Forward: one launch, one program per block of BLOCK_P pixels of one image with all C channels
in registers: x [C, BLOCK_P] is read once, the guide is resized at those pixels, and out is
written once. The two C x C products (hidden units 0..C-1 and the output conv) are tl.dot with
channels padded to a power of two >= 16; the guide column and the last hidden unit (C+1 wide
would pad 65 to 128) are rank-one terms and a row reduction beside them. Half-precision inputs
go to tl.dot as they are (their products are exact in fp32, the accumulator); fp32 uses
input_precision="ieee" (no TF32); fp64, which tl.dot lacks, multiplies and sums by broadcast.

Backward: one launch, one program per run of consecutive pixel blocks. It recomputes the
forward of each block, writes grad_x and the gradient of the full-resolution resized guide,
and keeps every weight gradient summed over its blocks in registers; the per-program partial
sums are then added in a fixed order (kernels/partials.py), so the result is deterministic.
The guide's gradient is ATen's upsample_bilinear2d_backward of the full-resolution one.
"""
import os

import torch
import triton
import triton.language as tl

from fastmatte.kernels.partials import sum_partials
from fastmatte.kernels.resample import bilinear_sample, bilinear_tap, source_scale

_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
# The interpreter's tl.dot multiplies bfloat16 bit patterns (triton-lang/triton#11584, "not
# supported yet"): there, bfloat16 operands go in as fp32, which is the same math (their
# products are exact in fp32).
_UPCAST_BF16_DOT = tl.constexpr(_INTERPRETER)
# Backward programs: enough to fill a GPU, and a small table of partial sums to add up.
MAX_BACKWARD_PROGRAMS = 1024


def _forward_configs():
    # The interpreter (TRITON_INTERPRET=1, tests on CPU) runs one config: autotuning it would
    # only multiply its cost.
    if _INTERPRETER:
        return [triton.Config({"BLOCK_P": 64}, num_warps=1)]
    return [triton.Config({"BLOCK_P": p}, num_warps=nw) for p, nw in
            [(32, 2), (64, 4), (128, 4), (128, 8), (256, 8)]]


@triton.jit
def _matmul(a, b, USE_DOT: tl.constexpr):
    """a [M, K] @ b [K, N] accumulated in fp32 (tl.dot, exact fp32 products for fp32 inputs),
    or by broadcast in the inputs' type (fp64)."""
    if USE_DOT:
        if _UPCAST_BF16_DOT and a.dtype == tl.bfloat16:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        out = tl.dot(a, b, input_precision="ieee")
    else:
        out = tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    return out


@triton.jit
def _relu(v):
    return tl.where(v < 0.0, 0.0, v)  # keeps NaN, as torch.relu does (tl.maximum would not)


@triton.jit
def _load_block(x, guide, w_hidden, b_hidden, w_gate, b_gate, block, live, H, W, h, w,
                C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                OPMATH: tl.constexpr, USE_DOT: tl.constexpr):
    """Pixel block `block` (BLOCK_P pixels of one image, blocks numbered image by image; all
    masked unless `live`): its offsets into [B, C, H*W] and [B, H*W] and their masks,
    x [BLOCK_C, BLOCK_P] in x's dtype (zero where masked), the resized guide g, the hidden
    pre-activations z [BLOCK_C, BLOCK_P] of units 0..C-1 and z_last of unit C, and the gate
    (all in OPMATH)."""
    N = H * W
    blocks_per_image = tl.cdiv(N, BLOCK_P)
    b = (block // blocks_per_image).to(tl.int64)
    pix = (block % blocks_per_image) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.arange(0, BLOCK_C)
    pmask = (pix < N) & live
    cmask = c < C
    offsets = (b * C + c[:, None]) * N + pix[None, :]
    mask = cmask[:, None] & pmask[None, :]
    xt = tl.load(x + offsets, mask=mask, other=0.0)

    y0, y1, ly = bilinear_tap(pix // W, source_scale(h, H, OPMATH), h, OPMATH)
    x0, x1, lx = bilinear_tap(pix % W, source_scale(w, W, OPMATH), w, OPMATH)
    plane = guide + b * h * w
    g = bilinear_sample(plane, y0, y1, ly, x0, x1, lx, w, pmask, OPMATH)

    # w_hidden [C+1, C+1]: rows j < C against x, column C against the guide, row C apart.
    square = c[:, None] * (C + 1) + c[None, :]
    w_main = tl.load(w_hidden + square, mask=cmask[:, None] & cmask[None, :], other=0.0)
    w_guide = tl.load(w_hidden + c * (C + 1) + C, mask=cmask, other=0.0).to(OPMATH)
    w_last = tl.load(w_hidden + C * (C + 1) + c, mask=cmask, other=0.0).to(OPMATH)
    z = _matmul(w_main, xt, USE_DOT).to(OPMATH) + w_guide[:, None] * g[None, :]
    z += tl.load(b_hidden + c, mask=cmask, other=0.0).to(OPMATH)[:, None]
    z_last = (tl.sum(w_last[:, None] * xt.to(OPMATH), axis=0)
              + tl.load(w_hidden + C * (C + 1) + C).to(OPMATH) * g + tl.load(b_hidden + C).to(OPMATH))
    w_g = tl.load(w_gate + c, mask=cmask, other=0.0).to(OPMATH)
    s = (tl.sum(w_g[:, None] * _relu(z), axis=0) + tl.load(w_gate + C).to(OPMATH) * _relu(z_last)
         + tl.load(b_gate).to(OPMATH))
    gate = 1.0 / (1.0 + tl.exp(-s))
    return offsets, b * N + pix, mask, pmask, xt, g, z, z_last, gate


# Sizes are never specialized: a size of 1 would become a constexpr, which has no .to().
@triton.jit(do_not_specialize=["H", "W", "h", "w"])
def _forward_kernel(x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out, out,
                    H, W, h, w, C: tl.constexpr, BLOCK_C: tl.constexpr,
                    OPMATH: tl.constexpr, USE_DOT: tl.constexpr, BLOCK_P: tl.constexpr):
    offsets, _, mask, _, xt, _, _, _, gate = _load_block(
        x, guide, w_hidden, b_hidden, w_gate, b_gate, tl.program_id(0), True, H, W, h, w,
        C, BLOCK_C, BLOCK_P, OPMATH, USE_DOT)
    c = tl.arange(0, BLOCK_C)
    cmask = c < C
    wo = tl.load(w_out + c[:, None] * C + c[None, :], mask=cmask[:, None] & cmask[None, :], other=0.0)
    o = _matmul(wo, xt, USE_DOT).to(OPMATH) * (1.0 + gate)[None, :]
    tl.store(out + offsets, o.to(out.dtype.element_ty), mask=mask)


_forward_tuned = triton.autotune(configs=_forward_configs(), key=["C", "H", "W", "OPMATH"])(_forward_kernel)


@triton.jit(do_not_specialize=["H", "W", "h", "w"])
def _backward_kernel(grad_out, x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out,
                     grad_x, grad_guide_full, partials, blocks, blocks_per_program, H, W, h, w,
                     C: tl.constexpr, BLOCK_C: tl.constexpr, OPMATH: tl.constexpr,
                     USE_DOT: tl.constexpr, BLOCK_P: tl.constexpr):
    """partials [programs, E] (OPMATH): the program's sums of the weight gradients, laid out as
    w_hidden [C+1, C+1], b_hidden [C+1], w_gate [C+1], b_gate [1], w_out [C, C]."""
    pid = tl.program_id(0)
    c = tl.arange(0, BLOCK_C)
    cmask = c < C
    square_mask = cmask[:, None] & cmask[None, :]
    # Weights in OPMATH: the backward's products take fp32 (fp64) operands on both sides.
    wo = tl.load(w_out + c[:, None] * C + c[None, :], mask=square_mask, other=0.0).to(OPMATH)
    w_main = tl.load(w_hidden + c[:, None] * (C + 1) + c[None, :], mask=square_mask, other=0.0).to(OPMATH)
    w_guide = tl.load(w_hidden + c * (C + 1) + C, mask=cmask, other=0.0).to(OPMATH)
    w_last = tl.load(w_hidden + C * (C + 1) + c, mask=cmask, other=0.0).to(OPMATH)
    w_corner = tl.load(w_hidden + C * (C + 1) + C).to(OPMATH)
    w_g = tl.load(w_gate + c, mask=cmask, other=0.0).to(OPMATH)
    w_g_last = tl.load(w_gate + C).to(OPMATH)

    d_wo = tl.zeros([BLOCK_C, BLOCK_C], OPMATH)
    d_main = tl.zeros([BLOCK_C, BLOCK_C], OPMATH)
    d_guide = tl.zeros([BLOCK_C], OPMATH)  # w_hidden[:C, C]
    d_last = tl.zeros([BLOCK_C], OPMATH)   # w_hidden[C, :C]
    d_bh = tl.zeros([BLOCK_C], OPMATH)
    d_wg = tl.zeros([BLOCK_C], OPMATH)
    d_corner = tl.zeros([BLOCK_P], OPMATH)  # per-pixel lanes of the scalar sums, reduced at the end
    d_bh_last = tl.zeros([BLOCK_P], OPMATH)
    d_wg_last = tl.zeros([BLOCK_P], OPMATH)
    d_bg = tl.zeros([BLOCK_P], OPMATH)
    for i in range(blocks_per_program):
        block = pid * blocks_per_program + i
        offsets, plane_offsets, mask, pmask, xt, g, z, z_last, gate = _load_block(
            x, guide, w_hidden, b_hidden, w_gate, b_gate, block, block < blocks, H, W, h, w,
            C, BLOCK_C, BLOCK_P, OPMATH, USE_DOT)
        xt = xt.to(OPMATH)
        go = tl.load(grad_out + offsets, mask=mask, other=0.0).to(OPMATH)
        # out = (1 + gate) * (w_out @ x): d(gate) = go . (w_out @ x), d(w_out @ x) = (1 + gate) go.
        dm = tl.sum(go * _matmul(wo, xt, USE_DOT), axis=0)
        mg = go * (1.0 + gate)[None, :]
        ds = tl.where(pmask, dm * gate * (1.0 - gate), 0.0)
        # ReLU's mask is torch's, result > 0 fails (so NaN passes): d(z) = 0 where z <= 0.
        dz = tl.where(z <= 0.0, 0.0, ds[None, :] * w_g[:, None])
        dz_last = tl.where(z_last <= 0.0, 0.0, ds * w_g_last)
        dx = (_matmul(tl.trans(wo), mg, USE_DOT) + _matmul(tl.trans(w_main), dz, USE_DOT)
              + w_last[:, None] * dz_last[None, :])
        tl.store(grad_x + offsets, dx.to(grad_x.dtype.element_ty), mask=mask)
        dg = tl.sum(w_guide[:, None] * dz, axis=0) + w_corner * dz_last
        tl.store(grad_guide_full + plane_offsets, dg, mask=pmask)

        d_wo += _matmul(mg, tl.trans(xt), USE_DOT)
        d_main += _matmul(dz, tl.trans(xt), USE_DOT)
        d_guide += tl.sum(dz * g[None, :], axis=1)
        d_last += tl.sum(xt * dz_last[None, :], axis=1)
        d_bh += tl.sum(dz, axis=1)
        d_wg += tl.sum(_relu(z) * ds[None, :], axis=1)
        d_corner += dz_last * g
        d_bh_last += dz_last
        d_wg_last += _relu(z_last) * ds
        d_bg += ds

    row = partials + pid.to(tl.int64) * ((C + 1) * (C + 1) + 2 * (C + 1) + 1 + C * C)
    tl.store(row + c[:, None] * (C + 1) + c[None, :], d_main, mask=square_mask)
    tl.store(row + c * (C + 1) + C, d_guide, mask=cmask)
    tl.store(row + C * (C + 1) + c, d_last, mask=cmask)
    tl.store(row + C * (C + 1) + C, tl.sum(d_corner, axis=0))
    bias = row + (C + 1) * (C + 1)
    tl.store(bias + c, d_bh, mask=cmask)
    tl.store(bias + C, tl.sum(d_bh_last, axis=0))
    tl.store(bias + C + 1 + c, d_wg, mask=cmask)
    tl.store(bias + 2 * C + 1, tl.sum(d_wg_last, axis=0))
    tl.store(bias + 2 * C + 2, tl.sum(d_bg, axis=0))
    tl.store(bias + 2 * C + 3 + c[:, None] * C + c[None, :], d_wo, mask=square_mask)


def _constants(x: torch.Tensor) -> dict:
    fp64 = x.dtype == torch.float64
    return dict(C=x.shape[1], BLOCK_C=max(16, triton.next_power_of_2(x.shape[1])),
                OPMATH=tl.float64 if fp64 else tl.float32, USE_DOT=not fp64)


def _fp64_block(block_c: int) -> int:
    # The broadcast products hold [BLOCK_C, BLOCK_C, BLOCK_P] at once: keep that near 16K.
    return max(16, 16384 // block_c ** 2)


def gated_conv_forward(x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out):
    """Launch on contiguous, already-checked inputs; see fastmatte.ops.gated_conv."""
    out = torch.empty_like(x)
    if out.numel() == 0:
        return out
    B, _, H, W = x.shape
    args = (x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out, out, H, W, *guide.shape[2:])
    constants = _constants(x)
    if constants["USE_DOT"]:
        _forward_tuned[lambda m: (B * triton.cdiv(H * W, m["BLOCK_P"]),)](*args, **constants)
    else:
        block = _fp64_block(constants["BLOCK_C"])
        _forward_kernel[(B * triton.cdiv(H * W, block),)](*args, **constants, BLOCK_P=block,
                                                          num_warps=1 if _INTERPRETER else 4)
    return out


def _backward_block(constants: dict) -> int:
    # About 8 live [BLOCK_C, BLOCK_P] fp32 tiles per program: keep each near 2K elements.
    if not constants["USE_DOT"]:
        return _fp64_block(constants["BLOCK_C"])
    return 64 if _INTERPRETER else max(16, 2048 // constants["BLOCK_C"])


def gated_conv_backward(grad_out, x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out):
    """(grad_x, grad_guide, grad_w_hidden, grad_b_hidden, grad_w_gate, grad_b_gate, grad_w_out)
    on contiguous, already-checked inputs; deterministic (no atomics)."""
    weights = (w_hidden, b_hidden, w_gate, b_gate, w_out)
    if x.numel() == 0:
        return (torch.zeros_like(x), torch.zeros_like(guide), *(torch.zeros_like(t) for t in weights))
    B, _, H, W = x.shape
    constants = _constants(x)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    block = _backward_block(constants)
    blocks = B * triton.cdiv(H * W, block)
    per_program = triton.cdiv(blocks, MAX_BACKWARD_PROGRAMS)
    programs = triton.cdiv(blocks, per_program)
    grad_x = torch.empty_like(x)
    grad_guide_full = torch.empty((B, 1, H, W), dtype=acc, device=x.device)
    sizes = [t.numel() for t in weights]
    partials = torch.empty((programs, sum(sizes)), dtype=acc, device=x.device)
    _backward_kernel[(programs,)](
        grad_out, x, guide, *weights, grad_x, grad_guide_full, partials, blocks, per_program,
        H, W, *guide.shape[2:], **constants, BLOCK_P=block,
        num_warps=1 if _INTERPRETER else (4 if constants["BLOCK_C"] <= 32 else 8))
    grad_guide = torch.ops.aten.upsample_bilinear2d_backward(
        grad_guide_full, [H, W], list(guide.shape), False).to(x.dtype)
    total = sum_partials(partials, torch.empty(sum(sizes), dtype=x.dtype, device=x.device))
    return (grad_x, grad_guide,
            *(part.view(t.shape).clone() for part, t in zip(total.split(sizes), weights)))
