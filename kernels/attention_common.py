"""Pieces shared by the Triton kernels of the two CRA attention blocks."""
import triton
import triton.language as tl


@triton.jit
def sqrt_dim(DIM: tl.constexpr, ACC: tl.constexpr):
    """sqrt(DIM), correctly rounded like PyTorch's (tl.sqrt is approximate in fp32)."""
    x = tl.full([], DIM, ACC)
    if ACC == tl.float64:
        root = tl.sqrt(x)
    else:
        root = tl.sqrt_rn(x)
    return root


@triton.jit
def sum_partials_kernel(partials, out, programs, ENTRIES: tl.constexpr, BLOCK_P: tl.constexpr,
                        BLOCK_E: tl.constexpr, ACC: tl.constexpr):
    """out[e] = sum over programs of partials[program, e], always in the same order."""
    e = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    rows = tl.arange(0, BLOCK_P)
    acc = tl.zeros([BLOCK_P, BLOCK_E], ACC)
    for start in range(0, programs, BLOCK_P):
        p = start + rows
        mask = (p[:, None] < programs) & (e[None, :] < ENTRIES)
        acc += tl.load(partials + p[:, None].to(tl.int64) * ENTRIES + e[None, :], mask=mask, other=0.0)
    tl.store(out + e, tl.sum(acc, axis=0).to(out.dtype.element_ty), mask=e < ENTRIES)
