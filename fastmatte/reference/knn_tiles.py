"""Eager reference of knn_tiles: the official dense pairwise distance + top-k, O(N^2)."""
import torch


def knn_tiles(tiles: torch.Tensor, count: torch.Tensor, k: int) -> torch.Tensor:
    """nbr[capacity, k] int32: for each row i < count, the k nearest other rows of the same image
    by squared Euclidean distance on (ty, tx), ties by lower row index; -1 where the image has
    fewer than k other tiles, and on every row past count.

    As CRA's authors search: the dense distance matrix and torch.topk. Their topk leaves the
    order of equal distances undefined; here the key is distance * capacity + row (exact in
    int64), so ties go to the lower row, as in every fastmatte kernel."""
    capacity = tiles.shape[0]
    rows = torch.arange(capacity, device=tiles.device)
    valid = rows < count.to(rows.device)
    pos = tiles[:, 1:].long()
    dist = (pos[:, None, 0] - pos[None, :, 0]).square() + (pos[:, None, 1] - pos[None, :, 1]).square()
    same_image = tiles[:, None, 0] == tiles[None, :, 0]
    usable = same_image & valid[:, None] & valid[None, :] & (rows[:, None] != rows[None, :])
    far = torch.iinfo(torch.int64).max
    key = torch.where(usable, dist * capacity + rows[None, :], far)
    kk = min(k, capacity)
    values, indices = torch.topk(key, kk, dim=1, largest=False, sorted=True)
    nbr = torch.where(values == far, -1, indices).int()
    pad = torch.full((capacity, k - kk), -1, dtype=torch.int32, device=tiles.device)
    return torch.cat([nbr, pad], dim=1)
