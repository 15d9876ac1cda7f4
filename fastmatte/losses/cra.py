"""CRAMatting's training loss as the official trainer computes it (yataoz/lightweight_portrait_matting:
trainer.py FullGenerator.forward, losses.py, config.py TRAIN.LOSS_WEIGHTS, P3MData/img_proc.py).

Trimap classes are the official order: 0 background, 1 unknown, 2 foreground. Targets live on the
stride-8 grid (h, w) = (H/8, W/8): the area-downsampled alpha for the seg logits, the area-downsampled
one-hot trimap (soft) for the trimap logits; logits at strides 32 and 16 are bilinearly upsampled to
that grid (align_corners=False) before their loss, not the targets downsampled. The class counts of
argmax(soft trimap target) over the whole batch weigh the trimap focal loss (count^-1/2) and the
full-resolution losses (count^-2: the unknown pixels weigh w_1, the others 1 - w_1).
In official training the model picks its refined cells from its own predicted trimap (the trainer
passes no trimap), and nothing supervises the refined cells directly: they enter through the final
alpha. The official default has no adversarial term (TRAIN.GAN_LOSS = None) and no distillation.
"""
import torch
import torch.nn.functional as F

from fastmatte.losses._common import check_mask, weighted_mean, working
from fastmatte.losses.focal import focal_loss
from fastmatte.losses.pixel import alpha_l1_loss, composition_loss
from fastmatte.ops._checks import check_tensor, fail

CRA_LOSS_WEIGHTS = {"lowres_seg": 1.0, "lowres_trimap": 1.0, "highres_matte": 1.0, "highres_lap": 1.0,
                    "highres_comp": 1.0}
"""The official TRAIN.LOSS_WEIGHTS (config.py) of the terms cra_loss computes."""

CRA_WEIGHT_DECAY = 1e-6
"""The official TRAIN.WEIGHT_DECAY: the factor of cra_weight_penalty, added to the loss (Adam has none)."""

STRIDE = 8  # the official DOWNSAMPLE_RATE: one low-resolution cell is an 8 x 8 block
_UNKNOWN = 1
# cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)): img_proc.gen_trimap_with_dilation's kernel.
_ELLIPSE = ((0, 0, 0, 1, 0, 0, 0), (0, 1, 1, 1, 1, 1, 0), (1, 1, 1, 1, 1, 1, 1), (1, 1, 1, 1, 1, 1, 1),
            (1, 1, 1, 1, 1, 1, 1), (0, 1, 1, 1, 1, 1, 0), (0, 0, 0, 1, 0, 0, 0))


def cra_trimap(alpha):
    """The official ground-truth trimap (gen_trimap_with_dilation, kernel 7): foreground (2) =
    erode(alpha == 1), unknown (1) = dilate(alpha > 0) minus that, background (0) the rest, with
    the 7 x 7 OpenCV ellipse as structuring element; pixels beyond the border are ignored (kornia's
    geodesic border). alpha: float [B, 1, H, W] in 0..1. Returns int64 [B, 1, H, W].
    (The official data pipeline makes it before its random warp and warps it with nearest sampling;
    give cra_loss that warped trimap to follow it exactly.)"""
    check_tensor("losses.cra_trimap", "alpha", alpha, rank=4, layout="[B, 1, H, W]", floating=True)
    if alpha.shape[1] != 1:
        fail("losses.cra_trimap", f"alpha must be [B, 1, H, W], got {list(alpha.shape)}")
    kernel = torch.tensor(_ELLIPSE, dtype=torch.float32, device=alpha.device)[None, None]
    # Binary morphology as counts under the ellipse; the zero padding ignores outside pixels.
    dilated = F.conv2d((alpha > 0).float(), kernel, padding=3) > 0
    eroded = F.conv2d((alpha < 1).float(), kernel, padding=3) == 0
    return torch.where(eroded, 2, dilated.long())


def cra_seg_target(alpha):
    """The target of the seg logits: alpha area-downsampled by 8 (the mean of each 8 x 8 block).
    alpha: float [B, 1, H, W], H and W multiples of 8. Returns [B, 1, H/8, W/8] in alpha's dtype."""
    return F.avg_pool2d(alpha, STRIDE)


def cra_trimap_target(trimap):
    """The soft target of the trimap logits: the one-hot trimap area-downsampled by 8, i.e. each
    class's share of the 8 x 8 block. trimap: [B, 1, H, W] of class values 0, 1, 2 (any dtype), H
    and W multiples of 8. Returns float32 [B, 3, H/8, W/8]; argmax(dim=1) is the official class map
    (ties go to the lower class)."""
    one_hot = F.one_hot(trimap[:, 0].long(), 3).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(one_hot, STRIDE)


