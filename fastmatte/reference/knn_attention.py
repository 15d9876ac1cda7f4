"""Eager reference of knn_attention (first CRA block): gathered K/V, dense bias, softmax."""
import math

import torch

from fastmatte.reference.relative_position import relative_position_index


def group_members(tiles, nbr):
    """[N, K+1] row indices of each group (the center first) and their validity. A center is
    valid when its tiles row is (tiles[i, 0] >= 0); a neighbour when nbr >= 0 and its center is."""
    n = tiles.shape[0]
    center = torch.arange(n, device=tiles.device)[:, None]
    members = torch.cat([center, nbr.long()], dim=1)
    valid = (members >= 0) & (tiles[:, :1] >= 0)
    return members.clamp(min=0), valid


def knn_attention(q, k, v, tiles, nbr, bias_table, search_range, bucketing="per_axis"):
    """out[N, K+1, nH, D]: for group i = [i] + nbr[i] and each member a, attention of q[g_a]
    over k/v[g_b] of the valid members b, with bias_table[rel(g_a, g_b), head] (rel:
    relative_position_index with this bucketing). Rows of missing members (and of invalid
    centers) are zero."""
    members, valid = group_members(tiles, nbr)
    acc = torch.promote_types(torch.promote_types(q.dtype, torch.float32), bias_table.dtype)
    qg, kg, vg = q[members], k[members], v[members]  # [N, M, nH, D]
    pos = tiles[members][..., 1:]  # [N, M, 2]
    rel = relative_position_index(pos[:, :, None], pos[:, None, :], search_range, bucketing)  # [N, Ma, Mb]
    bias = bias_table[rel].permute(0, 3, 1, 2)  # [N, nH, Ma, Mb]
    scores = torch.einsum("nahd,nbhd->nhab", qg.to(acc), kg.to(acc)) / math.sqrt(q.shape[-1])
    scores = scores + bias.to(acc)
    scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
    # A group whose center is invalid has no valid key: give it finite scores, zero it below.
    scores = torch.where(valid[:, :1, None, None], scores, 0.0)
    out = torch.einsum("nhab,nbhd->nahd", torch.softmax(scores, dim=-1), vg.to(acc))
    return torch.where(valid[:, :, None, None], out, 0.0).to(q.dtype)
