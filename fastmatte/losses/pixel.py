"""Per-pixel losses on the alpha matte and on the composite it makes: the smooth L1 (Charbonnier)
penalty sqrt(d^2 + eps^2) that PP-Matting and the CRA paper use for alpha and composition."""
import torch

from fastmatte.losses._common import check_mask, weighted_mean, working
from fastmatte.ops._checks import check_tensor, fail


def charbonnier(difference, eps):
    """sqrt(difference^2 + eps^2): |d| away from 0, smooth (gradient d / sqrt(d^2 + eps^2)) at 0.
    Its minimum is eps, not 0 (eps = 1e-3 is the sqrt(d^2 + 1e-6) of PP-Matting)."""
    return torch.sqrt(difference * difference + eps * eps)


def alpha_l1_loss(pred, gt, mask=None, eps=1e-3):
    """Smooth L1 alpha loss: the mean of sqrt((pred - gt)^2 + eps^2) over the pixels `mask` weights.

    pred, gt: float [B, 1, H, W] (any shape works, both the same) in 0..1; fp16/bf16 are upcast to
    float32 (float64 stays float64). mask: None (every pixel), or bool / float weights >= 0 that
    broadcast to pred's shape; an empty (all-zero) mask gives 0 with a zero gradient.
    eps: 1e-3 (PP-Matting's sqrt(d^2 + 1e-6)); a perfect prediction scores eps, not 0.
    Returns a 0-d tensor in the working precision (float32 or float64).
    """
    op = "losses.alpha_l1_loss"
    check_tensor(op, "pred", pred)
    pred, gt = working(op, {"pred": (pred, pred.shape), "gt": (gt, pred.shape)})
    check_mask(op, mask, pred.shape, pred.device)
    _check_eps(op, eps)
    return weighted_mean(charbonnier(pred - gt, eps), mask)


def composition_loss(pred_alpha, gt_alpha, fg, bg, image=None, mask=None, eps=1e-3):
    """Composition loss: the mean over pixels and channels of sqrt((C - image)^2 + eps^2), where
    C = pred_alpha * fg + (1 - pred_alpha) * bg is the image the predicted matte would make.

    pred_alpha, gt_alpha: float [B, 1, H, W] in 0..1. fg, bg: float [B, 3, H, W] in 0..1, the true
    foreground and background colors. image: float [B, 3, H, W], the observed image; default the
    composite with gt_alpha, gt_alpha * fg + (1 - gt_alpha) * bg (exact for synthetic composites).
    mask: None, or per-pixel weights broadcasting to [B, 3, H, W] (e.g. [B, 1, H, W]), counted once
    per channel. fp16/bf16 are upcast to float32. Returns a 0-d tensor (float32 or float64).
    """
    op = "losses.composition_loss"
    check_tensor(op, "pred_alpha", pred_alpha, rank=4, layout="[B, 1, H, W]")
    B, _, H, W = pred_alpha.shape
    named = {"pred_alpha": (pred_alpha, (B, 1, H, W)), "gt_alpha": (gt_alpha, (B, 1, H, W)),
             "fg": (fg, (B, 3, H, W)), "bg": (bg, (B, 3, H, W))}
    if image is not None:
        named["image"] = (image, (B, 3, H, W))
    pred_alpha, gt_alpha, fg, bg, *given = working(op, named)
    image = given[0] if given else gt_alpha * fg + (1 - gt_alpha) * bg
    check_mask(op, mask, fg.shape, fg.device)
    _check_eps(op, eps)
    composite = pred_alpha * fg + (1 - pred_alpha) * bg
    return weighted_mean(charbonnier(composite - image, eps), mask)


def _check_eps(op, eps):
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        fail(op, f"eps must be a positive number, got {eps!r}")