def cra_class_weights(classes, power):
    """Class weights c_k^-power / (sum_j c_j^-power + 1e-8) from the counts c_k of classes 0, 1, 2 in
    `classes` (int [B, h, w], the argmax of cra_trimap_target), power 0.5 for the trimap focal loss
    and 2 for the full-resolution masks. A class that does not occur weighs 0 (the official code
    makes NaN). Returns float64 [3] (the official float32 values, correctly rounded)."""
    counts = torch.stack([(classes == k).sum() for k in range(3)]).double()
    weights = torch.where(counts > 0, counts.clamp_min(1) ** -power, 0.0)
    return weights / (weights.sum() + 1e-8)


def cra_laplacian_loss(pred, gt, mask, levels=5):
    """The official Laplacian loss: sum over the levels l = 0 .. levels of the mask-weighted mean
    |P_l(pred) - P_l(gt)| (no level weights), where G_0 = x, P_l = G_l - blur(G_l) for l < levels,
    G_{l+1} = avg_pool2d(blur(G_l), 2) and P_levels = G_levels (the low-pass remainder counts too).
    blur: replicate padding of 2, then the normalized 5 x 5 kernel k[i, j] = e^-(i-2)^2 + e^-(j-2)^2 (the
    official build_gaussian_kernel sums its two 1-D Gaussians where a product was meant: not a
    Gaussian). Level l weighs pixels by the mask bilinearly resized to its size (align_corners=False).

    pred, gt: float [B, 1, H, W]; H, W >= 2^levels. mask: bool or float [B, 1, H, W] weights >= 0;
    an empty mask gives 0. fp16/bf16 are upcast to float32. Returns a 0-d tensor.
    """
    op = "losses.cra_laplacian_loss"
    check_tensor(op, "pred", pred, rank=4, layout="[B, 1, H, W]")
    if pred.shape[1] != 1 or min(pred.shape[-2:]) < 2 ** levels:
        fail(op, f"pred must be [B, 1, H, W] with H, W >= 2^levels = {2 ** levels}, got {list(pred.shape)}")
    pred, gt = working(op, {"pred": (pred, pred.shape), "gt": (gt, pred.shape)})
    check_mask(op, mask, pred.shape, pred.device)
    mask = mask.to(pred.dtype).expand(pred.shape)
    offsets = torch.arange(5, dtype=torch.float64, device=pred.device) - 2
    line = torch.exp(-offsets ** 2)
    kernel = line[:, None] + line[None, :]
    kernel = (kernel / kernel.sum()).to(pred.dtype)[None, None]
    B = pred.shape[0]
    current = torch.cat([pred, gt])
    total = pred.new_zeros(())
    for level in range(levels + 1):
        weights = mask if level == 0 else F.interpolate(mask, size=current.shape[-2:], mode="bilinear",
                                                        align_corners=False)
        if level == levels:
            band = current
        else:
            blurred = F.conv2d(F.pad(current, (2, 2, 2, 2), mode="replicate"), kernel)
            band, current = current - blurred, F.avg_pool2d(blurred, 2)
        total = total + weighted_mean((band[:B] - band[B:]).abs(), weights)
    return total


