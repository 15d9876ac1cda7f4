"""The relative-position index of CRA's bias table (key tile seen from the query tile)."""
import torch

# How offsets outside the (2s-1) x (2s-1) window are bucketed: see relative_position_index.
BUCKETINGS = ("per_axis", "official")


def check_bucketing(owner: str, bucketing) -> str:
    """ValueError unless bucketing is one of BUCKETINGS; returns it. owner names the caller."""
    if not (isinstance(bucketing, str) and bucketing in BUCKETINGS):
        raise ValueError(f'{owner}: bucketing must be "per_axis" or "official", got {bucketing!r}')
    return bucketing


def relative_position_index(query_yx: torch.Tensor, key_yx: torch.Tensor, search_range: int,
                            bucketing: str = "per_axis") -> torch.Tensor:
    """Entry of the (2s-1)^2+1 bias table for key position minus query position (dy, dx).

    query_yx, key_yx: broadcastable [..., 2] integer (y, x) positions; returns int64 [...].
    Both bucketings give flat = (dy+s-1)*(2s-1)+(dx+s-1) inside the window and (2s-1)^2 (the
    shared last entry) elsewhere; they differ in what "inside" means:
      "per_axis": |dy| <= s-1 and |dx| <= s-1 (the paper's table);
      "official": 0 <= flat < (2s-1)^2 (the authors' code and checkpoints), so that e.g. (0, +4)
                  with s=4 lands in the bucket of (+1, -3).
    """
    check_bucketing("fastmatte.reference.relative_position_index", bucketing)
    s = search_range
    side = 2 * s - 1
    d = key_yx.long() - query_yx.long()
    dy, dx = d[..., 0], d[..., 1]
    flat = (dy + s - 1) * side + (dx + s - 1)
    if bucketing == "official":
        inside = (flat >= 0) & (flat < side * side)
    else:
        inside = (dy.abs() <= s - 1) & (dx.abs() <= s - 1)
    return torch.where(inside, flat, side * side)
