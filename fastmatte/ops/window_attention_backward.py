"""The gradient of window_attention, in plain PyTorch ops on any device: the windows' softmax is
recomputed and the attention gradients follow from it (no fused kernel; inference is what the
fused forward is for)."""
import math

import torch
import torch.nn.functional as F

from fastmatte.reference.window_attention import padded_size, window_masks


def window_attention_backward(grad_out, qkv, bias_table, window, window_size, shift):
    """(grad_qkv [B, H, W, 3C], grad_table [(2w-1)^2, heads]) of fastmatte.ops.window_attention
    for grad_out [B, H, W, C], in qkv's and bias_table's dtypes (computed in fp32, fp64 for
    fp64). The table's gradient is summed by a one-hot matrix product: deterministic everywhere."""
    batch, height, width, channels = qkv.shape
    (wh, ww), (sh, sw) = window_size, shift
    hp, wp = padded_size(height, width, window_size)
    heads = bias_table.shape[1]
    dim = channels // 3 // heads
    nh, nw, n = hp // wh, wp // ww, wh * ww
    acc = torch.float64 if qkv.dtype == torch.float64 else torch.float32

    def windows(t, parts):  # [B, Hp, Wp, parts*heads*dim] -> [parts, B, nW, heads, N, dim], rolled
        t = torch.roll(t, shifts=(-sh, -sw), dims=(1, 2)) if sh or sw else t
        t = t.reshape(batch, nh, wh, nw, ww, parts, heads, dim).permute(5, 0, 1, 3, 6, 2, 4, 7)
        return t.reshape(parts, batch, nh * nw, heads, n, dim)

    def unwindows(t, parts):  # the inverse of windows
        t = t.reshape(parts, batch, nh, nw, heads, wh, ww, dim).permute(1, 2, 5, 3, 6, 0, 4, 7)
        t = t.reshape(batch, hp, wp, parts * heads * dim)
        return torch.roll(t, shifts=(sh, sw), dims=(1, 2)) if sh or sw else t

    def pad(t):  # the zero padding to the windows, as in the forward
        return F.pad(t.to(acc), (0, 0, 0, wp - width, 0, hp - height))

    q, k, v = windows(pad(qkv), 3)
    grad_o = windows(pad(grad_out), 1)[0]
    index, blocked = window_masks((hp, wp), window, window_size, shift, (height, width), qkv.device)
    bias = bias_table.to(acc)[index].view(n, n, heads).permute(2, 0, 1)
    scale = 1 / math.sqrt(dim)
    scores = q @ k.transpose(-1, -2) * scale + bias  # [B, nW, heads, N, N]
    if blocked is not None:
        # a padded query's own key is blocked; its row is left unmasked (finite, and its
        # gradient is zero), every real query keeps at least its own key
        real_query = ~blocked.diagonal(dim1=-2, dim2=-1)[..., None]
        scores = scores.masked_fill(blocked & real_query, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    grad_v = p.transpose(-1, -2) @ grad_o
    grad_p = grad_o @ v.transpose(-1, -2)
    grad_s = p * (grad_p - (grad_p * p).sum(-1, keepdim=True))
    grad_q, grad_k = grad_s @ k * scale, grad_s.transpose(-1, -2) @ q * scale
    grad_bias = grad_s.sum((0, 1)).permute(1, 2, 0).reshape(n * n, heads)
    one_hot = F.one_hot(index, bias_table.shape[0]).to(acc)
    grad_table = one_hot.T @ grad_bias
    grad_qkv = unwindows(torch.stack([grad_q, grad_k, grad_v]), 3)[:, :height, :width]
    return grad_qkv.to(qkv.dtype, memory_format=torch.contiguous_format), grad_table.to(bias_table.dtype)
