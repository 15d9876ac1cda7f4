"""CRA's region head: each selected 8x8 cell (RGB + upsampled seg) through valid convolutions to
one token, a two-layer cross-region transformer over the cell and its 8 nearest cells, and
transposed convolutions back to an 8x8 feature map. Module names are the authors'."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.cra.decoder import SLOPE
from fastmatte.models.dense import dense
from fastmatte.models.fold import fold
from fastmatte.ops import group_attention, knn_attention
from fastmatte.reference.relative_position import relative_position_index

EPS = 1e-3  # the authors' BatchNorm eps (and momentum 0.99, in PyTorch's sense)
HEADS, HEAD_DIM, EMBED = 8, 16, 128
SEARCH_RANGE = 4  # the bias table covers offsets -3..3 per axis, plus one "far" entry


class ConvBlock(nn.Module):
    """conv (bias, no padding) -> BatchNorm(eps 1e-3) -> leaky_relu(0.1); transposed: the conv is
    a ConvTranspose2d (stride 1, no padding: a k x k kernel grows the map by k - 1), named deconv.
    forward(x, folded=False): folded (eval mode only) runs the BatchNorm folded into the conv."""

    def __init__(self, cin, cout, k, transposed=False):
        super().__init__()
        conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, cout, k)
        setattr(self, "deconv" if transposed else "conv", conv)
        self.transposed = transposed
        self.norm = nn.BatchNorm2d(cout, eps=EPS, momentum=0.99)

    def forward(self, x, folded=False):
        conv = self.deconv if self.transposed else self.conv
        if not folded:
            return F.leaky_relu(self.norm(conv(x)), SLOPE)
        weight, bias = fold(conv, self.norm)
        y = (F.conv_transpose2d if self.transposed else F.conv2d)(x, weight, bias)
        return F.leaky_relu_(y, SLOPE)


class PatchEncoder(nn.Module):
    """8x8 -> 8x8 (two 1x1), -> 4x4 (two 3x3), -> 2x2 (3x3, then 1x1); widths 32, 64, 64."""

    def __init__(self):
        super().__init__()
        self.down_blocks = nn.ModuleList([
            nn.Sequential(ConvBlock(4, 32, 1), ConvBlock(32, 32, 1)),
            nn.Sequential(ConvBlock(32, 64, 3), ConvBlock(64, 64, 3)),
            nn.Sequential(ConvBlock(64, 64, 3), ConvBlock(64, 64, 1))])


class PatchDecoder(nn.Module):
    """2x2 -> 4x4 (1x1, 3x3), cat the 4x4 encoder map -> 8x8 (two 3x3), cat the 8x8 encoder map
    -> two 1x1 to 16 channels; all transposed convolutions."""

    def __init__(self):
        super().__init__()
        self.up_blocks = nn.ModuleList([
            nn.Sequential(ConvBlock(64, 32, 1, True), ConvBlock(32, 32, 3, True)),
            nn.Sequential(ConvBlock(96, 32, 3, True), ConvBlock(32, 32, 3, True)),
            nn.Sequential(ConvBlock(64, 16, 1, True), ConvBlock(16, 16, 1, True))])


class Attention(nn.Module):
    """Layer 0's projections: to_qkv (no bias), to_out (Linear, then the authors' Dropout(0))."""

    def __init__(self):
        super().__init__()
        self.to_qkv = nn.Linear(EMBED, 3 * HEADS * HEAD_DIM, bias=False)
        self.to_out = nn.Sequential(nn.Linear(HEADS * HEAD_DIM, EMBED), nn.Dropout(0.0))


class CenterAttention(nn.Module):
    """Layer 1's projections: only the center token is queried (to_q), all give keys (to_kv)."""

    def __init__(self):
        super().__init__()
        self.to_q = nn.Linear(EMBED, HEADS * HEAD_DIM, bias=False)
        self.to_kv = nn.Linear(EMBED, 2 * HEADS * HEAD_DIM, bias=False)
        self.to_out = nn.Sequential(nn.Linear(HEADS * HEAD_DIM, EMBED), nn.Dropout(0.0))


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear (net.0, net.3; the Dropouts of the authors' Sequential are 0)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(EMBED, EMBED), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(EMBED, EMBED), nn.Dropout(0.0))

    def forward(self, x):
        return self.net(x)

    def fused(self, x):
        """forward through fastmatte.models.dense.linear (its Dropouts are 0)."""
        return dense(self.net[3], F.gelu(dense(self.net[0], x)))


class CrossRegionTransformer(nn.Module):
    """Two pre-norm layers over the groups [cell, 8 neighbours].

    forward(tokens[N, 128], tiles[N, 3], nbr[N, 8], table[50, 8], backend=None) -> [N, 128]:
    layer 0 is full attention within each group (fastmatte.ops.knn_attention), layer 1 queries
    the center token only (fastmatte.ops.group_attention); both with the bias
    table[official bucket of (key cell - query cell)], scale 16^-0.5, then the feed-forward.
    """

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([nn.LayerNorm(EMBED), Attention(), nn.LayerNorm(EMBED), FeedForward()]),
            nn.ModuleList([nn.LayerNorm(EMBED), CenterAttention(), nn.LayerNorm(EMBED), FeedForward()])])

    def forward(self, tokens, tiles, nbr, table, backend=None):
        if backend == "torch":
            return self._authors(tokens, tiles, nbr, table)
        (norm1, attn, norm2, ff), (norm3, center, norm4, ff1) = self.layers
        N = tokens.shape[0]
        group = torch.cat([torch.arange(N, device=nbr.device)[:, None], nbr.long()], 1)
        args = (tiles, nbr, table, SEARCH_RANGE)
        q, k, v = dense(attn.to_qkv, norm1(tokens)).view(N, 3, HEADS, HEAD_DIM).unbind(1)
        out = knn_attention(q, k, v, *args, bucketing="official", backend=backend)
        x = tokens[group] + dense(attn.to_out[0], out.reshape(N, out.shape[1], EMBED))  # [N, 9, 128]
        x = x + ff.fused(norm2(x))
        h = norm3(x)
        q0 = dense(center.to_q, h[:, 0]).view(N, HEADS, HEAD_DIM)
        k, v = dense(center.to_kv, h).view(N, h.shape[1], 2, HEADS, HEAD_DIM).unbind(2)
        x = x[:, 0] + dense(center.to_out[0], group_attention(q0, k, v, *args, bucketing="official",
                                                              backend=backend).reshape(N, EMBED))
        return x + ff1.fused(norm4(x))

    def _authors(self, tokens, tiles, nbr, table):
        """The authors' computation (the eager twin): each group's embeddings gathered first,
        then normalized and projected ([N, 9, 128] through every layer), with the dense bias
        table[bucket] of [N, heads, 9, 9]."""
        (norm1, attn, norm2, ff), (norm3, center, norm4, ff1) = self.layers
        N = tokens.shape[0]
        group = torch.cat([torch.arange(N, device=nbr.device)[:, None], nbr.long()], 1)
        x = tokens[group]
        pos = tiles[group][..., 1:]
        bias = table[relative_position_index(pos[:, :, None], pos[:, None, :], SEARCH_RANGE, "official")]
        bias = bias.permute(0, 3, 1, 2)  # [N, heads, query, key]

        def heads(t):
            return t.reshape(N, -1, HEADS, HEAD_DIM).transpose(1, 2)

        def attend(q, k, v, bias):
            scores = heads(q) @ heads(k).transpose(-2, -1) * HEAD_DIM ** -0.5 + bias
            return (scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(N, -1, HEADS * HEAD_DIM)

        x = attn.to_out(attend(*attn.to_qkv(norm1(x)).chunk(3, -1), bias)) + x
        x = ff(norm2(x)) + x
        h = norm3(x)
        query, keys = center.to_q(h[:, :1]), center.to_kv(h).chunk(2, -1)
        x = center.to_out(attend(query, *keys, bias[:, :, :1])) + x[:, :1]
        return (ff1(norm4(x)) + x)[:, 0]


class ROIHead(nn.Module):
    """forward(rois[N, 4, 8, 8], tiles[N, 3], nbr[N, 8] int32, table, backend=None) -> [N, 16, 8, 8].
    In eval mode the BatchNorms are folded into the convolutions, except for backend="torch"
    (the authors' computation)."""

    def __init__(self):
        super().__init__()
        self.encoder = PatchEncoder()
        self.decoder = PatchDecoder()
        self.enc_head = nn.Linear(64, EMBED)
        self.transformer = CrossRegionTransformer()
        self.dec_head = nn.Linear(EMBED, 64)

    def forward(self, rois, tiles, nbr, table, backend=None):
        folded = not self.training and backend != "torch"
        skips = []
        x = rois
        if backend != "torch" and rois.device.type == "cpu":
            # oneDNN runs these small convolutions about 2.5x faster on channels-last maps
            # (HD, 2781 cells, 2 cores: 164 -> 65 ms); the authors' computation stays NCHW
            x = x.contiguous(memory_format=torch.channels_last)
        for blocks in self.encoder.down_blocks:
            x = _run(blocks, x, folded)
            skips.append(x)
        token = self.transformer(dense(self.enc_head, x.mean((2, 3)), backend), tiles, nbr, table, backend)
        x = x + dense(self.dec_head, token, backend)[:, :, None, None]
        for i, blocks in enumerate(self.decoder.up_blocks):
            x = _run(blocks, x if i == 0 else torch.cat([x, skips[-1 - i]], 1), folded)
        return x


def _run(blocks, x, folded):
    for block in blocks:
        x = block(x, folded)
    return x


def official_neighbours(nbr: torch.Tensor) -> torch.Tensor:
    """The authors' neighbour lists from knn_tiles' (k nearest others, -1 where fewer): a cell of
    an image with n <= k selected cells gets its n - 1 others nearest first, then itself, that
    list repeated to length k (the authors' topk over n cells with self at distance 1e6). int64."""
    N, k = nbr.shape
    found = (nbr >= 0).sum(1, keepdim=True)
    length = torch.where(found < k, found + 1, k + 1)
    slot = torch.arange(k, device=nbr.device) % length
    picked = nbr.long().gather(1, slot.clamp(max=k - 1))
    return torch.where(slot < found, picked, torch.arange(N, device=nbr.device)[:, None])
