"""PP-Matting's and PP-MattingV2's training losses as PaddleSeg's Matting code computes them
(PPMatting.loss, PPMattingV2.loss, and the MRSD and GradientLoss they use), eps = 1e-6 throughout.

- ``mrsd_loss``: r = sqrt((pred - gt)^2 + 1e-6); mean(r), or with a mask sum(mask r) / (sum(mask) + 1e-6).
- ``gradient_loss``: L1 between Sobel magnitudes S(x) = sqrt(gx^2 + gy^2 + 1e-6), gx, gy the
  correlations with [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] / 8 and its transpose after replicate
  padding by 1, per channel; mean |S(pred) - S(gt)|, or with a mask sum |S(mask pred) - S(mask gt)|
  / (sum(mask) + 1e-6): the mask multiplies both maps before the Sobel, the sum runs over every pixel.
- ``ppmatting_semantic_target``: the trimap as classes 0 foreground (255, and any other value),
  1 transition (128), 2 background (0).

Where fastmatte's conventions differ from the official ones (the values are the same):
outputs["alpha"] is the official "fusion"; outputs["semantic"] holds the logits, whose softmax the
official training dict holds (the loss applies it); trimaps are fastmatte's float 0 / 0.5 / 1 or the
official uint8 0 / 128 / 255; fg and bg are in 0..1 and are normalized here as (x - 0.5) / 0.5, the
tensors PaddleSeg's Normalize transform gives the official loss; a mask that broadcasts is expanded
to pred's shape before it is summed.
"""
import torch
import torch.nn.functional as F

from fastmatte.losses._common import check_mask, working
from fastmatte.losses.modnet import _describe
from fastmatte.losses.pixel import charbonnier
from fastmatte.losses.trimap import BACKGROUND, FOREGROUND, UNKNOWN
from fastmatte.ops._checks import check_tensor, fail

EPS = 1e-6
"""MRSD's and GradientLoss's eps (under the square roots and added to the mask sums)."""

PPMATTING_LOSS_WEIGHTS = {"semantic": 0.25, "detail": 0.25, "fusion": 0.25}
"""The official weights of PPMatting.loss's 'all' (they sum to 0.75, as there)."""


def mrsd_loss(pred, gt, mask=None):
    """PaddleSeg's MRSD: sqrt((pred - gt)^2 + 1e-6), averaged, or summed over `mask` and divided by
    sum(mask) + 1e-6. pred, gt: float tensors of one shape (fp16/bf16 upcast to float32); mask: None,
    or bool / float weights >= 0 broadcasting to pred. Returns a 0-d tensor (float32 or float64)."""
    op = "losses.mrsd_loss"
    check_tensor(op, "pred", pred)
    pred, gt = working(op, {"pred": (pred, pred.shape), "gt": (gt, pred.shape)})
    check_mask(op, mask, pred.shape, pred.device)
    return _mrsd(pred, gt, mask)


def gradient_loss(pred, gt, mask=None):
    """PaddleSeg's GradientLoss (the module docstring has the formula). pred, gt: float [B, C, H, W]
    (fp16/bf16 upcast to float32); mask: None, or bool / float weights >= 0 broadcasting to pred, an
    empty one giving 0 with a zero gradient. Returns a 0-d tensor (float32 or float64)."""
    op = "losses.gradient_loss"
    check_tensor(op, "pred", pred, rank=4, layout="[B, C, H, W]")
    pred, gt = working(op, {"pred": (pred, pred.shape), "gt": (gt, pred.shape)})
    check_mask(op, mask, pred.shape, pred.device)
    return _gradient(pred, gt, mask)


def ppmatting_semantic_target(trimap):
    """The classes PPMatting.loss trains the semantic head on: trimap == 128 (0.5 for a float
    trimap) -> 1 transition, == 0 -> 2 background, any other value -> 0 foreground.
    trimap: [B, 1, H, W], float 0 / 0.5 / 1 or uint8 0 / 128 / 255. Returns int64 [B, H, W]."""
    transition, background = _regions("losses.ppmatting_semantic_target", trimap)
    return _classes(transition, background)


