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
