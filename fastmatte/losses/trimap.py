"""Ground-truth trimaps made from alpha, and the trimap cross-entropy.

Class order (DESIGN.md, PP-Matting, CRAMatting's trimap logits): 0 foreground, 1 unknown
(transition), 2 background.
"""
import math

import torch
import torch.nn.functional as F

from fastmatte.ops._checks import check_int, check_tensor, fail

FOREGROUND, UNKNOWN, BACKGROUND = 0, 1, 2


def trimap_from_alpha(alpha, kernel_size=5, iterations=1):
    """Per-pixel trimap classes from a matte: unknown = dilate(alpha > 0) minus erode(alpha >= 1),
    foreground = erode(alpha >= 1), background = the rest (outside dilate(alpha > 0)).

    alpha: [B, 1, H, W] float in 0..1, or uint8 0..255 (255 is opaque); any device.
    kernel_size (odd), iterations: the square structuring element, applied `iterations` times
    (which is one square of side iterations * (kernel_size - 1) + 1). The unknown band is every
    soft pixel plus r = iterations * (kernel_size // 2) pixels on each side of it (a hard 0/1 edge
    gives a band 2r wide); the default marks 2 pixels each side. kernel_size=1 gives the soft
    pixels only. Pixels beyond the image border are ignored (they neither erode nor dilate),
    as with scipy.ndimage grey_erosion / grey_dilation in 'nearest' mode.
    Returns int64 [B, H, W].
    """
    op = "losses.trimap_from_alpha"
    _check_alpha(op, alpha)
    check_int(op, "kernel_size", kernel_size, 1)
    if kernel_size % 2 == 0:
        fail(op, f"kernel_size must be odd (a centered square), got {kernel_size}")
    check_int(op, "iterations", iterations, 0)
    opaque = 255 if alpha.dtype == torch.uint8 else 1
    side = iterations * (kernel_size - 1) + 1
    covered = _dilate((alpha > 0).to(torch.float32), side)
    solid = -_dilate(-(alpha >= opaque).to(torch.float32), side)  # erosion, as -max(-x)
    classes = torch.full_like(alpha, BACKGROUND, dtype=torch.int64)
    classes = torch.where(covered > 0, UNKNOWN, classes)
    classes = torch.where(solid > 0, FOREGROUND, classes)
    return classes[:, 0]


def coarse_trimap_target(alpha, tile=8, grid=None, kernel_size=5, iterations=1):
    """The ground truth of CRAMatting's coarse trimap: one class per tile x tile region.

    A tile is unknown (1) if any of its pixels is unknown in trimap_from_alpha(alpha, kernel_size,
    iterations); otherwise foreground (0) if it holds more foreground than background pixels, else
    background (2). (With kernel_size >= 3 a tile without unknown pixels is all foreground or all
    background, so the majority only decides when kernel_size = 1.)
    alpha: [B, 1, H, W] float 0..1 or uint8 0..255. grid: (h, w) tiles, the grid of the image
    padded at the bottom/right to h * tile x w * tile (at least H x W); default the model's grid,
    (ceil(H/16) * 2, ceil(W/16) * 2) for tile 8, i.e. the image padded to a multiple of 2 * tile.
    alpha is padded as CRAMatting pads the image, by repeating its last row and column, so the
    target is the matte of the padded image the model sees.
    Returns int64 [B, h, w].
    """
    op = "losses.coarse_trimap_target"
    _check_alpha(op, alpha)
    alpha = _pad_to_grid(alpha, tile, _grid(op, alpha, tile, grid))
    classes = trimap_from_alpha(alpha, kernel_size, iterations)
    counts = _tile_sums(F.one_hot(classes, 3).permute(0, 3, 1, 2).to(torch.float32), tile)
    fg, unknown, bg = counts.unbind(1)
    target = torch.where(fg > bg, FOREGROUND, BACKGROUND)
    return torch.where(unknown > 0, UNKNOWN, target)


