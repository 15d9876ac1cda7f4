"""MODNet's training objectives as ZHKKKe/MODNet's src/trainer.py computes them (not the paper's
formulas where the two differ): the supervised loss of supervised_training_iter (modnet_loss) and
the self-supervised SOC consistency of soc_adaptation_iter (modnet_soc_loss).

Both work on the dict MODNet returns in training (or with aux=True): "semantic" [B, 1, H/16, W/16],
"detail" and "alpha" [B, 1, H, W], all sigmoid outputs. Blur is the official GaussianBlurLayer(1, 3):
a fixed 3x3 Gaussian (sigma 0.3 * ((3 - 1) * 0.5 - 1) + 0.8 = 0.8, the kernel scipy's gaussian_filter
makes from a 3x3 delta: truncated at 4 sigma and folded back by its 'reflect' border) after
reflection padding of 1 pixel. Downsampling by 16 is bilinear, align_corners=False, no antialias.
The code is followed where the paper differs: the paper's semantic loss has a factor 1/2 that the
code lacks (weights={"semantic": 5.0} gives the paper's).
PaddleSeg's MODNet trains with another variant (semantic weight 1, an extra consistency term).
"""
import math

import torch
import torch.nn.functional as F

from fastmatte.losses._common import working
from fastmatte.losses.trimap import UNKNOWN, trimap_from_alpha
from fastmatte.ops._checks import check_tensor, fail

MODNET_LOSS_WEIGHTS = {"semantic": 10.0, "detail": 10.0, "matte": 1.0}
"""The official semantic_scale, detail_scale and matte_scale of supervised_training_iter."""


def boundary_from_alpha(alpha, kernel_size=5):
    """The transition region of a matte: dilate(alpha > 0) minus erode(alpha >= 1) with a square
    kernel_size x kernel_size (odd) max-pooling window, i.e. every soft pixel plus kernel_size // 2
    pixels each side (trimap_from_alpha's unknown class; fastmatte's trimap, the official code
    takes its trimap from the dataset). alpha: float [B, 1, H, W] in 0..1 (or uint8 0..255).
    Returns bool [B, 1, H, W], True in the transition region."""
    return (trimap_from_alpha(alpha, kernel_size) == UNKNOWN)[:, None]


def modnet_semantic_target(alpha):
    """blur(bilinear 1/16 downsample(alpha)): the official ground truth of the semantic head.
    alpha: float [B, 1, H, W], H and W multiples of 16 and at least 32 (the blur's reflection pad
    needs 2 pixels). Returns [B, 1, H/16, W/16] in alpha's dtype (float32 for fp16/bf16)."""
    op = "losses.modnet_semantic_target"
    check_tensor(op, "alpha", alpha, rank=4, layout="[B, 1, H, W]")
    _check_size(op, "alpha", alpha.shape)
    B, _, H, W = alpha.shape
    return _semantic_target(*working(op, {"alpha": (alpha, (B, 1, H, W))}))