def ppmatting_loss(outputs, gt_alpha, trimap, image, fg, bg, weights=None):
    """PP-Matting's training loss (PPMatting.loss) and its parts.

    outputs: PP-Matting's training dict: alpha [B, 1, H, W] (the fusion), semantic [B, 3, H, W]
    (logits: 0 foreground, 1 transition, 2 background), detail [B, 1, H, W] (sigmoid).
    gt_alpha: float [B, 1, H, W] in 0..1. trimap: [B, 1, H, W], float 0 / 0.5 / 1 or uint8
    0 / 128 / 255; its transition region T is trimap == 0.5 (128). fg, bg: float [B, 3, H, W] in
    0..1, normalized to f = (fg - 0.5) / 0.5, b = (bg - 0.5) / 0.5. image: None (the official target,
    the composite gt f + (1 - gt) b), or an image [B, 3, H, W] in 0..1 (normalized alike) to use
    as the composition target instead (not official).
    Parts (0-d tensors, named as in the official loss dict):
      semantic            mean -log(softmax(semantic)[class] + 1e-6), classes ppmatting_semantic_target
      detail_alpha        mrsd_loss(detail, gt, T);  detail_gradient  gradient_loss(detail, gt, T)
      fusion_alpha        mrsd_loss(alpha, gt);  fusion_gradient  gradient_loss(alpha, gt)
      fusion_composition  mrsd_loss(alpha f + (1 - alpha) b, target)
      detail, fusion      the sums of their parts
    weights: {semantic, detail, fusion: weight} over PPMATTING_LOSS_WEIGHTS (0.25 each); unknown names
    are refused. Float32 (float64 for float64 inputs). Returns (total, parts); total = weighted sum
    of semantic, detail and fusion (the official 'all').
    """
    op = "losses.ppmatting_loss"
    _check_outputs(op, outputs, ("alpha", "semantic", "detail"), "PP-Matting's")
    unknown = set(weights or {}) - PPMATTING_LOSS_WEIGHTS.keys()
    if unknown:
        fail(op, f"weights has unknown parts {sorted(unknown)}; the parts are {list(PPMATTING_LOSS_WEIGHTS)}")
    weights = PPMATTING_LOSS_WEIGHTS | (weights or {})
    check_tensor(op, "gt_alpha", gt_alpha, rank=4, layout="[B, 1, H, W]")
    B, _, H, W = gt_alpha.shape
    named = {f"outputs['{key}']": (outputs[key], (B, channels, H, W))
             for key, channels in (("alpha", 1), ("semantic", 3), ("detail", 1))}
    named |= {"gt_alpha": (gt_alpha, (B, 1, H, W)), "fg": (fg, (B, 3, H, W)), "bg": (bg, (B, 3, H, W))}
    if image is not None:
        named["image"] = (image, (B, 3, H, W))
    alpha, logits, detail, gt, fg, bg, *given = working(op, named)
    transition, background = _regions(op, trimap, (B, 1, H, W), gt.device)
    fg, bg, *given = ((x - 0.5) / 0.5 for x in (fg, bg, *given))
    target = given[0] if given else gt * fg + (1 - gt) * bg
    probability = torch.softmax(logits, 1)
    parts = {"semantic": F.nll_loss(torch.log(probability + EPS), _classes(transition, background)),
             "detail_alpha": _mrsd(detail, gt, transition),
             "detail_gradient": _gradient(detail, gt, transition),
             "fusion_alpha": _mrsd(alpha, gt, None),
             "fusion_composition": _mrsd(alpha * fg + (1 - alpha) * bg, target, None),
             "fusion_gradient": _gradient(alpha, gt, None)}
    parts["detail"] = parts["detail_alpha"] + parts["detail_gradient"]
    parts["fusion"] = parts["fusion_alpha"] + parts["fusion_composition"] + parts["fusion_gradient"]
    return sum(weights[name] * parts[name] for name in PPMATTING_LOSS_WEIGHTS), parts