def coarse_alpha_target(alpha, tile=8, grid=None):
    """The ground truth of CRAMatting's coarse alpha: the mean of alpha over each tile's pixels
    (area downsampling) after padding alpha to the grid by edge replication, as the model pads.

    alpha: [B, 1, H, W] float 0..1 or uint8 0..255 (read as v / 255). grid: as for
    coarse_trimap_target. Returns [B, 1, h, w] in alpha's float dtype (float32 for uint8).
    """
    op = "losses.coarse_alpha_target"
    _check_alpha(op, alpha)
    alpha = _pad_to_grid(alpha, tile, _grid(op, alpha, tile, grid))
    return _tile_sums(alpha, tile) / tile ** 2


def trimap_loss(logits, target, class_weights=None):
    """Cross entropy of trimap logits against class targets (0 fg, 1 unknown, 2 bg), averaged over
    the pixels (weighted by class_weights[target] when given, as torch's cross_entropy does).

    logits: float [B, 3, h, w] (fp16/bf16 upcast to float32). target: int64 [B, h, w] of 0, 1, 2.
    class_weights: None, or a float tensor [3] (e.g. more weight on the rarer unknown class).
    Returns a 0-d tensor (float32 or float64).
    """
    op = "losses.trimap_loss"
    check_tensor(op, "logits", logits, rank=4, layout="[B, 3, h, w]", floating=True)
    if logits.shape[1] != 3:
        fail(op, f"logits must be [B, 3, h, w] (fg, unknown, bg), got {list(logits.shape)}")
    check_tensor(op, "target", target, rank=3, layout="[B, h, w]", dtype=torch.int64, device=logits.device)
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        expected = [logits.shape[0], *logits.shape[2:]]
        fail(op, f"target must be [B, h, w] = {expected}, got {list(target.shape)}")
    logits = logits.double() if logits.dtype == torch.float64 else logits.float()
    if class_weights is not None:
        check_tensor(op, "class_weights", class_weights, rank=1, layout="[3]", floating=True,
                     device=logits.device)
        if class_weights.numel() != 3:
            fail(op, f"class_weights must be [3], got {list(class_weights.shape)}")
        class_weights = class_weights.to(logits.dtype)
    return F.cross_entropy(logits, target, weight=class_weights)


def _check_alpha(op, alpha):
    check_tensor(op, "alpha", alpha, rank=4, layout="[B, 1, H, W]")
    if alpha.shape[1] != 1:
        fail(op, f"alpha must be [B, 1, H, W], got {list(alpha.shape)}")
    if alpha.dtype != torch.uint8 and not alpha.is_floating_point():
        fail(op, f"alpha must be floating point (0..1) or uint8 (0..255), got {alpha.dtype}")


def _grid(op, alpha, tile, grid):
    check_int(op, "tile", tile, 1)
    H, W = alpha.shape[-2:]
    if grid is None:
        return math.ceil(H / (2 * tile)) * 2, math.ceil(W / (2 * tile)) * 2
    if len(grid) != 2 or any(isinstance(g, bool) or not isinstance(g, int) for g in grid):
        fail(op, f"grid must be a pair of ints (h, w), got {grid!r}")
    if grid[0] * tile < H or grid[1] * tile < W:
        fail(op, f"grid {tuple(grid)} x tile {tile} = {grid[0] * tile} x {grid[1] * tile} pixels does "
                 f"not cover the {H} x {W} image")
    return tuple(grid)


def _dilate(x, side):
    return F.max_pool2d(x, side, stride=1, padding=side // 2) if side > 1 else x


def _pad_to_grid(alpha, tile, grid):
    """alpha as float (uint8 read as v / 255) padded bottom/right to grid * tile pixels by edge
    replication (CRAMatting's padding of the image)."""
    if alpha.dtype == torch.uint8:
        alpha = alpha.to(torch.float32) / 255
    H, W = alpha.shape[-2:]
    return F.pad(alpha, (0, grid[1] * tile - W, 0, grid[0] * tile - H), mode="replicate")


def _tile_sums(x, tile):
    """[B, C, h * tile, w * tile] -> [B, C, h, w]: sums over tile x tile blocks."""
    B, C, H, W = x.shape
    return x.reshape(B, C, H // tile, tile, W // tile, tile).sum((3, 5))
