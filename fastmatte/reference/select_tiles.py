"""Eager reference of select_tiles: argmax, nonzero, stable sort."""
import torch


def select_tiles(trimap: torch.Tensor, capacity: int, unknown_class: int = 1):
    """Returns (tiles[capacity, 3], count[1], tile_map[B, h, w], candidates[1]), int32."""
    B, _, h, w = trimap.shape
    int32 = dict(dtype=torch.int32, device=trimap.device)
    is_candidate = trimap.argmax(dim=1).flatten() == unknown_class  # raster order (b, ty, tx)
    score = trimap[:, unknown_class].flatten().float()
    candidates = is_candidate.nonzero().squeeze(1)
    # Highest scores first, ties in raster order (stable sort); then back to raster order.
    best = torch.sort(score[candidates], descending=True, stable=True).indices[:capacity]
    kept = candidates[best].sort().values
    n = kept.numel()

    tiles = torch.full((capacity, 3), -1, **int32)
    tiles[:n, 0] = (kept // (h * w)).int()
    tiles[:n, 1] = (kept % (h * w) // w).int()
    tiles[:n, 2] = (kept % w).int()
    tile_map = torch.full((B * h * w,), -1, **int32)
    tile_map[kept] = torch.arange(n, **int32)
    count = torch.tensor([n], **int32)
    total = torch.tensor([candidates.numel()], **int32)
    return tiles, count, tile_map.view(B, h, w), total