def ppmattingv2_loss(outputs, gt_alpha, trimap):
    """PP-MattingV2's training loss (PPMattingV2.loss) and its parts.

    outputs: alpha [B, 1, H, W] and alpha_8x [B, 1, h, w] (the sigmoid of the 1/8 training head;
    1 <= h <= H, 1 <= w <= W). gt_alpha: float [B, 1, H, W] in 0..1. trimap: [B, 1, H, W], float
    0 / 0.5 / 1 or uint8 0 / 128 / 255; T = trimap == 0.5 (128). With gt8 = F.interpolate(gt, (h, w),
    mode="area") (adaptive average pooling, as Paddle's 'area'), parts (0-d tensors, official names):
      alpha_8x_mrsd  mrsd_loss(alpha_8x, gt8);  alpha_8x_grad  gradient_loss(alpha_8x, gt8)
      alpha_mrsd     mrsd_loss(alpha, gt) + 2 mrsd_loss(alpha, gt, T)
      alpha_grad     gradient_loss(alpha, gt) + 2 gradient_loss(alpha, gt, T)
      alpha_8x, alpha  the sums of their two parts
    Float32 (float64 for float64 inputs). Returns (total, parts); total = alpha + alpha_8x ('all').
    """
    op = "losses.ppmattingv2_loss"
    _check_outputs(op, outputs, ("alpha", "alpha_8x"), "PP-MattingV2's")
    check_tensor(op, "gt_alpha", gt_alpha, rank=4, layout="[B, 1, H, W]")
    B, _, H, W = gt_alpha.shape
    small = outputs["alpha_8x"]
    check_tensor(op, "outputs['alpha_8x']", small, rank=4, layout="[B, 1, h, w]")
    h, w = small.shape[-2:]
    if small.shape[:2] != (B, 1) or not (1 <= h <= H and 1 <= w <= W):
        fail(op, f"outputs['alpha_8x'] must be [B, 1, h, w] = [{B}, 1, h, w] with 1 <= h <= H = {H} and "
                 f"1 <= w <= W = {W} (about H/8 x W/8), got {list(small.shape)}")
    alpha, small, gt = working(op, {"outputs['alpha']": (outputs["alpha"], (B, 1, H, W)),
                                    "outputs['alpha_8x']": (small, (B, 1, h, w)),
                                    "gt_alpha": (gt_alpha, (B, 1, H, W))})
    transition, _ = _regions(op, trimap, (B, 1, H, W), gt.device)
    gt_small = F.interpolate(gt, size=(h, w), mode="area")
    parts = {"alpha_8x_mrsd": _mrsd(small, gt_small, None), "alpha_8x_grad": _gradient(small, gt_small, None),
             "alpha_mrsd": _mrsd(alpha, gt, None) + 2 * _mrsd(alpha, gt, transition),
             "alpha_grad": _gradient(alpha, gt, None) + 2 * _gradient(alpha, gt, transition)}
    parts["alpha_8x"] = parts["alpha_8x_mrsd"] + parts["alpha_8x_grad"]
    parts["alpha"] = parts["alpha_mrsd"] + parts["alpha_grad"]
    return parts["alpha"] + parts["alpha_8x"], parts


def _mrsd(pred, gt, mask):
    values = charbonnier(pred - gt, EPS ** 0.5)
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / (mask.sum() + EPS)


def _gradient(pred, gt, mask):
    if mask is None:
        return (_sobel(pred) - _sobel(gt)).abs().mean()
    mask = mask.to(pred.dtype).expand_as(pred)
    return (_sobel(pred * mask) - _sobel(gt * mask)).abs().sum() / (mask.sum() + EPS)


def _sobel(x):
    """sqrt(gx^2 + gy^2 + 1e-6) of each channel of x [B, C, H, W], replicate-padded by 1."""
    B, C, H, W = x.shape
    kernel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype,
                            device=x.device) / 8
    kernels = torch.stack([kernel_x, kernel_x.T])[:, None]
    grad = F.conv2d(F.pad(x.reshape(B * C, 1, H, W), (1, 1, 1, 1), mode="replicate"), kernels)
    return torch.sqrt((grad * grad).sum(1) + EPS).reshape(B, C, H, W)


def _regions(op, trimap, shape=None, device=None):
    """(transition, background) bool [B, 1, H, W] masks of a float 0/0.5/1 or uint8 0/128/255 trimap."""
    check_tensor(op, "trimap", trimap, rank=4, layout="[B, 1, H, W]", device=device)
    if trimap.shape[1] != 1 or shape is not None and tuple(trimap.shape) != tuple(shape):
        fail(op, f"trimap must be [B, 1, H, W]{'' if shape is None else f' = {list(shape)}'}, "
                 f"got {list(trimap.shape)}")
    if trimap.dtype != torch.uint8 and not trimap.is_floating_point():
        fail(op, f"trimap must be float (0, 0.5 = transition, 1) or uint8 (0, 128, 255), got {trimap.dtype}")
    return trimap == (128 if trimap.dtype == torch.uint8 else 0.5), trimap == 0


def _classes(transition, background):
    return torch.where(transition, UNKNOWN, torch.where(background, BACKGROUND, FOREGROUND))[:, 0]


def _check_outputs(op, outputs, keys, model):
    if not isinstance(outputs, dict) or not set(keys) <= outputs.keys():
        raise TypeError(f"fastmatte.{op}: outputs must be {model} training dict with {', '.join(keys)} "
                        f"(model.train() or aux=True), got {_describe(outputs)}")
