"""Eager reference of group_attention (second CRA block): only the center query attends."""
import math

import torch

from fastmatte.reference.knn_attention import group_members
from fastmatte.reference.relative_position import relative_position_index


def group_attention(q0, k, v, tiles, nbr, bias_table, search_range, bucketing="per_axis"):
    """out[N, nH, D]: q0[i] attends over k/v[i, b] (b = 0..K, the group's own keys/values, from
    the first block) of the valid members b, with bias_table[rel(center, member b), head] (rel:
    relative_position_index with this bucketing). Rows of invalid centers are zero."""
    members, valid = group_members(tiles, nbr)
    acc = torch.promote_types(torch.promote_types(q0.dtype, torch.float32), bias_table.dtype)
    pos = tiles[members][..., 1:]  # [N, M, 2]
    rel = relative_position_index(pos[:, :1], pos, search_range, bucketing)  # [N, M]
    bias = bias_table[rel].permute(0, 2, 1)  # [N, nH, M]
    scores = torch.einsum("nhd,nbhd->nhb", q0.to(acc), k.to(acc)) / math.sqrt(q0.shape[-1])
    scores = (scores + bias.to(acc)).masked_fill(~valid[:, None, :], float("-inf"))
    # A group whose center is invalid has no valid key: give it finite scores, zero it below.
    scores = torch.where(valid[:, :1, None], scores, 0.0)
    out = torch.einsum("nhb,nbhd->nhd", torch.softmax(scores, dim=-1), v.to(acc))
    return torch.where(valid[:, :1, None], out, 0.0).to(q0.dtype)
