"""E2E-HIM's instance queries: a DETR-style transformer decoder (six post-norm layers and a final
LayerNorm over learned query positions, the memory without positional encoding) and the MLPs
that turn each decoded query into its presence logits and dynamic kernels. Names are the
authors' (decoder1.layers.{i}.self_attn..., globalfc.layers.{j}...)."""
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """Linear layers (`layers`) with ReLU between them, none after the last.
    forward(x[..., in]) -> [..., out]."""

    def __init__(self, cin: int, hidden: int, cout: int, depth: int):
        super().__init__()
        sizes = [cin] + [hidden] * (depth - 1) + [cout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class DecoderLayer(nn.Module):
    """Post-norm decoder layer (d 256, 8 heads, FFN 2048 with ReLU; dropout 0.1 in training):
    tgt = norm1(tgt + SA(tgt + pos, tgt + pos, tgt)); tgt = norm2(tgt + CA(tgt + pos, memory,
    memory)); tgt = norm3(tgt + FFN(tgt)).
    forward(tgt[N, B, d], memory[L, B, d], pos[N, B, d]) -> [N, B, d] (sequence first)."""

    def __init__(self, dim: int = 256, heads: int = 8, hidden: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = dropout

    def forward(self, tgt, memory, pos):
        drop = lambda x: F.dropout(x, self.dropout, self.training)  # noqa: E731
        q = tgt + pos
        tgt = self.norm1(tgt + drop(self.self_attn(q, q, tgt, need_weights=False)[0]))
        tgt = self.norm2(tgt + drop(self.multihead_attn(tgt + pos, memory, memory, need_weights=False)[0]))
        hidden = drop(F.relu(self.linear1(tgt)))
        return self.norm3(tgt + drop(self.linear2(hidden)))


class QueryDecoder(nn.Module):
    """`layers` (six DecoderLayer) then `norm` (nn.Sequential(LayerNorm), the official wrapping).
    forward(memory[L, B, d], pos[N, d]) -> [B, N, d], starting from tgt = 0."""

    def __init__(self, depth: int = 6, dim: int = 256):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim) for _ in range(depth))
        self.norm = nn.Sequential(nn.LayerNorm(dim))

    def forward(self, memory, pos):
        pos = pos[:, None].expand(-1, memory.shape[1], -1)
        tgt = pos.new_zeros(pos.shape)
        for layer in self.layers:
            tgt = layer(tgt, memory, pos)
        return self.norm(tgt).transpose(0, 1)
