"""Laplacian pyramid loss: L1 between the band-pass levels of the predicted and true mattes, which
weighs errors at every scale (fine hair and the overall shape) instead of per pixel only."""
import math

import torch
import torch.nn.functional as F

from fastmatte.losses._common import check_mask, weighted_mean, working
from fastmatte.ops._checks import check_int, check_tensor, fail

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def laplacian_loss(pred, gt, levels=5, mask=None):
    """sum_i 2^i * mean |L_i(pred) - L_i(gt)| over the levels i = 0 .. levels-1 of the Laplacian
    pyramid (level 0 the finest): the level weights 2^i of MG-Matting / FBA-Matting's loss.

    The pyramid is OpenCV's (cv2.pyrDown / cv2.pyrUp): G_0 = x, G_{i+1} = blur(G_i)[::2, ::2],
    L_i = G_i - expand(G_{i+1}), with blur the 5x5 kernel [1,4,6,4,1]^T [1,4,6,4,1] / 256 under
    reflect-101 padding, and expand = zero-insertion to 2*ceil(n/2) samples, blur x 4, cropped to
    n (so odd sizes work). Only the band-pass levels count, not the low-pass remainder G_levels
    (the alpha L1 loss already covers it).

    pred, gt: float [B, C, H, W] (C = 1 for a matte), same shape; fp16/bf16 are upcast to float32.
    The coarsest level must be at least 3 pixels each way: ceil(H / 2^(levels-1)) >= 3 (H >= 33
    for 5 levels), else ValueError. mask: None, or weights >= 0 broadcasting to pred's shape; level
    i weighs its pixels by the mask's own Gaussian pyramid G_i(mask); an empty mask gives 0.
    Returns a 0-d tensor (float32 or float64).
    """
    op = "losses.laplacian_loss"
    check_tensor(op, "pred", pred, rank=4, layout="[B, C, H, W]")
    pred, gt = working(op, {"pred": (pred, pred.shape), "gt": (gt, pred.shape)})
    check_mask(op, mask, pred.shape, pred.device)
    check_int(op, "levels", levels, 1)
    B, C, H, W = pred.shape
    coarsest = min(math.ceil(H / 2 ** (levels - 1)), math.ceil(W / 2 ** (levels - 1)))
    if coarsest < 3:
        fail(op, f"levels={levels} needs ceil(H / 2^{levels - 1}) >= 3 and the same for W (reflect "
                 f"padding at the coarsest level), got H x W = {H} x {W}; use fewer levels")
    kernel = _kernel(pred)
    # Channels are independent: fold them into the batch for a single-channel convolution.
    current = torch.cat([pred, gt]).reshape(2 * B * C, 1, H, W)
    weights = None if mask is None else mask.to(pred.dtype).expand(B, C, H, W).reshape(B * C, 1, H, W)
    total = pred.new_zeros(())
    for level in range(levels):
        down = _reduce(current, kernel)
        band = current - _expand(down, kernel, current.shape[-2:])
        difference = (band[: B * C] - band[B * C:]).abs()
        total = total + 2 ** level * weighted_mean(difference, weights)
        current = down
        if weights is not None:
            weights = _reduce(weights, kernel)
    return total


def _kernel(like):
    taps = torch.tensor(_BINOMIAL, dtype=like.dtype, device=like.device) / 16
    return (taps[:, None] * taps[None, :])[None, None]


def _blur(x, kernel):
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel)


def _reduce(x, kernel):
    return _blur(x, kernel)[..., ::2, ::2]


def _expand(x, kernel, size):
    h, w = x.shape[-2:]
    # Zero insertion into a [2h, 2w] grid; the 4x gain restores the mean the zeros took away.
    spread = torch.stack([x * 4, torch.zeros_like(x)], dim=-1).reshape(*x.shape[:-1], 2 * w)
    spread = torch.stack([spread, torch.zeros_like(spread)], dim=-2).reshape(*x.shape[:-2], 2 * h, 2 * w)
    return _blur(spread, kernel)[..., : size[0], : size[1]]
