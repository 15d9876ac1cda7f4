"""Ground-truth trimaps made from alpha by morphology (fastmatte's square-window trimap, used by the
MODNet and PP-Matting losses; CRA's official trimap is losses.cra.cra_trimap).

Class order (PP-Matting's semantic classes): 0 foreground, 1 unknown (transition), 2 background.
"""
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


def _check_alpha(op, alpha):
    check_tensor(op, "alpha", alpha, rank=4, layout="[B, 1, H, W]")
    if alpha.shape[1] != 1:
        fail(op, f"alpha must be [B, 1, H, W], got {list(alpha.shape)}")
    if alpha.dtype != torch.uint8 and not alpha.is_floating_point():
        fail(op, f"alpha must be floating point (0..1) or uint8 (0..255), got {alpha.dtype}")


def _dilate(x, side):
    return F.max_pool2d(x, side, stride=1, padding=side // 2) if side > 1 else x
