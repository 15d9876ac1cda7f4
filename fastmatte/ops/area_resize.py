"""fastmatte.ops.area_resize: F.adaptive_avg_pool2d (F.interpolate(mode="area")), separable."""
import numbers
from collections.abc import Sequence

import torch
from torch._prims_common import suggest_memory_format

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import FLOAT_DTYPES, INT32_MAX, check_int, check_output_size, check_tensor, fail

BACKENDS = OpBackends("area_resize", triton=True)


def area_resize(x, size, *, backend=None) -> torch.Tensor:
    """x resized to size by area averaging: F.adaptive_avg_pool2d(x, size), which is what
    F.interpolate(x, size, mode="area") runs (MODNet's resize of the photo to the network size and
    of the matte back).

    Args:
        x: [B, C, h, w], float32, float64, float16 or bfloat16, C, h, w >= 1 (B may be 0), any
            layout.
        size: (H, W), ints >= 1 (or one int for both); smaller or larger than (h, w), any ratio.
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        [B, C, H, W] in x's dtype and in x's (suggested) memory format, NCHW or channels-last, as
        ATen returns it: out[b, c, i, j] is the mean of x[b, c, hs:he, ws:we] with hs = floor(i * h
        / H), he = ceil((i + 1) * h / H) (ATen's integer start_index / end_index), likewise ws, we.
        Half types accumulate in float32. Each window is summed, then divided by its size kh * kw,
        as ATen does (it adds in another order, columns innermost, and divides by kh then by kw),
        so float results agree with ATen's to rounding.

    The CPU kernel reads x once (each output row's source rows summed into a row buffer, then each
    column's window of it); the Triton kernel reads x through its strides. Differentiable in x: the
    backward is one op for every backend (ATen's _adaptive_avg_pool2d_backward).
    """
    size = _check_inputs(x, size)
    choice = BACKENDS.resolve(x.device, backend)
    if choice == "torch":
        return reference.area_resize(x, size)
    if choice == "triton":
        return torch.ops.fastmatte.area_resize_triton(x, size)
    return torch.ops.fastmatte.area_resize(x, size)


def _check_inputs(x, size):
    """size as a list of two Python ints, or an error that names the argument."""
    op = "area_resize"
    check_tensor(op, "x", x, rank=4, layout="[B, C, h, w]", floating=True)
    if x.dtype not in FLOAT_DTYPES:
        fail(op, f"x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if x.shape[1] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        fail(op, f"x must be [B, C, h, w] with C, h, w >= 1, got {list(x.shape)}")
    if isinstance(size, (numbers.Integral, torch.SymInt)) and not isinstance(size, bool):
        size = (size, size)
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"fastmatte.{op}: size must be (H, W), two ints >= 1, got {size!r}")
    size = [check_int(op, "size[0] (H)", size[0], 1, INT32_MAX),
            check_int(op, "size[1] (W)", size[1], 1, INT32_MAX)]
    check_output_size(op, "the output", (x.shape[0], x.shape[1], *size), x.dtype)
    return size


@torch.library.custom_op("fastmatte::area_resize_triton", mutates_args=())
def _area_resize_triton(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """fastmatte::area_resize with the Triton kernel (same arguments and semantics)."""
    size = _check_inputs(x, size)  # called directly too
    from fastmatte.kernels.area_resize import area_resize_forward  # after TRITON_INTERPRET

    return area_resize_forward(x, size)


def _empty_like_format(x, shape):
    """A tensor of `shape` in x's suggested memory format with torch.empty's strides, as every
    kernel (and ATen) makes its output and the backward its gradient."""
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=suggest_memory_format(x))


def _forward_fake(x, size):
    return _empty_like_format(x, (x.shape[0], x.shape[1], size[0], size[1]))


def _backward_fake(grad, x, size):
    return _empty_like_format(x, x.shape)


def _setup_context(ctx, inputs, output):
    x, size = inputs
    ctx.save_for_backward(x)
    ctx.size = size


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.ops.fastmatte.area_resize_backward(grad, x, ctx.size), None


_area_resize_triton.register_fake(_forward_fake)
torch.library.register_autograd("fastmatte::area_resize_triton", _backward, setup_context=_setup_context)
if HAS_C:
    torch.library.register_fake("fastmatte::area_resize", _forward_fake)
    torch.library.register_fake("fastmatte::area_resize_backward", _backward_fake)
    torch.library.register_autograd("fastmatte::area_resize", _backward, setup_context=_setup_context)
