"""The relative-position index of CRA's bias table (key tile seen from the query tile)."""
import torch


def relative_position_index(query_yx: torch.Tensor, key_yx: torch.Tensor, search_range: int) -> torch.Tensor:
    """Entry of the (2s-1)^2+1 bias table for key position minus query position (int64, any
    broadcastable [..., 2] inputs): (dy+s-1)*(2s-1)+(dx+s-1) when |dy|,|dx| <= s-1, else (2s-1)^2."""
    s = search_range
    d = key_yx.long() - query_yx.long()
    dy, dx = d[..., 0], d[..., 1]
    inside = (dy.abs() <= s - 1) & (dx.abs() <= s - 1)
    return torch.where(inside, (dy + s - 1) * (2 * s - 1) + (dx + s - 1), (2 * s - 1) ** 2)
