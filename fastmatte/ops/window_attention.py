"""fastmatte.ops.window_attention: Swin's (shifted) window attention in one pass over qkv."""

import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import (FLOAT_DTYPES, MAX_TABLE_RANGE, check_int, check_output_size,
                                   check_tensor, fail)
from fastmatte.ops.window_attention_backward import window_attention_backward

BACKENDS = OpBackends("window_attention", triton=True)


def window_attention(qkv: torch.Tensor, bias_table: torch.Tensor, window: int, window_size, shift, *,
                     backend=None) -> torch.Tensor:
    """Multi-head self-attention inside the (cyclically shifted) windows of a token map of any size.

    Args:
        qkv: [B, H, W, 3*C] float32/float64/float16/bfloat16, the qkv projection of a
            channels-last token map; the last axis is laid out [3 (q, k, v), heads, D].
        bias_table: [(2*window-1)^2, heads], qkv's dtype: the relative-position bias.
        window: int in [1, 23170], the window the table was made for (its rows are int32
            indices).
        window_size: (wh, ww), 1 <= wh, ww <= window. The map is zero-padded at the bottom/right
            to Hp x Wp, the multiples of the window size, as Swin does; the padding exists only
            inside the op.
        shift: (sh, sw), 0 <= sh < wh and 0 <= sw < ww: the padded map is rolled by (-sh, -sw)
            before it is cut into windows and rolled back after.
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns out [B, H, W, C] in qkv's dtype. Token (y, x) lies at the rolled position
    (ry, rx) = ((y - sh) mod Hp, (x - sw) mod Wp), in window (ry // wh, rx // ww) at
    (iy, ix) = (ry % wh, rx % ww). For every token and head h (D = C / heads):

        out[b, y, x, h] = sum_key softmax(q . k / sqrt(D) + bias_table[idx, h]) v

    over the real tokens of its window that are not blocked, idx = (iy_q - iy_k + window - 1) *
    (2 * window - 1) + (ix_q - ix_k + window - 1). A key is blocked when it lies in another shift
    region than the query on either axis: along an axis of padded length P, window w and shift
    s > 0, the regions of the rolled coordinate r are r < P - w, P - w <= r < P - s, and r >= P - s
    (one region when s = 0). Swin's window attention (microsoft/Swin-Transformer's, with its
    img_mask and the padding masked as keys), before the output projection.

    Accumulates in fp32 (fp64 for fp64); no padded, rolled, partitioned, bias or mask tensor is
    made. Differentiable in qkv and bias_table: the backward (window_attention_backward)
    recomputes the softmax in plain PyTorch ops, on any device; it is not a fused kernel.
    Non-contiguous inputs are copied. A window whose [heads, N, N] attention matrix (N = wh*ww,
    fp32 or fp64) would take more than 2**40 bytes (1 TiB) is refused before anything is allocated.
    """
    window, window_size, shift = _check_inputs(qkv, bias_table, window, window_size, shift)
    choice = BACKENDS.resolve(qkv.device, backend)
    if choice == "torch":
        return reference.window_attention(qkv, bias_table, window, window_size, shift)
    run = torch.ops.fastmatte.window_attention_triton if choice == "triton" else torch.ops.fastmatte.window_attention
    return run(qkv.contiguous(), bias_table.contiguous(), window, window_size, shift)


def _check_inputs(qkv, bias_table, window, window_size, shift):
    """Every argument of window_attention; returns (window, [wh, ww], [sh, sw]) as Python ints."""
    op = "window_attention"
    check_tensor(op, "qkv", qkv, rank=4, layout="[B, H, W, 3*C]", floating=True)
    if qkv.dtype not in FLOAT_DTYPES:
        fail(op, f"qkv must be float32, float64, float16 or bfloat16, got {qkv.dtype}")
    window = check_int(op, "window", window, 1, MAX_TABLE_RANGE)
    check_tensor(op, "bias_table", bias_table, rank=2, layout="[(2*window-1)^2, heads]", dtype=qkv.dtype,
                 device=qkv.device)
    heads = bias_table.shape[1]
    if bias_table.shape[0] != (2 * window - 1) ** 2 or heads == 0:
        fail(op, f"bias_table must be [(2*window-1)^2 = {(2 * window - 1) ** 2}, heads >= 1] for window "
                 f"{window}, got {list(bias_table.shape)}")
    channels = qkv.shape[3]
    if channels == 0 or channels % (3 * heads):
        fail(op, f"qkv's last axis must be 3 * heads * D with heads = bias_table.shape[1] = {heads}, "
                 f"got {channels}")
    window_size = [check_int(op, f"window_size[{i}]", n, 1, window, bound="window")
                   for i, n in enumerate(_pair(op, "window_size", window_size))]
    shift = [check_int(op, f"shift[{i}]", n, 0, window_size[i] - 1, bound=f"window_size[{i}] - 1")
             for i, n in enumerate(_pair(op, "shift", shift))]
    tokens = window_size[0] * window_size[1]  # a window's [heads, N, N] scores are made per call
    acc = torch.float64 if qkv.dtype == torch.float64 else torch.float32
    check_output_size(op, "the attention matrix of a window", (heads, tokens, tokens), acc)
    return window, window_size, shift


def _pair(op, name, value):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"fastmatte.{op}: {name} must be a pair of ints, got {value!r}")
    return value


@torch.library.custom_op("fastmatte::window_attention_triton", mutates_args=())
def _window_attention_triton(qkv: torch.Tensor, bias_table: torch.Tensor, window: int, window_size: list[int],
                             shift: list[int]) -> torch.Tensor:
    """fastmatte::window_attention with the Triton kernel (same arguments and semantics)."""
    _check_inputs(qkv, bias_table, window, window_size, shift)  # called directly too
    from fastmatte.kernels.window_attention import window_attention_forward  # after TRITON_INTERPRET

    return window_attention_forward(qkv, bias_table, window, window_size, shift)


def _forward_fake(qkv, bias_table, window, window_size, shift):
    return qkv.new_empty(qkv.shape[:3] + (qkv.shape[3] // 3,))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:2])
    ctx.layout = inputs[2:]


def _backward(ctx, grad_out):
    qkv, bias_table = ctx.saved_tensors
    grad_qkv, grad_table = window_attention_backward(grad_out, qkv, bias_table, *ctx.layout)
    return grad_qkv, grad_table, None, None, None


_window_attention_triton.register_fake(_forward_fake)
torch.library.register_autograd("fastmatte::window_attention_triton", _backward, setup_context=_setup_context)
if HAS_C:
    torch.library.register_fake("fastmatte::window_attention", _forward_fake)
    torch.library.register_autograd("fastmatte::window_attention", _backward, setup_context=_setup_context)
