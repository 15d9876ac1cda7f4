"""fastmatte.ops.gated_conv: PP-Matting's gated convolution in one pass over the feature map."""
import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import FLOAT_DTYPES, check_tensor, fail

BACKENDS = OpBackends("gated_conv", triton=True)


def gated_conv(x: torch.Tensor, guide: torch.Tensor, w_hidden: torch.Tensor, b_hidden: torch.Tensor,
               w_gate: torch.Tensor, b_gate: torch.Tensor, w_out: torch.Tensor, *,
               backend=None) -> torch.Tensor:
    """A detail feature map modulated by a guidance map, then mixed by a 1x1 convolution.

    Args:
        x: [B, C, H, W] detail features, float32, float64, float16 or bfloat16.
        guide: [B, 1, h, w] guidance (any h, w: resized to H x W like
            F.interpolate(mode="bilinear", align_corners=False)); x's dtype and device.
        w_hidden: [C+1, C+1] first 1x1 conv over cat([x, guide]) (column C is the guide's);
            b_hidden: [C+1]; w_gate: [C+1] and b_gate: [1], the 1x1 conv to one gate channel;
            w_out: [C, C], the output 1x1 conv (no bias). All in x's dtype. With BatchNorm
            layers around the convolutions (as in PP-Matting) fold them in first:
            fastmatte.nn.GatedConv2d does.
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        [B, C, H, W] in x's dtype and, on the CPU, in x's memory layout (a channels-last x is read
        and the output written channels-last, without a copy; elsewhere x is made contiguous);
        per pixel, in fp32 (fp64 for fp64):
        ``hidden = relu(w_hidden @ [x; g] + b_hidden)``, ``gate = sigmoid(w_gate . hidden +
        b_gate)``, ``out = w_out @ (x * (1 + gate))``, g the resized guide. x and the low-res
        guide are read once and the output written once; no full-resolution intermediate.

    Differentiable in every input. Weight gradients are per-block partial sums added in a fixed
    order (deterministic); the guide's gradient goes through ATen's upsample_bilinear2d_backward,
    as eager F.interpolate's does (on CUDA that one adds with atomics, as eager's does).
    Non-contiguous inputs are copied.
    """
    _check_inputs(x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out)
    choice = BACKENDS.resolve(x.device, backend)
    args = (x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out)
    if choice == "torch":
        return reference.gated_conv(*args)
    keep_layout = choice == "cpu" and x.is_contiguous(memory_format=torch.channels_last)
    args = tuple(t if i == 0 and keep_layout else t.contiguous() for i, t in enumerate(args))
    if choice == "triton":
        return torch.ops.fastmatte.gated_conv_triton(*args)
    return torch.ops.fastmatte.gated_conv(*args)


def _check_inputs(x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out):
    op = "gated_conv"
    check_tensor(op, "x", x, rank=4, layout="[B, C, H, W]", floating=True)
    if x.dtype not in FLOAT_DTYPES:
        fail(op, f"x must be float32, float64, float16 or bfloat16, got {x.dtype}")
    B, C = x.shape[:2]
    if C == 0:
        fail(op, f"x must have at least one channel, got {list(x.shape)}")
    check_tensor(op, "guide", guide, rank=4, layout="[B, 1, h, w]", dtype=x.dtype, device=x.device)
    if guide.shape[:2] != (B, 1) or guide.shape[2] == 0 or guide.shape[3] == 0:
        fail(op, f"guide must be [B={B}, 1, h, w] with h, w >= 1, got {list(guide.shape)}")
    expected = {"w_hidden": [C + 1, C + 1], "b_hidden": [C + 1], "w_gate": [C + 1], "b_gate": [1],
                "w_out": [C, C]}
    for name, t in zip(expected, (w_hidden, b_hidden, w_gate, b_gate, w_out)):
        check_tensor(op, name, t, dtype=x.dtype, device=x.device)
        if list(t.shape) != expected[name]:
            fail(op, f"{name} must be {expected[name]} for x's C = {C}, got {list(t.shape)}")


@torch.library.custom_op("fastmatte::gated_conv_triton", mutates_args=())
def _gated_conv_triton(x: torch.Tensor, guide: torch.Tensor, w_hidden: torch.Tensor,
                       b_hidden: torch.Tensor, w_gate: torch.Tensor, b_gate: torch.Tensor,
                       w_out: torch.Tensor) -> torch.Tensor:
    """fastmatte::gated_conv with the Triton kernel (same arguments and semantics)."""
    _check_inputs(x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out)  # called directly too
    from fastmatte.kernels.gated_conv import gated_conv_forward  # after TRITON_INTERPRET

    return gated_conv_forward(x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out)


@torch.library.custom_op("fastmatte::gated_conv_backward_triton", mutates_args=())
def _gated_conv_backward_triton(
        grad_out: torch.Tensor, x: torch.Tensor, guide: torch.Tensor, w_hidden: torch.Tensor,
        b_hidden: torch.Tensor, w_gate: torch.Tensor, b_gate: torch.Tensor,
        w_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                      torch.Tensor, torch.Tensor, torch.Tensor]:
    from fastmatte.kernels.gated_conv import gated_conv_backward

    return gated_conv_backward(grad_out, x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out)


def _forward_fake(x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _cpu_forward_fake(x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out):
    """The C++ op's output: x's layout (contiguous or channels-last, the two it takes)."""
    return torch.empty_like(x)


def _backward_fake(grad_out, *inputs):
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in inputs)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):  # the backward op takes contiguous tensors (x may be channels-last)
    return torch.ops.fastmatte.gated_conv_backward(grad_out.contiguous(),
                                                   *(t.contiguous() for t in ctx.saved_tensors))


def _backward_triton(ctx, grad_out):
    return torch.ops.fastmatte.gated_conv_backward_triton(grad_out.contiguous(), *ctx.saved_tensors)


_gated_conv_triton.register_fake(_forward_fake)
_gated_conv_backward_triton.register_fake(_backward_fake)
torch.library.register_autograd("fastmatte::gated_conv_triton", _backward_triton,
                                setup_context=_setup_context)
if HAS_C:
    torch.library.register_fake("fastmatte::gated_conv", _cpu_forward_fake)
    torch.library.register_fake("fastmatte::gated_conv_backward", _backward_fake)
    torch.library.register_autograd("fastmatte::gated_conv", _backward, setup_context=_setup_context)
