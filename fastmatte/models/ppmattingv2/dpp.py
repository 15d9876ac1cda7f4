"""PP-MattingV2's double pyramid pool module (DPP, `dpp`), as the official code and the released
config (dpp_merge_type "add", one transformer block per bin) compute it.

Official facts: the 1/4, 1/8, 1/16 and 1/32 backbone maps are average-pooled (kernel = stride =
16, 8, 4, 2, no padding) to 1/64 and concatenated (1856 channels); conv_mid (1x1 conv with bias +
BN) takes them to 256 channels. For each bin size 2, 4, 6 an adaptive average pool and one
transformer Block at dim 256 follow, and the result is resized back bilinearly
(align_corners=False). conv_mid's output plus the bins in the order 6, 4, 2 is summed, and conv_out
(1x1 conv with bias + BN + ReLU) gives the 256-channel output.
The Block's attention is softmax(q k^T) v with no 1/sqrt(key_dim) scaling (the official module
defines a scale and never uses it), 8 heads, key_dim 16, value_dim 32, the channels head-major.
"""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.paddleseg_layers import Conv2DBN, ConvBN

BINS = (2, 4, 6)
HEADS, KEY_DIM, ATTN_RATIO, MLP_RATIO = 8, 16, 2, 2


class Attention(nn.Module):
    """Multi-head attention over the pixels of a [B, dim, h, w] map: to_q and to_k (Conv2DBN to
    heads x key_dim), to_v (Conv2DBN to heads x 2 key_dim), softmax(q k^T) v unscaled, then
    proj = ReLU6 -> Conv2DBN back to dim. forward(x, fused=False) -> [B, dim, h, w].
    fused (inference; fastmatte's choice): BatchNorms folded and one
    F.scaled_dot_product_attention(scale=1.0) in place of the explicit matmul, softmax, matmul."""

    def __init__(self, dim):
        super().__init__()
        self.value_dim = ATTN_RATIO * KEY_DIM
        self.to_q = Conv2DBN(dim, HEADS * KEY_DIM)
        self.to_k = Conv2DBN(dim, HEADS * KEY_DIM)
        self.to_v = Conv2DBN(dim, HEADS * self.value_dim)
        self.proj = nn.Sequential(nn.ReLU6(), Conv2DBN(HEADS * self.value_dim, dim))

    def forward(self, x, fused: bool = False):
        b, _, h, w = x.shape
        q = self.to_q(x, fused).reshape(b, HEADS, KEY_DIM, h * w).transpose(2, 3)
        k = self.to_k(x, fused).reshape(b, HEADS, KEY_DIM, h * w)
        v = self.to_v(x, fused).reshape(b, HEADS, self.value_dim, h * w).transpose(2, 3)
        if fused:
            out = F.scaled_dot_product_attention(q, k.transpose(2, 3), v, scale=1.0)
        else:
            out = torch.matmul(torch.softmax(torch.matmul(q, k), dim=-1), v)
        out = out.transpose(2, 3).reshape(b, HEADS * self.value_dim, h, w)
        return self.proj[1](self.proj[0](out), fused)


class MLP(nn.Module):
    """fc1 (Conv2DBN to 2 dim) -> depthwise 3x3 conv with bias -> ReLU6 -> fc2 (Conv2DBN to dim)."""

    def __init__(self, dim):
        super().__init__()
        hidden = MLP_RATIO * dim
        self.fc1 = Conv2DBN(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.ReLU6()
        self.fc2 = Conv2DBN(hidden, dim)

    def forward(self, x, fused: bool = False):
        return self.fc2(self.act(self.dwconv(self.fc1(x, fused))), fused)


class Block(nn.Module):
    """x + attn(x), then that + mlp(that). forward(x[B, dim, h, w], fused=False) -> same shape."""

    def __init__(self, dim):
        super().__init__()
        self.attn = Attention(dim)
        self.mlp = MLP(dim)

    def forward(self, x, fused: bool = False):
        x = x + self.attn(x, fused)
        return x + self.mlp(x, fused)


class BasicLayer(nn.Module):
    """The transformer blocks of one bin, in order (one in the release)."""

    def __init__(self, dim, depth=1):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(Block(dim) for _ in range(depth))

    def forward(self, x, fused: bool = False):
        for block in self.transformer_blocks:
            x = block(x, fused)
        return x


class DoublePyramidPool(nn.Module):
    """The DPP of the released PP-MattingV2 (merge "add"). pp2[i] is (AdaptiveAvgPool2d(bin),
    BasicLayer), as the official nn.Sequential names them.

    forward(feats, fused=False): feats the backbone's 1/4, 1/8, 1/16, 1/32 maps
    [B, C_i, H/s, W/s] -> [B, out_channels, H/64, W/64] (floored). fused: inference with every
    BatchNorm folded (see Attention)."""

    def __init__(self, in_channels, mid_channels=256, out_channels=256):
        super().__init__()
        self.conv_mid = ConvBN(in_channels, mid_channels, 1, bias=True)
        self.pp2 = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), BasicLayer(mid_channels))
                                 for b in BINS)
        self.conv_out = ConvBN(mid_channels, out_channels, 1, bias=True, relu=True)

    def forward(self, feats, fused: bool = False):
        count = len(feats)
        pooled = [F.avg_pool2d(f, 2 ** (count - i)) for i, f in enumerate(feats)]
        x = self.conv_mid(torch.cat(pooled, 1), fused)
        merged = x
        for pool, layer in reversed(self.pp2):  # the official sum: conv_mid's output, then bins 6, 4, 2
            y = layer(pool(x), fused)
            merged = merged + F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv_out(merged, fused)
