"""CRA's cross-region attention: every uncertain tile token attends to its k nearest uncertain
tiles, in two pre-norm transformer blocks (block 1: full attention inside each group of k+1
tiles; block 2: only the center tile's query attends over its group)."""
import torch
from torch import nn

from fastmatte.ops import group_attention, knn_attention, knn_tiles
from fastmatte.ops._backend import check_backend
from fastmatte.reference.relative_position import check_bucketing


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ratio: int = 4):
        super().__init__(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))


class CrossRegionAttention(nn.Module):
    """Two attention blocks over tile tokens with a learnable relative-position-bias table each.

    Args:
        dim: token width (128 in the paper). heads, head_dim: 8 x 16 in the paper.
        k: neighbours per tile (8). search_range: s, the bias table has (2s-1)^2+1 entries
            per head, the last shared by every offset outside the (2s-1) x (2s-1) window.
        mlp_ratio: hidden width of the feed-forward layers, in multiples of dim.
        bucketing: which offsets share that last entry, as in fastmatte.ops.knn_attention:
            "per_axis" (the paper's table) or "official" (the authors' code and checkpoints).

    forward(tokens[N, dim], tiles[N, 3], count[1], tile_map=None, nbr=None, backend=None)
    -> [N, dim]: N is the selection's capacity; rows past count are carried along and should be
    ignored. nbr (from fastmatte.ops.knn_tiles) is computed when not given; pass the
    selection's tile_map so that it is a grid search. backend is passed to every op
    ("torch" runs the eager references).
    """

    def __init__(self, dim=128, heads=8, head_dim=16, k=8, search_range=4, mlp_ratio=4,
                 bucketing="per_axis"):
        super().__init__()
        self.heads, self.head_dim, self.k, self.search_range = heads, head_dim, k, search_range
        self.bucketing = check_bucketing("fastmatte.nn.CrossRegionAttention", bucketing)
        inner = heads * head_dim
        table_size = (2 * search_range - 1) ** 2 + 1
        self.norm1 = nn.LayerNorm(dim)
        self.qkv1 = nn.Linear(dim, 3 * inner)
        self.proj1 = nn.Linear(inner, dim)
        self.bias_table1 = nn.Parameter(torch.zeros(table_size, heads))
        self.norm_mlp1 = nn.LayerNorm(dim)
        self.mlp1 = FeedForward(dim, mlp_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.q2 = nn.Linear(dim, inner)
        self.kv2 = nn.Linear(dim, 2 * inner)
        self.proj2 = nn.Linear(inner, dim)
        self.bias_table2 = nn.Parameter(torch.zeros(table_size, heads))
        self.norm_mlp2 = nn.LayerNorm(dim)
        self.mlp2 = FeedForward(dim, mlp_ratio)
        nn.init.trunc_normal_(self.bias_table1, std=0.02)
        nn.init.trunc_normal_(self.bias_table2, std=0.02)

    def forward(self, tokens, tiles, count, tile_map=None, nbr=None, backend=None):
        check_backend("fastmatte.nn.CrossRegionAttention", backend)
        if nbr is None:
            nbr = knn_tiles(tiles, count, self.k, tile_map, backend=backend)
        n, heads, d = tokens.shape[0], self.heads, self.head_dim
        s = self.search_range

        # Block 1: every member of every group attends to the whole group.
        q, k, v = self.qkv1(self.norm1(tokens)).view(n, 3, heads, d).unbind(1)
        table1 = self.bias_table1.to(q.dtype)
        mixed = knn_attention(q.contiguous(), k.contiguous(), v.contiguous(), tiles, nbr, table1, s,
                              bucketing=self.bucketing, backend=backend)
        members = torch.cat([torch.arange(n, device=tiles.device)[:, None], nbr.long()], dim=1)
        present = (members >= 0)[..., None]
        group = torch.where(present, tokens[members.clamp(min=0)], 0.0)  # [N, K+1, dim]
        group = group + self.proj1(mixed.flatten(2))
        group = group + self.mlp1(self.norm_mlp1(group))

        # Block 2: only the center's query attends over its group's own keys and values.
        normed = self.norm2(group)
        q0 = self.q2(normed[:, 0]).view(n, heads, d)
        k2, v2 = self.kv2(normed).view(n, self.k + 1, 2, heads, d).unbind(2)
        table2 = self.bias_table2.to(q0.dtype)
        center = group[:, 0] + self.proj2(
            group_attention(q0.contiguous(), k2.contiguous(), v2.contiguous(), tiles, nbr, table2, s,
                            bucketing=self.bucketing, backend=backend).flatten(1))
        return center + self.mlp2(self.norm_mlp2(center))
