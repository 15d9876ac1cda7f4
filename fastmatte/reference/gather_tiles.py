"""Eager reference of gather_tiles: upsample, concatenate, replicate-pad, crop by indexing."""
import torch
import torch.nn.functional as F


def gather_tiles(image: torch.Tensor, coarse: torch.Tensor, tiles: torch.Tensor,
                 count: torch.Tensor, tile: int = 8, halo: int = 0) -> torch.Tensor:
    """patches[capacity, C + Cc, tile + 2*halo, tile + 2*halo]; rows past count are zeros.

    Builds the full-resolution RGBA-like tensor the fast kernels avoid, then crops it.
    Differentiable in image and coarse through autograd.
    """
    H, W = image.shape[-2:]
    upsampled = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)
    padded = F.pad(torch.cat([image, upsampled], dim=1), (halo, halo, halo, halo), mode="replicate")

    valid = torch.arange(tiles.shape[0], device=tiles.device) < count  # no host sync
    # Rows past count may hold -1: point them at tile (0, 0, 0) and zero them afterwards.
    b, ty, tx = torch.where(valid[:, None], tiles.long(), 0).unbind(1)
    offsets = torch.arange(tile + 2 * halo, device=tiles.device)
    # Padded coordinates: the window of tile ty starts at row ty*tile - halo + halo.
    rows = ty[:, None] * tile + offsets
    cols = tx[:, None] * tile + offsets
    # Advanced indices around a slice: the result is [capacity, size, size, channels].
    patches = padded[b[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return torch.where(valid[:, None, None, None], patches, 0).contiguous()
