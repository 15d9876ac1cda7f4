"""Fake kernels and autograd shared by the two CRA attention ops: each is a C++ op
`fastmatte::<op>` (CPU kernel) plus its Triton twin `fastmatte::<op>_triton`, with backward ops
`<op>_backward(..., bucketing)` and `<op>_backward_triton(..., bucketing, deterministic)`; all
take (q, k, v, tiles, nbr, bias_table, search_range, bucketing), the forward ops with
bucketing="per_axis" by default."""
import torch

from fastmatte._extension import HAS_C


def _backward_fake(grad_out, q, k, v, tiles, nbr, bias_table, search_range, bucketing,
                   deterministic=False):
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v),
            torch.empty_like(bias_table))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:6])
    ctx.search_range, ctx.bucketing = inputs[6:8]


def _backward_args(ctx, grad_out):
    q, k, v, tiles, nbr, bias_table = ctx.saved_tensors
    return grad_out.contiguous(), q, k, v, tiles, nbr, bias_table, ctx.search_range, ctx.bucketing


def register_attention(op: str, forward_fake):
    """Registers fakes and autograd for fastmatte::<op> (if the extension is loaded) and
    fastmatte::<op>_triton. forward_fake(q, k, v, tiles, nbr, bias_table, search_range,
    bucketing="per_axis")."""

    def backward(ctx, grad_out):
        grad_q, grad_k, grad_v, grad_table = getattr(torch.ops.fastmatte, f"{op}_backward")(
            *_backward_args(ctx, grad_out))
        return grad_q, grad_k, grad_v, None, None, grad_table, None, None

    def backward_triton(ctx, grad_out):
        grad_q, grad_k, grad_v, grad_table = getattr(torch.ops.fastmatte, f"{op}_backward_triton")(
            *_backward_args(ctx, grad_out), torch.are_deterministic_algorithms_enabled())
        return grad_q, grad_k, grad_v, None, None, grad_table, None, None

    torch.library.register_fake(f"fastmatte::{op}_triton", forward_fake)
    torch.library.register_fake(f"fastmatte::{op}_backward_triton", _backward_fake)
    torch.library.register_autograd(f"fastmatte::{op}_triton", backward_triton,
                                    setup_context=_setup_context)
    if HAS_C:
        torch.library.register_fake(f"fastmatte::{op}", forward_fake)
        torch.library.register_fake(f"fastmatte::{op}_backward", _backward_fake)
        torch.library.register_autograd(f"fastmatte::{op}", backward, setup_context=_setup_context)
