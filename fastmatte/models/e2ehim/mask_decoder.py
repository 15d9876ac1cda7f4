"""E2E-HIM's per-instance operations: 1x1 convolutions whose kernels each query generates
(dynamic_conv) and the mixing of the query's GroupNorm-ed vectors by the softmax over the instance
maps and the background map (instance_mixture). Each has the fused form (every query at once in
one batched matrix product) and the authors' form (a Python loop over queries), the eager twin."""
import torch
import torch.nn.functional as F
from torch import nn


def dynamic_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, fused: bool) -> torch.Tensor:
    """Per-image, per-query 1x1 convolutions.

    x: [B, C, H, W]; weight: [B, N, R, C], query n's R output rows; bias: [B, N, R].
    Returns [B, N * R, H, W], channel n * R + r (query-major, the official cat order).
    fused: one baddbmm over all queries; otherwise the authors' F.conv2d per query (and image).
    """
    batch, queries, rows, channels = weight.shape
    height, width = x.shape[-2:]
    if fused:
        out = torch.baddbmm(bias.reshape(batch, -1, 1), weight.reshape(batch, -1, channels), x.flatten(2))
        return out.view(batch, queries * rows, height, width)
    images = []
    for b in range(batch):
        maps = [F.conv2d(x[b:b + 1], weight[b, n, :, :, None, None], bias[b, n]) for n in range(queries)]
        images.append(torch.cat(maps, 1))
    return torch.cat(images, 0)


def instance_mixture(probs: torch.Tensor, vectors: torch.Tensor, background: torch.Tensor, norm: nn.GroupNorm,
                     fused: bool) -> torch.Tensor:
    """sum_i probs[:, i] * map_i over the N query maps and the background map.

    probs: [B, N + 1, h, w], the softmax over the N instance maps and the background map (last).
    vectors: [B, N, D], each query's vector; its map is norm(the vector repeated over h x w).
    background: [B, D, h, w], the background's map before norm. norm: GroupNorm(G, D), shared.
    Returns [B, D, h, w].
    fused: the GroupNorm of a constant map is that of the vector itself (a 1 x 1 map: the same
    group statistics), and the query sum is one batched product; otherwise the authors' way,
    each vector repeated to h x w, normalized, and the N + 1 products summed in order.
    """
    batch, queries, dim = vectors.shape
    height, width = probs.shape[-2:]
    background = norm(background)
    if fused:
        mixed = norm(vectors.reshape(-1, dim, 1, 1)).view(batch, queries, dim)
        out = torch.bmm(mixed.transpose(1, 2), probs[:, :queries].flatten(2)).view(batch, dim, height, width)
        return out + probs[:, queries:] * background
    repeated = vectors.reshape(-1, dim, 1, 1).repeat(1, 1, height, width)
    maps = norm(repeated).view(batch, queries, dim, height, width)
    terms = [probs[:, i:i + 1] * maps[:, i] for i in range(queries)] + [probs[:, queries:] * background]
    return sum(terms)
