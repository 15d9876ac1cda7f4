"""The pieces of a Swin Transformer stage: window layout and attention masks for maps of any
size, window attention with relative position bias, the transformer block and patch merging.

Token maps are channels-last [B, H, W, C] throughout (LayerNorm and Linear act on the last
dimension). Parameter names follow microsoft/Swin-Transformer so its checkpoints load.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def window_layout(height: int, width: int, window: int):
    """((wh, ww), (sh, sw)): the window and the cyclic shift used on a height x width map.

    A dimension no longer than `window` is covered by one window of its own length and is not
    shifted (the official code does this when min(H, W) <= window; here each dimension decides
    for itself, so a 3 x 40 map keeps 3 x 7 windows and its shift along the width).
    """
    wh, ww = min(window, height), min(window, width)
    sh = window // 2 if height > window else 0
    sw = window // 2 if width > window else 0
    return (wh, ww), (sh, sw)


def relative_position_index(window: int) -> torch.Tensor:
    """int64 [w, w, w, w]: entry [qy, qx, ky, kx] is the row of the (2w-1)^2-row bias table for
    query (qy, qx) and key (ky, kx) of a w x w window: (qy-ky+w-1) * (2w-1) + (qx-kx+w-1).

    A smaller wh x ww window uses the slice [:wh, :ww, :wh, :ww]: same offsets, same rows.
    """
    coords = torch.arange(window)
    dy = coords[:, None, None, None] - coords[None, None, :, None]
    dx = coords[None, :, None, None] - coords[None, None, None, :]
    return (dy + window - 1) * (2 * window - 1) + (dx + window - 1)


def blocked_keys(height: int, width: int, window, shift, device=None):
    """bool [nW, 1, N, N] or None: True where a query (row) must not attend to a key (column).

    The map (height x width real tokens) is padded at the bottom/right to a multiple of the
    window, then rolled by (-sh, -sw), then cut into nW = (Hp/wh) * (Wp/ww) windows of
    N = wh * ww tokens in raster order. Padded tokens are blocked as keys. With a shift, tokens
    that the roll wrapped around are also blocked from the others in their window: the regions
    [0, Hp-wh), [Hp-wh, Hp-sh), [Hp-sh, Hp) of each axis, as in the Swin paper. None when
    nothing is blocked (no padding, no shift).
    """
    (wh, ww), (sh, sw) = window, shift
    hp, wp = math.ceil(height / wh) * wh, math.ceil(width / ww) * ww
    if (hp, wp) == (height, width) and sh == sw == 0:
        return None

    def axis(length, padded, size, offset):
        pos = torch.arange(padded, device=device)
        real = (pos + offset) % padded < length  # the rolled map holds original index pos + offset
        region = (pos >= padded - size).long() + (pos >= padded - offset).long() if offset else pos * 0
        return real, region

    real_y, region_y = axis(height, hp, wh, sh)
    real_x, region_x = axis(width, wp, ww, sw)
    real = real_y[:, None] & real_x[None, :]
    region = region_y[:, None] * 3 + region_x[None, :]

    def windows(grid):  # [Hp, Wp] -> [nW, N]
        return grid.view(hp // wh, wh, wp // ww, ww).transpose(1, 2).reshape(-1, wh * ww)

    real, region = windows(real), windows(region)
    blocked = (region[:, :, None] != region[:, None, :]) | ~real[:, None, :]
    return blocked[:, None]


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: in training, zero each sample's residual branch with probability
    `rate` and scale the kept ones by 1 / (1 - rate); identity otherwise."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    kept = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * kept / keep


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias.

    forward(x[B, Hp, Wp, C], window=(wh, ww), index[N*N] int64, blocked[nW, 1, N, N] bool or
    None) -> [B, Hp, Wp, C] with Hp, Wp multiples of wh, ww: softmax(q k^T / sqrt(head_dim) +
    table[index]) v per window and head, then the output projection. Blocked pairs get a
    finite, very negative logit (never -inf: a query whose keys are all blocked, which only
    happens for padded queries, stays finite instead of turning NaN).
    """

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x, window, index, blocked=None):
        batch, hp, wp, dim = x.shape
        (wh, ww), heads = window, self.num_heads
        nh, nw, n, d = hp // wh, wp // ww, wh * ww, dim // heads
        # One copy into [B, windows * heads, N, d]: windows and heads share SDPA's head axis, so
        # the mask is one [1, windows * heads, N, N] tensor broadcast over the batch.
        qkv = self.qkv(x).view(batch, nh, wh, nw, ww, 3, heads, d)
        q, k, v = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, batch, nh * nw * heads, n, d)
        bias = self.relative_position_bias_table[index].view(n, n, heads).permute(2, 0, 1).to(q.dtype)
        if blocked is None:
            mask = bias.expand(nh * nw, heads, n, n)
        else:
            mask = torch.where(blocked, torch.finfo(q.dtype).min / 2, bias)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.reshape(1, nh * nw * heads, n, n))
        out = out.view(batch, nh, nw, heads, wh, ww, d).permute(0, 1, 4, 2, 5, 3, 6)
        return self.proj(out.reshape(batch, hp, wp, dim))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 on the last dimension."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)) in (shifted) windows, then x + mlp(norm2(x)).

    forward(x[B, Hp, Wp, C], window, shift=(sh, sw), index, blocked) -> [B, Hp, Wp, C]; the map
    is rolled by (-sh, -sw) around the attention and back (see blocked_keys for the masks).
    """

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, drop_path_rate: float):
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, window, shift, index, blocked=None):
        sh, sw = shift
        h = self.norm1(x)
        if sh or sw:
            h = torch.roll(h, shifts=(-sh, -sw), dims=(1, 2))
        h = self.attn(h, window, index, blocked)
        if sh or sw:
            h = torch.roll(h, shifts=(sh, sw), dims=(1, 2))
        x = x + drop_path(h, self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class PatchMerging(nn.Module):
    """2x2 token merge: [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C].

    An odd H or W is padded with a zero row/column first. The four tokens of each 2x2 cell are
    concatenated in the official order (dy, dx) = (0,0), (1,0), (0,1), (1,1), then LayerNorm(4C)
    and a bias-free Linear(4C, 2C).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        batch, height, width, dim = x.shape
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        h2, w2 = (height + 1) // 2, (width + 1) // 2
        # [B, h, dy, w, dx, C] -> [B, h, w, dx, dy, C]: dy varies fastest, the official order.
        x = x.reshape(batch, h2, 2, w2, 2, dim).permute(0, 1, 3, 4, 2, 5).reshape(batch, h2, w2, 4 * dim)
        return self.reduction(self.norm(x))
