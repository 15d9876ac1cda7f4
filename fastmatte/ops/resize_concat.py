"""fastmatte.ops.resize_concat: torch.cat of bilinearly resized feature maps in one pass."""
from collections.abc import Sequence

import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import FLOAT_DTYPES, INT32_MAX, check_int, check_output_size, check_tensor, fail

BACKENDS = OpBackends("resize_concat", triton=True)


def resize_concat(tensors, size, *, backend=None) -> torch.Tensor:
    """The concatenation along channels of feature maps, each bilinearly resized to one size.

    Args:
        tensors: a list or tuple of 1+ tensors [B, C_i, h_i, w_i], float32, float64, float16 or
            bfloat16, of one batch size, dtype and device, C_i, h_i, w_i >= 1 (as F.interpolate
            takes them).
        size: (H, W), ints >= 1.
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        [B, sum C_i, H, W] in the inputs' dtype, channels-last (torch.channels_last), whatever the
        inputs' layout: it feeds a convolution, which runs channels-last. out[:, offset_i :
        offset_i + C_i] is tensors[i] resized with F.interpolate(size=(H, W), mode="bilinear",
        align_corners=False) (source coordinate (dst + 0.5) * h_i / H - 0.5, clamped at 0; no
        antialias), or tensors[i] itself when it is already H x W
        (fastmatte.reference.resize_concat). Half types compute in float32.

    One pass writes the output once; no resized tensor or concatenation copy is made. NCHW and
    channels-last inputs are read as they are (other layouts are copied on the CPU). Differentiable
    in every input: the backward is one op for every backend (each gradient, channels-last, is
    ATen's upsample_bilinear2d_backward of its channel slice).
    """
    tensors, size = _check_inputs(tensors, size)
    choice = BACKENDS.resolve(tensors[0].device, backend)
    if choice == "torch":
        return reference.resize_concat(tensors, size)
    if choice == "triton":
        return torch.ops.fastmatte.resize_concat_triton(tensors, size)
    return torch.ops.fastmatte.resize_concat(tensors, size)


def _check_inputs(tensors, size):
    """The inputs as a list of tensors and size as a list of two Python ints, or an error that
    names the argument."""
    op = "resize_concat"
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"fastmatte.{op}: tensors must be a list or tuple of tensors, got "
                        f"{type(tensors).__name__}")
    if len(tensors) == 0:
        fail(op, "tensors must hold at least one tensor, got none")
    first = None
    for i, t in enumerate(tensors):
        name = f"tensors[{i}]"
        if first is None:
            check_tensor(op, name, t, rank=4, layout="[B, C, h, w]", floating=True)
            if t.dtype not in FLOAT_DTYPES:
                fail(op, f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")
            first = t
        else:
            check_tensor(op, name, t, rank=4, layout="[B, C, h, w]")
            if t.dtype != first.dtype:
                fail(op, f"{name} must be {first.dtype} (tensors[0]'s dtype), got {t.dtype}")
            if t.device != first.device:
                fail(op, f"{name} is on {t.device} but tensors[0] is on {first.device}")
            if t.shape[0] != first.shape[0]:
                fail(op, f"{name} must have tensors[0]'s batch {first.shape[0]}, got {list(t.shape)}")
        if t.shape[1] == 0 or t.shape[2] == 0 or t.shape[3] == 0:
            fail(op, f"{name} must be [B, C, h, w] with C, h, w >= 1, got {list(t.shape)}")
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise TypeError(f"fastmatte.{op}: size must be (H, W), two ints >= 1, got {size!r}")
    size = [check_int(op, "size[0] (H)", size[0], 1, INT32_MAX),
            check_int(op, "size[1] (W)", size[1], 1, INT32_MAX)]
    channels = sum(t.shape[1] for t in tensors)
    check_output_size(op, "the output", (first.shape[0], channels, *size), first.dtype)
    return list(tensors), size


@torch.library.custom_op("fastmatte::resize_concat_triton", mutates_args=())
def _resize_concat_triton(tensors: list[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """fastmatte::resize_concat with the Triton kernel (same arguments and semantics)."""
    tensors, size = _check_inputs(tensors, size)  # called directly too
    from fastmatte.kernels.resize_concat import resize_concat_forward  # after TRITON_INTERPRET

    return resize_concat_forward(tensors, size)


def _forward_fake(tensors, size):
    first = tensors[0]
    channels = sum(t.shape[1] for t in tensors)
    return torch.empty((first.shape[0], channels, size[0], size[1]), dtype=first.dtype,
                       device=first.device, memory_format=torch.channels_last)


def _backward_fake(grad, tensors, size):
    return [torch.empty(t.shape, dtype=t.dtype, device=t.device, memory_format=torch.channels_last)
            for t in tensors]


def _setup_context(ctx, inputs, output):
    tensors, size = inputs
    ctx.save_for_backward(*tensors)
    ctx.size = size


def _backward(ctx, grad):
    grads = torch.ops.fastmatte.resize_concat_backward(grad, list(ctx.saved_tensors), ctx.size)
    return list(grads), None


_resize_concat_triton.register_fake(_forward_fake)
torch.library.register_autograd("fastmatte::resize_concat_triton", _backward, setup_context=_setup_context)
if HAS_C:
    torch.library.register_fake("fastmatte::resize_concat", _forward_fake)
    torch.library.register_fake("fastmatte::resize_concat_backward", _backward_fake)
    torch.library.register_autograd("fastmatte::resize_concat", _backward, setup_context=_setup_context)
