"""Benchmark cases of the tile operators at HD/4K on a portrait-like uncertain band."""
import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS, TILE, OpCase, capacity_for, portrait_trimap


def tile_op_cases(resolution: str, device, dtype=torch.float32):
    """Cases for select_tiles, gather_tiles, scatter_tiles, gather+scatter and the whole
    select -> gather -> scatter refinement path, on one portrait frame (batch 1)."""
    height, width = RESOLUTIONS[resolution]
    h, w = height // TILE, width // TILE
    device = torch.device(device)
    gen = torch.Generator().manual_seed(1)
    trimap = portrait_trimap(height, width, TILE, device=device, dtype=dtype)
    candidates = int(reference.select_tiles(trimap, 0)[3])
    capacity = capacity_for(candidates)
    image = torch.rand(1, 3, height, width, generator=gen).to(device, dtype)
    coarse = torch.rand(1, 1, h, w, generator=gen).to(device, dtype)
    refined = torch.rand(capacity, 1, TILE, TILE, generator=gen).to(device, dtype)
    sel = ops.select_tiles(trimap, capacity)
    ref_sel = reference.select_tiles(trimap, capacity)

    elt = torch.finfo(dtype).bits // 8
    n, grid, patch = candidates, h * w, TILE * TILE
    select_bytes = 3 * grid * elt + grid * 4 + capacity * 12 + 8
    gather_bytes = n * 3 * patch * elt + n * 4 * elt + capacity * 4 * patch * elt
    scatter_bytes = grid * elt + grid * 4 + n * patch * elt + height * width * elt

    def fused_gather_scatter(api, s):
        # `refined` stands for the refiner's output (slicing the patches instead would time
        # torch's strided copy, not the ops).
        patches = api.gather_tiles(image, coarse, s[0], s[1])
        return patches, api.scatter_tiles(coarse, refined, s[0], s[1], s[2])

    def pipeline(api):
        return fused_gather_scatter(api, api.select_tiles(trimap, capacity))

    return [
        OpCase("select_tiles", lambda: ops.select_tiles(trimap, capacity),
               lambda: reference.select_tiles(trimap, capacity), select_bytes, n),
        OpCase("gather_tiles", lambda: ops.gather_tiles(image, coarse, sel.tiles, sel.count),
               lambda: reference.gather_tiles(image, coarse, ref_sel[0], ref_sel[1]), gather_bytes, n),
        OpCase("scatter_tiles",
               lambda: ops.scatter_tiles(coarse, refined, sel.tiles, sel.count, sel.tile_map),
               lambda: reference.scatter_tiles(coarse, refined, *ref_sel[:3]), scatter_bytes, n),
        OpCase("gather+scatter", lambda: fused_gather_scatter(ops, sel),
               lambda: fused_gather_scatter(reference, ref_sel), gather_bytes + scatter_bytes, n),
        OpCase("select+gather+scatter", lambda: pipeline(ops), lambda: pipeline(reference),
               select_bytes + gather_bytes + scatter_bytes, n),
    ]
