"""Eager reference of scatter_tiles: interpolate, cut into tiles, index, where, clamp."""
import torch
import torch.nn.functional as F


def scatter_tiles(coarse_alpha, refined, tiles, count, tile_map, mode="bilinear"):
    """coarse_alpha [B, C, h, w] upsampled x t (t = refined.shape[-1]) with every tile whose
    tile_map row r satisfies 0 <= r < count replaced by refined[r], clamped to [0, 1].
    Returns [B, C, h*t, w*t] in coarse_alpha's dtype; half types compute in float32.
    `tiles` is not needed here: tile_map says which row goes where."""
    B, C, h, w = coarse_alpha.shape
    t = refined.shape[-1]
    compute = torch.promote_types(coarse_alpha.dtype, torch.float32)
    options = {"align_corners": False} if mode == "bilinear" else {}
    up = F.interpolate(coarse_alpha.to(compute), size=(h * t, w * t), mode=mode, **options)
    tiled = up.view(B, C, h, t, w, t).permute(0, 2, 4, 1, 3, 5)  # [B, h, w, C, t, t]
    if refined.shape[0] > 0:
        selected = (tile_map >= 0) & (tile_map < count)
        row = tile_map.clamp(0, refined.shape[0] - 1).long()  # any valid index where unselected
        tiled = torch.where(selected[..., None, None, None], refined.to(compute)[row], tiled)
    alpha = tiled.permute(0, 3, 1, 4, 2, 5).reshape(B, C, h * t, w * t)
    return alpha.clamp(0, 1).to(coarse_alpha.dtype)