def modnet_loss(outputs, gt_alpha, image, trimap=None, weights=None, boundary_kernel_size=5):
    """MODNet's supervised loss (supervised_training_iter) and its parts.

    outputs: MODNet's training dict: semantic [B, 1, H/16, W/16], detail and alpha [B, 1, H, W].
    gt_alpha: float [B, 1, H, W] in 0..1. image: float [B, 3, H, W] RGB in 0..1, the model's input;
    the composition terms weigh by the normalized image (image - 0.5) / 0.5, the tensor the official
    trainer multiplies with. H, W: multiples of 16, at least 32.
    trimap: None (the boundary is boundary_from_alpha(gt_alpha, boundary_kernel_size)), a bool
    [B, 1, H, W] boundary (True = transition), or the official float trimap [B, 1, H, W] of 0 (bg),
    0.5 (unknown: the boundary is trimap == 0.5 exactly) and 1 (fg).
    Parts (unweighted 0-d tensors; b = boundary, known = not b, N = B * H * W pixels):
      semantic  mean (semantic - modnet_semantic_target(gt))^2
      detail    sum_b |detail - gt| / N: the official where(known, trimap, .) on both sides, so known
                pixels add 0 and the mean is over every pixel, not over the boundary
      matte     mean |alpha - gt| + 4 mean |alpha_b - gt| + mean |img_n (alpha - gt)|
                + 4 mean |img_n (alpha_b - gt)|, alpha_b = where(known, trimap, alpha) (the trimap of
                a float trimap, else gt: known pixels then add 0), means over [B, 1 or 3, H, W]
    weights: {part: weight} over MODNET_LOSS_WEIGHTS (10, 10, 1); unknown names are refused.
    Float32 (float64 for float64 inputs). Returns (total, parts); total = sum weight * part.
    """
    op = "losses.modnet_loss"
    if not isinstance(outputs, dict) or not {"alpha", "semantic", "detail"} <= outputs.keys():
        raise TypeError(f"fastmatte.{op}: outputs must be MODNet's training dict with alpha, semantic and "
                        f"detail (model.train() or aux=True), got {_describe(outputs)}")
    unknown = set(weights or {}) - MODNET_LOSS_WEIGHTS.keys()
    if unknown:
        fail(op, f"weights has unknown parts {sorted(unknown)}; the parts are {list(MODNET_LOSS_WEIGHTS)}")
    weights = MODNET_LOSS_WEIGHTS | (weights or {})
    check_tensor(op, "gt_alpha", gt_alpha, rank=4, layout="[B, 1, H, W]")
    _check_size(op, "gt_alpha", gt_alpha.shape)
    B, _, H, W = gt_alpha.shape
    named = _heads("outputs", outputs, ("semantic", "detail", "alpha"), B, H, W)
    named |= {"gt_alpha": (gt_alpha, (B, 1, H, W)), "image": (image, (B, 3, H, W))}
    semantic, detail, alpha, gt, image = working(op, named)
    target = _semantic_target(gt)
    boundary, known_value = _boundary(op, trimap, gt, boundary_kernel_size)
    image = (image - 0.5) / 0.5
    boundary_alpha = torch.where(boundary, alpha, known_value)
    parts = {
        "semantic": ((semantic - target) ** 2).mean(),
        "detail": torch.where(boundary, detail - gt, 0).abs().mean(),
        "matte": (alpha - gt).abs().mean() + 4 * (boundary_alpha - gt).abs().mean()
        + (image * (alpha - gt)).abs().mean() + 4 * (image * (boundary_alpha - gt)).abs().mean(),
    }
    return sum(weights[name] * value for name, value in parts.items()), parts


def modnet_soc_boundary(alpha, semantic):
    """The region where SOC compares with the backup model (soc_adaptation_iter): fg = (alpha > 0.1)
    * bilinear x16 upsample of (semantic > 0.1) (fractional at its edges), boundary = dilate(fg) !=
    erode(fg) with a side x side window, side = int((H + W) / 2 * 0.05), as scipy's grey_dilation /
    grey_erosion place it (for an even side the dilation reaches side / 2 pixels down/right and the
    erosion up/left); pixels beyond the border are ignored, as their 'reflect' mode amounts to.
    alpha: [B, 1, H, W]; semantic: [B, 1, H/16, W/16] (detached here). Returns bool [B, 1, H, W]."""
    H, W = alpha.shape[-2:]
    fg = (alpha.detach() > 0.1).float() * F.interpolate((semantic.detach() > 0.1).float(), size=(H, W),
                                                        mode="bilinear", align_corners=False)
    side = max(int((H + W) / 2 * 0.05), 1)
    before, after = (side - 1) // 2, side // 2
    dilated = F.max_pool2d(F.pad(fg, (before, after, before, after), value=-math.inf), side, stride=1)
    eroded = -F.max_pool2d(F.pad(-fg, (after, before, after, before), value=-math.inf), side, stride=1)
    return dilated != eroded


