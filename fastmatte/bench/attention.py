"""Benchmark cases of cross-region attention at the tile counts of HD/4K portraits:
knn_tiles, both attention blocks, and knn + both blocks forward and forward+backward."""
import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS, capacity_for, portrait_trimap
from fastmatte.bench.cases import TILE, OpCase

HEADS, HEAD_DIM, K, SEARCH_RANGE = 8, 16, 8, 4


def attention_cases(resolution: str, device, dtype=torch.float32):
    height, width = RESOLUTIONS[resolution]
    device = torch.device(device)
    trimap = portrait_trimap(height, width, TILE, device=device, dtype=dtype)
    candidates = int(reference.select_tiles(trimap, 0)[3])
    sel = ops.select_tiles(trimap, capacity_for(candidates))
    n = sel.tiles.shape[0]
    gen = torch.Generator().manual_seed(2)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(device, dtype).requires_grad_()

    q, k, v = rand(n, HEADS, HEAD_DIM), rand(n, HEADS, HEAD_DIM), rand(n, HEADS, HEAD_DIM)
    k2, v2 = rand(n, K + 1, HEADS, HEAD_DIM), rand(n, K + 1, HEADS, HEAD_DIM)
    table = (torch.randn((2 * SEARCH_RANGE - 1) ** 2 + 1, HEADS, generator=gen) * 0.02).to(device, dtype)
    table.requires_grad_()
    nbr = ops.knn_tiles(sel.tiles, sel.count, K, sel.tile_map)
    grad = torch.randn(n, HEADS, HEAD_DIM, generator=gen).to(device, dtype)

    def knn(api):
        if api is ops:
            return ops.knn_tiles(sel.tiles, sel.count, K, sel.tile_map)
        return reference.knn_tiles(sel.tiles, sel.count, K)

    def both_blocks(api, neighbours):
        first = api.knn_attention(q, k, v, sel.tiles, neighbours, table, SEARCH_RANGE)
        return api.group_attention(first[:, 0], k2 + first, v2, sel.tiles, neighbours, table, SEARCH_RANGE)

    def forward(api):
        with torch.no_grad():
            return both_blocks(api, knn(api))

    def forward_backward(api):
        out = both_blocks(api, knn(api))
        return torch.autograd.grad(out, (q, k, v, k2, v2, table), grad)

    elt = torch.finfo(dtype).bits // 8
    token_bytes = n * HEADS * HEAD_DIM * elt
    knn_bytes = n * 12 + n * K * 4 + sel.tile_map.numel() * 4
    first_bytes = 3 * token_bytes + n * (K + 1) * HEADS * HEAD_DIM * elt + n * (K + 4) * 4
    second_bytes = 2 * token_bytes + 2 * n * (K + 1) * HEADS * HEAD_DIM * elt + n * (K + 4) * 4

    def no_grad(fn):
        def run():
            with torch.no_grad():
                return fn()
        return run

    return [
        OpCase("knn_tiles", lambda: knn(ops), lambda: knn(reference), knn_bytes, candidates),
        OpCase("knn_attention",
               no_grad(lambda: ops.knn_attention(q, k, v, sel.tiles, nbr, table, SEARCH_RANGE)),
               no_grad(lambda: reference.knn_attention(q, k, v, sel.tiles, nbr, table, SEARCH_RANGE)),
               first_bytes, candidates),
        OpCase("group_attention",
               no_grad(lambda: ops.group_attention(q, k2, v2, sel.tiles, nbr, table, SEARCH_RANGE)),
               no_grad(lambda: reference.group_attention(q, k2, v2, sel.tiles, nbr, table, SEARCH_RANGE)),
               second_bytes, candidates),
        OpCase("knn+knn_attention",
               no_grad(lambda: ops.knn_attention(q, k, v, sel.tiles, knn(ops), table, SEARCH_RANGE)),
               no_grad(lambda: reference.knn_attention(q, k, v, sel.tiles, knn(reference), table,
                                                       SEARCH_RANGE)),
               knn_bytes + first_bytes, candidates),
        OpCase("knn+both blocks fwd", lambda: forward(ops), lambda: forward(reference),
               knn_bytes + first_bytes + second_bytes, candidates),
        OpCase("knn+both blocks fwd+bwd", lambda: forward_backward(ops),
               lambda: forward_backward(reference), 3 * (first_bytes + second_bytes), candidates),
    ]
