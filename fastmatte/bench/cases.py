"""What a benchmark case is, and the synthetic inputs the cases share: frame sizes and a
portrait-like trimap (no photo or weights are needed to time an operator)."""
import math
from typing import Callable, NamedTuple

import torch

RESOLUTIONS = {"hd": (1080, 1920), "4k": (2160, 3840)}
TILE = 8  # the refinement tile of the tile and attention cases


class OpCase(NamedTuple):
    """One timed operation: the fastmatte call, its eager reference, and the fewest bytes it
    must move through memory (each input read once, each output written once)."""

    op: str
    fastmatte: Callable
    eager: Callable
    min_bytes: int
    tiles: int


def portrait_trimap(height, width, tile=8, band=0.018, batch=1, device="cpu", dtype=torch.float32,
                    seed=0):
    """3-class logits on the tile grid [B, 3, H/t, W/t] of a head-and-shoulders silhouette:
    class 0 (foreground) inside, 2 (background) outside, 1 (unknown) in a band around the
    outline `band` x the grid height wide on each side, roughened like hair. About 5-10% of
    tiles are unknown at HD/4K."""
    h, w = height // tile, width // tile
    band = band * h
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(h, dtype=torch.float32).view(h, 1)
    x = torch.arange(w, dtype=torch.float32).view(1, w)
    cx, scale = w / 2, h / 10
    head = ((x - cx) / (2.2 * scale)) ** 2 + ((y - 3.6 * scale) / (2.8 * scale)) ** 2
    body = ((x - cx) / (4.8 * scale)) ** 2 + ((y - 11.5 * scale) / (5.0 * scale)) ** 2
    inside = torch.minimum(head, body)  # < 1 inside the silhouette
    # distance to the outline in tiles, roughly: (value - 1) times the local radius
    distance = (inside.sqrt() - 1) * 2.5 * scale
    distance = distance + torch.rand(h, w, generator=gen) * band * 1.5 * (y < 5 * scale)
    logits = torch.randn(batch, 3, h, w, generator=gen) * 0.3
    unknown = distance.abs() < band
    logits[:, 0] += torch.where(~unknown & (distance < 0), 3.0, 0.0)
    logits[:, 2] += torch.where(~unknown & (distance >= 0), 3.0, 0.0)
    logits[:, 1] += torch.where(unknown, 3.0, 0.0)
    return logits.to(device=device, dtype=dtype)


def capacity_for(candidates: int) -> int:
    """A fixed capacity with headroom, as a video pipeline would set it: next multiple of 1024
    above 1.25 x the tiles seen."""
    return max(1024, math.ceil(candidates * 1.25 / 1024) * 1024)
