"""Eager reference of window_attention (Swin's shifted-window attention): zero padding, roll,
window partition, a dense bias and mask per window, scaled_dot_product_attention, reverse, roll
back, crop."""
import math

import torch
import torch.nn.functional as F


def window_relative_index(window: int, device=None) -> torch.Tensor:
    """int64 [w, w, w, w]: entry [qy, qx, ky, kx] is the row of the (2w-1)^2-row bias table for
    query (qy, qx) and key (ky, kx) of a w x w window: (qy-ky+w-1) * (2w-1) + (qx-kx+w-1).

    A smaller wh x ww window uses the slice [:wh, :ww, :wh, :ww]: same offsets, same rows.
    """
    coords = torch.arange(window, device=device)
    dy = coords[:, None, None, None] - coords[None, None, :, None]
    dx = coords[None, :, None, None] - coords[None, None, None, :]
    return (dy + window - 1) * (2 * window - 1) + (dx + window - 1)


def blocked_keys(padded, window, shift, size, device=None):
    """bool [nW, 1, N, N] or None: True where a query (row) must not attend to a key (column).

    The map of size[0] x size[1] real tokens, padded at the bottom/right to padded = (Hp, Wp)
    (multiples of the window), is rolled by (-sh, -sw), then cut into nW = (Hp/wh) * (Wp/ww)
    windows of N = wh * ww tokens in raster order. Padded tokens are blocked as keys. With a
    shift, tokens that the roll wrapped around are also blocked from the others in their window:
    the regions [0, Hp-wh), [Hp-wh, Hp-sh), [Hp-sh, Hp) of each axis, as in the Swin paper. None
    when nothing is blocked (no padding, no shift).
    """
    (hp, wp), (wh, ww), (sh, sw), (height, width) = padded, window, shift, size
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


def window_masks(padded, window, window_size, shift, size, device=None):
    """(index [N*N] int64, blocked [nW, 1, N, N] bool or None): the bias-table row of every
    (query, key) pair of a window (window_relative_index) and blocked_keys, for a map padded
    to `padded` = (Hp, Wp) from `size` = (H, W). They depend on the sizes only: a model computes
    them once per map and passes them to every block's window_attention (`masks=`)."""
    (wh, ww) = window_size
    index = window_relative_index(window, device)[:wh, :ww, :wh, :ww].reshape(-1)
    return index, blocked_keys(padded, window_size, shift, size, device)


def padded_size(height: int, width: int, window_size) -> tuple[int, int]:
    """(Hp, Wp): height and width rounded up to multiples of window_size (wh, ww)."""
    return math.ceil(height / window_size[0]) * window_size[0], math.ceil(width / window_size[1]) * window_size[1]


def window_attention(qkv, bias_table, window, window_size, shift, masks=None):
    """out [B, H, W, C]: multi-head attention inside the (shifted) windows of qkv [B, H, W, 3C]
    (channels [3, heads, D]) zero-padded at the bottom/right to multiples of the window, with
    bias_table[(2w-1)^2, heads] by relative position; padded keys and keys of another shift
    region blocked. See fastmatte.ops.window_attention for the exact semantics.
    masks: window_masks(padded_size(H, W, window_size), ...) of these sizes, made here when None."""
    batch, height, width, channels = qkv.shape
    (wh, ww), (sh, sw) = window_size, shift
    hp, wp = padded_size(height, width, window_size)
    heads = bias_table.shape[1]
    dim, nh, nw, n = channels // 3, hp // wh, wp // ww, wh * ww
    qkv = F.pad(qkv, (0, 0, 0, wp - width, 0, hp - height))
    if sh or sw:
        qkv = torch.roll(qkv, shifts=(-sh, -sw), dims=(1, 2))
    # One copy into [B, windows * heads, N, D]: windows and heads share SDPA's head axis, so
    # the mask is one [1, windows * heads, N, N] tensor broadcast over the batch.
    qkv = qkv.view(batch, nh, wh, nw, ww, 3, heads, dim // heads)
    q, k, v = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, batch, nh * nw * heads, n, dim // heads)
    if masks is None:
        masks = window_masks((hp, wp), window, window_size, shift, (height, width), qkv.device)
    index, blocked = masks
    bias = bias_table[index].view(n, n, heads).permute(2, 0, 1).to(q.dtype)
    if blocked is None:
        mask = bias.expand(nh * nw, heads, n, n)
    else:
        # finite, not -inf: a padded query may have every key blocked and must not turn NaN
        mask = torch.where(blocked, torch.finfo(q.dtype).min / 2, bias)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.reshape(1, nh * nw * heads, n, n))
    out = out.view(batch, nh, nw, heads, wh, ww, dim // heads).permute(0, 1, 4, 2, 5, 3, 6)
    out = out.reshape(batch, hp, wp, dim)
    if sh or sw:
        out = torch.roll(out, shifts=(sh, sw), dims=(1, 2))
    return out[:, :height, :width]
