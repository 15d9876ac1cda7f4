"""PyTorch's bilinear resampling (F.interpolate, align_corners=False) as Triton helpers, shared
by the kernels that upsample on the fly instead of building the full-resolution tensor. They
evaluate the expressions of ATen's CUDA kernel in its order; on a GPU Triton, like nvcc,
contracts the multiply-adds. Under TRITON_INTERPRET=1 they run unfused in NumPy."""
import triton
import triton.language as tl


@triton.jit
def source_scale(in_size, out_size, OPMATH: tl.constexpr):
    """PyTorch's scale in_size / out_size in OPMATH, correctly rounded (Triton's plain fp32
    division is an approximate one on GPUs). tl.cast, not .to: a size of 1 arrives as a plain
    int (Triton specializes integer arguments equal to 1 as constants)."""
    if OPMATH == tl.float64:
        return tl.cast(in_size, tl.float64) / tl.cast(out_size, tl.float64)
    else:
        return tl.math.div_rn(tl.cast(in_size, tl.float32), tl.cast(out_size, tl.float32))


@triton.jit
def bilinear_tap(dst, scale, in_size, OPMATH: tl.constexpr):
    """Source taps of integer output coordinates dst: src = max(scale * (dst + 0.5) - 0.5, 0) in
    OPMATH, i0 = floor(src), i1 = i0 + 1 except at the last cell; returns (i0, i1, lambda1)."""
    src = tl.maximum(scale * (dst.to(OPMATH) + 0.5) - 0.5, 0.0)
    i0 = src.to(tl.int32)  # truncation == floor, src >= 0
    i1 = tl.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, src - i0.to(OPMATH)


@triton.jit
def bilinear_sample(plane, y0, y1, ly, x0, x1, lx, w, mask, OPMATH: tl.constexpr):
    """The bilinear value of one [h, w] channel `plane` at the taps (y0, y1, ly) x (x0, x1, lx),
    blended in OPMATH as (1-ly) * ((1-lx) * v00 + lx * v01) + ly * ((1-lx) * v10 + lx * v11)."""
    v00 = tl.load(plane + y0 * w + x0, mask=mask, other=0.0).to(OPMATH)
    v01 = tl.load(plane + y0 * w + x1, mask=mask, other=0.0).to(OPMATH)
    v10 = tl.load(plane + y1 * w + x0, mask=mask, other=0.0).to(OPMATH)
    v11 = tl.load(plane + y1 * w + x1, mask=mask, other=0.0).to(OPMATH)
    return (1.0 - ly) * ((1.0 - lx) * v00 + lx * v01) + ly * ((1.0 - lx) * v10 + lx * v11)
