"""Eager reference of knn_tiles: the official dense pairwise distance + top-k, O(N^2)."""
import torch


def knn_tiles(tiles: torch.Tensor, count: torch.Tensor, k: int) -> torch.Tensor:
    """nbr[capacity, k] int32: for each row i < count, the k nearest other rows of the same image
    by squared Euclidean distance on (ty, tx), ties by lower row index; -1 where the image has
    fewer than k other tiles, and on every row past count."""
    capacity = tiles.shape[0]
    rows = torch.arange(capacity, device=tiles.device)
    valid = rows < count.to(rows.device)
    pos = tiles[:, 1:].double()
    dist = torch.cdist(pos, pos) ** 2
    same_image = tiles[:, None, 0] == tiles[None, :, 0]
    usable = same_image & valid[:, None] & valid[None, :] & (rows[:, None] != rows[None, :])
    dist = torch.where(usable, dist, torch.inf)
    # A stable sort keeps equal distances in row order: ties go to the lower row index.
    order = torch.sort(dist, dim=1, stable=True)
    kk = min(k, capacity)
    nbr = torch.where(order.values[:, :kk].isinf(), -1, order.indices[:, :kk]).int()
    pad = torch.full((capacity, k - kk), -1, dtype=torch.int32, device=tiles.device)
    return torch.cat([nbr, pad], dim=1)