def modnet_soc_loss(outputs, backup_outputs, semantic_scale=100.0, detail_scale=1.0):
    """SOC's consistency losses (soc_adaptation_iter) and their parts.

    outputs: the adapting model's training dict (semantic [B, 1, H/16, W/16], detail, alpha
    [B, 1, H, W]); backup_outputs: the frozen backup's dict on the same image (detail, alpha;
    detached here). With s = semantic, m = blur(bilinear 1/16 downsample(alpha)) (keeps its
    gradient) and the pseudo targets s* = s.detach() * (s > 0.01), m* = m.detach() * (m > 0.01):
      semantic  mean (s - m*)^2 + mean (m - s*)^2: the semantic head and the matte pulled together
      detail    boundary-mean |detail - backup detail| + boundary-mean |alpha - backup alpha|, each
                averaged per image over modnet_soc_boundary(alpha, semantic), then over the batch (an
                image without boundary adds 0 where the official code gives NaN)
    Returns (total, parts); total = semantic_scale * semantic + detail_scale * detail (official
    defaults 100 and 1). Float32 (float64 for float64 inputs), 0-d tensors.
    """
    op = "losses.modnet_soc_loss"
    for name, given, keys in (("outputs", outputs, ("alpha", "semantic", "detail")),
                              ("backup_outputs", backup_outputs, ("alpha", "detail"))):
        if not isinstance(given, dict) or not set(keys) <= given.keys():
            raise TypeError(f"fastmatte.{op}: {name} must be MODNet's training dict with {', '.join(keys)} "
                            f"(model.train() or aux=True), got {_describe(given)}")
    check_tensor(op, "outputs['alpha']", outputs["alpha"], rank=4, layout="[B, 1, H, W]")
    _check_size(op, "outputs['alpha']", outputs["alpha"].shape)
    B, _, H, W = outputs["alpha"].shape
    semantic, detail, alpha, backup_detail, backup_alpha = working(
        op, _heads("outputs", outputs, ("semantic", "detail", "alpha"), B, H, W)
        | _heads("backup_outputs", backup_outputs, ("detail", "alpha"), B, H, W))
    matte_small = _semantic_target(alpha)
    pseudo_semantic = matte_small.detach() * (matte_small.detach() > 0.01)
    pseudo_matte = semantic.detach() * (semantic.detach() > 0.01)
    boundary = modnet_soc_boundary(alpha, semantic).to(alpha.dtype)
    share = boundary / boundary.sum((1, 2, 3), keepdim=True).clamp_min(torch.finfo(alpha.dtype).tiny)

    def boundary_mean(difference):
        return (share * difference.abs()).sum((1, 2, 3)).mean()

    parts = {
        "semantic": ((semantic - pseudo_semantic) ** 2).mean() + ((matte_small - pseudo_matte) ** 2).mean(),
        "detail": boundary_mean(detail - backup_detail.detach())
        + boundary_mean(alpha - backup_alpha.detach()),
    }
    return semantic_scale * parts["semantic"] + detail_scale * parts["detail"], parts


def _check_size(op, name, shape):
    H, W = shape[-2:]
    if shape[1] != 1 or H % 16 or W % 16 or H < 32 or W < 32:
        fail(op, f"{name} must be [B, 1, H, W] with H and W multiples of 16, at least 32 (the 1/16 map is "
                 f"blurred with reflection padding), got {list(shape)}")


def _semantic_target(alpha):
    H, W = alpha.shape[-2:]
    small = F.interpolate(alpha, size=(H // 16, W // 16), mode="bilinear", align_corners=False)
    return F.conv2d(F.pad(small, (1, 1, 1, 1), mode="reflect"), _blur_kernel(alpha))


def _blur_kernel(like):
    """GaussianBlurLayer(1, 3)'s weight [1, 1, 3, 3]: scipy.ndimage.gaussian_filter(delta 3x3, 0.8)
    is separable; its 1-D taps w_t (t = -3..3, 4 sigma rounded, normalized) fold back into 3 pixels
    by the half-sample reflection: [w1 + w2, w0 + 2 w3, w1 + w2]."""
    taps = torch.exp(-torch.arange(4, dtype=torch.float64) ** 2 / (2 * 0.8 ** 2))
    taps = taps / (taps[0] + 2 * taps[1:].sum())
    side = taps[1] + taps[2]
    line = torch.stack([side, taps[0] + 2 * taps[3], side])
    return torch.outer(line, line)[None, None].to(like)


def _boundary(op, trimap, gt, kernel_size):
    """(bool boundary [B, 1, H, W], the value alpha_b takes at known pixels)."""
    if trimap is None:
        return boundary_from_alpha(gt, kernel_size), gt
    check_tensor(op, "trimap", trimap, rank=4, layout="[B, 1, H, W]", device=gt.device)
    if tuple(trimap.shape) != tuple(gt.shape):
        fail(op, f"trimap must be [B, 1, H, W] = {list(gt.shape)}, got {list(trimap.shape)}")
    if trimap.dtype == torch.bool:
        return trimap, gt
    if not trimap.is_floating_point():
        fail(op, f"trimap must be bool (True = boundary) or float (0, 0.5 = unknown, 1), got {trimap.dtype}")
    return trimap == 0.5, trimap.to(gt.dtype)


def _heads(name, outputs, keys, B, H, W):
    """{"name['key']": (tensor, its shape for a [B, 3, H, W] image)}, as working() takes them."""
    shapes = {"semantic": (B, 1, H // 16, W // 16), "detail": (B, 1, H, W), "alpha": (B, 1, H, W)}
    return {f"{name}['{key}']": (outputs[key], shapes[key]) for key in keys}


def _describe(value):
    return f"keys {sorted(value)}" if isinstance(value, dict) else type(value).__name__
