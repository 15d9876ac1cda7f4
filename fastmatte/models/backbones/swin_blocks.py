"""The pieces of a Swin Transformer stage: the window layout of maps of any size, window
attention with relative position bias (fastmatte.ops.window_attention), the transformer block
and patch merging.

Token maps are channels-last [B, H, W, C] throughout (LayerNorm and Linear act on the last
dimension). Parameter names follow microsoft/Swin-Transformer so its checkpoints load.
"""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import reference
from fastmatte.ops import window_attention


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


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: in training, zero each sample's residual branch with probability
    `rate` and scale the kept ones by 1 / (1 - rate); identity otherwise."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    kept = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * kept / keep


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (shifted) windows with a learned relative position bias.

    forward(x[B, H, W, C], window_size=(wh, ww), shift=(sh, sw), backend=None, masks=None) ->
    [B, H, W, C]: the qkv projection, fastmatte.ops.window_attention (the zero padding to whole
    windows, the roll by (-sh, -sw) and back, the windows, the bias and the masks of padded keys
    and of the shift regions, all inside the op), then the output projection. backend="torch"
    runs the op's eager reference, with `masks` (reference.window_masks of these sizes, which the
    stage makes once for all its blocks, as eager Swin code does) or without.
    """

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x, window_size, shift, backend=None, masks=None):
        args = (self.qkv(x), self.relative_position_bias_table, self.window, window_size, shift)
        if backend == "torch":
            return self.proj(reference.window_attention(*args, masks=masks))
        return self.proj(window_attention(*args, backend=backend))


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

    forward(x[B, H, W, C], window_size, shift=(sh, sw), backend=None, masks=None) -> [B, H, W, C]
    (see WindowAttention).
    """

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, drop_path_rate: float):
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, window_size, shift, backend=None, masks=None):
        h = self.attn(self.norm1(x), window_size, shift, backend, masks)
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
        return self.reduction(self.norm(self.gather(x)))

    @staticmethod
    def gather(x):
        """The 2x2 cells' tokens side by side: [B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 4C]."""
        batch, height, width, dim = x.shape
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        h2, w2 = (height + 1) // 2, (width + 1) // 2
        # [B, h, dy, w, dx, C] -> [B, h, w, dx, dy, C]: dy varies fastest, the official order.
        return x.reshape(batch, h2, 2, w2, 2, dim).permute(0, 1, 3, 4, 2, 5).reshape(batch, h2, w2, 4 * dim)