def cra_loss(outputs, alpha, image=None, fg=None, bg=None, trimap=None, weights=None):
    """The official training loss of CRAMatting and its parts.

    outputs: CRAMatting's dict: "alpha" [B, 1, H, W] (the final matte), "seg_logits" and
    "trimap_logits": lists of [B, 1, h_i, w_i] and [B, 3, h_i, w_i] logits (coarsest first; any
    sizes, resized to the stride-8 grid). alpha: float [B, 1, H, W] ground truth in 0..1; H, W
    multiples of 8, at least 32. trimap: the ground-truth trimap [B, 1, H, W] (0 bg, 1 unknown,
    2 fg), default cra_trimap(alpha). fg, bg: float [B, 3, H, W] true colors (both or neither);
    image: the model's input [B, 3, H, W], default the composite of fg and bg with alpha.
    With s = cra_seg_target(alpha), t = cra_trimap_target(trimap), k = argmax_c t, and the mask m =
    w_1 where trimap == 1 else 1 - w_1, w = cra_class_weights(k, 2), the unweighted parts are:
      lowres_seg_i     mean binary cross entropy of seg_logits[i] (resized) against s
      lowres_trimap_i  focal_loss(trimap_logits[i] (resized), t, cra_class_weights(k, 0.5), gamma 2)
      highres_matte    m-weighted mean sqrt((alpha_pred - alpha)^2 + 1e-12)
      highres_lap      cra_laplacian_loss(alpha_pred, alpha, m)
      highres_comp     m-weighted mean over pixels and channels of sqrt((fg a + bg (1 - a) - image)^2
                       + 1e-12), a = alpha_pred: only when fg and bg are given
    weights: {term: weight} overriding CRA_LOSS_WEIGHTS (keys without the _i); unknown keys are
    refused. The official total also adds cra_weight_penalty(model). Computes in float32 (float64 for
    float64 inputs). Returns (total, {part: 0-d tensor}); total = sum of weight * part.
    """
    op = "losses.cra_loss"
    if not isinstance(outputs, dict) or not {"alpha", "seg_logits", "trimap_logits"} <= outputs.keys():
        raise TypeError(f"fastmatte.{op}: outputs must be CRAMatting's dict with alpha, seg_logits and "
                        f"trimap_logits (aux=True), got {type(outputs).__name__}")
    unknown = set(weights or {}) - CRA_LOSS_WEIGHTS.keys()
    if unknown:
        fail(op, f"weights has unknown terms {sorted(unknown)}; the terms are {list(CRA_LOSS_WEIGHTS)}")
    weights = CRA_LOSS_WEIGHTS | (weights or {})
    if (fg is None) != (bg is None):
        fail(op, "fg and bg go together: give both (for the composition term) or neither")
    check_tensor(op, "alpha", alpha, rank=4, layout="[B, 1, H, W]", floating=True)
    B, _, H, W = alpha.shape
    if alpha.shape[1] != 1 or H % STRIDE or W % STRIDE or H < 32 or W < 32:
        fail(op, f"alpha must be [B, 1, H, W], H and W multiples of 8, at least 32, got {list(alpha.shape)}")
    pred, alpha = working(op, {"outputs['alpha']": (outputs["alpha"], (B, 1, H, W)),
                               "alpha": (alpha, (B, 1, H, W))})
    if trimap is None:
        trimap = cra_trimap(alpha)
    check_tensor(op, "trimap", trimap, rank=4, layout="[B, 1, H, W]", device=alpha.device)
    if trimap.shape != alpha.shape:
        fail(op, f"trimap must be [B, 1, H, W] = {list(alpha.shape)}, got {list(trimap.shape)}")
    seg_target = cra_seg_target(alpha)
    trimap_target = cra_trimap_target(trimap).to(alpha.dtype)
    classes = trimap_target.argmax(1)
    parts = {}
    for i, logits in enumerate(_logit_list(op, outputs, "seg_logits", B, 1, alpha)):
        logits = _on_grid(logits, seg_target)
        parts[f"lowres_seg_{i}"] = F.binary_cross_entropy_with_logits(logits, seg_target)
    focal_weights = cra_class_weights(classes, 0.5).to(alpha.dtype)
    for i, logits in enumerate(_logit_list(op, outputs, "trimap_logits", B, 3, alpha)):
        parts[f"lowres_trimap_{i}"] = focal_loss(_on_grid(logits, seg_target), trimap_target, focal_weights)
    unknown_weight = cra_class_weights(classes, 2.0)[_UNKNOWN].to(alpha.dtype)
    mask = torch.where(trimap == _UNKNOWN, unknown_weight, 1 - unknown_weight)
    parts["highres_matte"] = alpha_l1_loss(pred, alpha, mask, eps=1e-6)
    parts["highres_lap"] = cra_laplacian_loss(pred, alpha, mask)
    if fg is not None:
        parts["highres_comp"] = composition_loss(pred, alpha, fg, bg, image, mask, eps=1e-6)
    total = sum(weights[name.rstrip("_0123456789")] * value for name, value in parts.items())
    return total, parts


def cra_weight_penalty(model, weight_decay=CRA_WEIGHT_DECAY):
    """The official regularizer: weight_decay * the sum of squares of every parameter of `model`
    (an nn.Module) whose name contains "weight" (conv, linear and norm weights; not biases or the
    relative-position tables). Returns a 0-d tensor (0 for a model without such parameters)."""
    squares = [p.square().sum() for name, p in model.named_parameters() if "weight" in name]
    return weight_decay * torch.stack(squares).sum() if squares else torch.zeros(())


def _logit_list(op, outputs, key, B, channels, like):
    logits = outputs[key]
    if not isinstance(logits, (list, tuple)) or not logits:
        fail(op, f"outputs['{key}'] must be a non-empty list of [B, {channels}, h, w] logits")
    for i, t in enumerate(logits):
        check_tensor(op, f"outputs['{key}'][{i}]", t, rank=4, layout=f"[B, {channels}, h, w]", floating=True,
                     device=like.device)
        if t.shape[:2] != (B, channels):
            fail(op, f"outputs['{key}'][{i}] must be [{B}, {channels}, h, w], got {list(t.shape)}")
    return [t.to(like.dtype) for t in logits]


def _on_grid(logits, target):
    """logits bilinearly resized to target's grid (align_corners=False) when their sizes differ."""
    if logits.shape[-2:] == target.shape[-2:]:
        return logits
    return F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
