"""fastmatte.ops.ibnorm: MODNet's IBNorm in inference, with its ReLU, in two passes over x."""
import math
import numbers

import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import FLOAT_DTYPES, check_tensor, fail

BACKENDS = OpBackends("ibnorm", triton=True)


def ibnorm(x: torch.Tensor, bn_scale: torch.Tensor, bn_shift: torch.Tensor, in_weight: torch.Tensor,
           in_bias: torch.Tensor, *, eps: float = 1e-5, relu: bool = True, backend=None) -> torch.Tensor:
    """Instance-batch normalization (MODNet's IBNorm, BatchNorm in eval) and its ReLU in one op.

    Args:
        x: [B, C, H, W] float32, float64, float16 or bfloat16, H, W >= 1, any B (0 gives an empty
            output); NCHW or channels-last (both run without a copy; other layouts are copied).
        bn_scale, bn_shift: [K], 0 <= K <= C, x's dtype and device: the BatchNorm of the first K
            channels folded to an affine map (scale = weight / sqrt(running_var + eps),
            shift = bias - running_mean * scale).
        in_weight, in_bias: [C - K], x's dtype and device: the InstanceNorm's affine parameters
            (ones and zeros for a non-affine InstanceNorm).
        eps: the InstanceNorm's epsilon, a positive finite number.
        relu: apply max(y, 0) to every channel.
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        [B, C, H, W] in x's dtype, laid out as torch.empty_like(x) (channels-last in, channels-last
        out): channels [0, K) x * bn_scale + bn_shift; channels [K, C)
        (x - mean) / sqrt(var + eps) * in_weight + in_bias with the mean and biased variance over
        H x W per sample and channel; then max(y, 0) when relu (fastmatte.reference.ibnorm).
        The statistics are computed in float32 (float64 for float64) without cancellation, so a
        mean large against the spread costs no precision. A NaN in x makes its own output NaN on
        a BatchNorm channel and its whole (sample, channel) plane NaN on an instance channel (the
        statistics are NaN), as in torch; the ReLU passes NaN through, as torch.relu does.

    Differentiable in x and all four parameters; the backward is one op for every backend (ATen
    arithmetic that recomputes the statistics; the ReLU's gradient is zero where y <= 0).
    """
    eps = _check_inputs(x, bn_scale, bn_shift, in_weight, in_bias, eps, relu)
    choice = BACKENDS.resolve(x.device, backend)
    if choice == "torch":
        return reference.ibnorm(x, bn_scale, bn_shift, in_weight, in_bias, eps, relu)
    op = torch.ops.fastmatte.ibnorm_triton if choice == "triton" else torch.ops.fastmatte.ibnorm
    return op(x, bn_scale, bn_shift, in_weight, in_bias, eps, relu)


def _check_inputs(x, bn_scale, bn_shift, in_weight, in_bias, eps, relu) -> float:
    """Raises TypeError/ValueError naming the argument; returns eps as a float."""
    op = "ibnorm"
    check_tensor(op, "x", x, rank=4, layout="[B, C, H, W]", floating=True)
    if x.dtype not in FLOAT_DTYPES:
        fail(op, f"x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        fail(op, f"x must be [B, C, H, W] with H, W >= 1, got {list(x.shape)}")
    for name, t, layout in (("bn_scale", bn_scale, "[K]"), ("bn_shift", bn_shift, "[K]"),
                            ("in_weight", in_weight, "[C - K]"), ("in_bias", in_bias, "[C - K]")):
        check_tensor(op, name, t, rank=1, layout=layout, dtype=x.dtype, device=x.device)
    channels, k = x.shape[1], bn_scale.shape[0]
    if k > channels:
        fail(op, f"bn_scale must be [K] with K <= C = {channels} (x's channels), got {list(bn_scale.shape)}")
    if bn_shift.shape != bn_scale.shape:
        fail(op, f"bn_shift must have bn_scale's shape [{k}], got {list(bn_shift.shape)}")
    for name, t in (("in_weight", in_weight), ("in_bias", in_bias)):
        if t.shape[0] != channels - k:
            fail(op, f"{name} must be [C - K = {channels - k}] (x's {channels} channels less bn_scale's "
                     f"{k}), got {list(t.shape)}")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"fastmatte.{op}: eps must be a positive finite number, got {eps!r} "
                        f"({type(eps).__name__})")
    if not (math.isfinite(eps) and eps > 0):
        fail(op, f"eps must be a positive finite number, got {eps}")
    if not isinstance(relu, bool):
        raise TypeError(f"fastmatte.{op}: relu must be a bool, got {relu!r} ({type(relu).__name__})")
    return float(eps)


@torch.library.custom_op("fastmatte::ibnorm_triton", mutates_args=())
def _ibnorm_triton(x: torch.Tensor, bn_scale: torch.Tensor, bn_shift: torch.Tensor, in_weight: torch.Tensor,
                   in_bias: torch.Tensor, eps: float = 1e-5, relu: bool = True) -> torch.Tensor:
    """fastmatte::ibnorm with the Triton kernels (same arguments and semantics)."""
    _check_inputs(x, bn_scale, bn_shift, in_weight, in_bias, eps, relu)  # called directly too
    from fastmatte.kernels.ibnorm import ibnorm_forward  # after TRITON_INTERPRET

    return ibnorm_forward(x, bn_scale, bn_shift, in_weight, in_bias, eps, relu)


def _forward_fake(x, bn_scale, bn_shift, in_weight, in_bias, eps=1e-5, relu=True):
    return torch.empty_like(x)  # the kernels' own output: x's strides when x is dense


def _backward_fake(grad, x, bn_scale, bn_shift, in_weight, in_bias, eps, relu):
    return (torch.empty_like(x), bn_scale.new_empty(bn_scale.shape), bn_shift.new_empty(bn_shift.shape),
            in_weight.new_empty(in_weight.shape), in_bias.new_empty(in_bias.shape))


def _setup_context(ctx, inputs, output):
    x, bn_scale, bn_shift, in_weight, in_bias, eps, relu = inputs
    ctx.save_for_backward(x, bn_scale, bn_shift, in_weight, in_bias)
    ctx.eps, ctx.relu = eps, relu


def _backward(ctx, grad):
    grads = torch.ops.fastmatte.ibnorm_backward(grad, *ctx.saved_tensors, ctx.eps, ctx.relu)
    return (*grads, None, None)


_ibnorm_triton.register_fake(_forward_fake)
if HAS_C:
    torch.library.register_fake("fastmatte::ibnorm", _forward_fake)
    torch.library.register_fake("fastmatte::ibnorm_backward", _backward_fake)
    for name in ("fastmatte::ibnorm", "fastmatte::ibnorm_triton"):
        torch.library.register_autograd(name, _backward, setup_context=_setup_context)
