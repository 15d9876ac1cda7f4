"""E2E-HIM's training objective: set prediction of human instances, queries matched to ground-truth
instances by the Hungarian algorithm, then classification, mask, trimap and alpha losses on the pairs.

Sources. E2E-HIM (Liu et al., "End-to-End Human Instance Matting", IEEE TCSVT 2023, arXiv 2403.01510;
aipixel/E2E-HIM) trains N = 20 instance queries with a DETR-style bipartite matching, but the
released repository holds inference code only and the paper's loss section could not be read here
(only its abstract). Everything below the matching principle is therefore MaskFormer's recipe
(Cheng et al. 2021, which DETR's set loss and focal + dice mask terms come from), adapted to
E2E-HIM's outputs, plus the two matting terms its heads call for; no weight below is the paper's.

Predicted instance mask. The model has no mask head: an instance is where its trimap is not
background, so the mask probability is m = 1 - softmax(trimap)[background] = P(unknown) + P(fg)
(the region where the official postprocessing writes alpha, trimap argmax in {1, 2}). Its logs are
taken as log-sum-exps of the logits, so nothing saturates. The ground-truth mask is gt trimap != 0.

Matching (``e2ehim_matching``, no gradient, float32; float64 for float64 inputs), per image, at full
output resolution (E2E-HIM's 640 x 640 gives a 20 x M cost from one matrix product per term, so no
point sampling as in Mask2Former): cost[q, j] = w_class (-p_q(present)) + w_focal F(m_q, t_j)
+ w_dice D(m_q, t_j) with
  F(m, t) = mean over pixels of  a t (1 - m)^g (-log m) + (1 - a)(1 - t) m^g (-log(1 - m)),
            a = 0.25, g = 2 (MaskFormer's sigmoid focal loss with the probability m in its place);
  D(m, t) = 1 - (2 sum m t + 1) / (sum m + sum t + 1);
weights ``E2EHIM_MATCHING_WEIGHTS`` (MaskFormer's 1 / 20 / 1), minimised by
scipy.optimize.linear_sum_assignment. Each image needs M_i <= N.

Loss (``e2ehim_loss``), with K = max(1, sum_i M_i) the number of ground-truth instances in the batch
(DETR's normalisation):
  class       cross entropy of the presence logits of every query: class 1 for matched queries, 0
              for the others, class 0 weighing ``E2EHIM_NO_OBJECT_WEIGHT`` = 0.1 (DETR's eos_coef);
              the weighted mean sum w_i l_i / sum w_i over the B N queries (F.cross_entropy's)
  mask_focal  sum over matched pairs of F(m_q, t_j), / K
  mask_dice   sum over matched pairs of D(m_q, t_j), / K
  trimap      sum over matched pairs of the mean pixel cross entropy of trimap_q against the gt
              trimap classes, / K
  alpha       sum over matched pairs of the mean |alpha_q - gt_j| over gt_j's unknown region (0 for
              an empty region), / K: the alpha head only counts there (alpha = alpha_pred U + F)
Unmatched queries get only the class term. total = sum of ``E2EHIM_LOSS_WEIGHTS`` * part.

Trimap classes are E2E-HIM's order: 0 background, 1 unknown, 2 foreground. The default ground-truth
trimap is 2 - trimap_from_alpha(alpha) (fastmatte's square-window morphology, whose order is
0 foreground, 1 unknown, 2 background): unknown = dilate(alpha > 0) minus erode(alpha == 1) with a
5 x 5 square, so the gt mask is dilate(alpha > 0).
"""
import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from fastmatte.losses._common import weighted_mean, working
from fastmatte.losses.trimap import trimap_from_alpha
from fastmatte.ops._checks import check_tensor, fail

E2EHIM_LOSS_WEIGHTS = {"class": 1.0, "mask_focal": 20.0, "mask_dice": 1.0, "trimap": 1.0, "alpha": 1.0}
"""Weights of e2ehim_loss's parts: MaskFormer's class / focal / dice (1 / 20 / 1); 1 for trimap and alpha
(the paper's own weights were not available)."""

E2EHIM_MATCHING_WEIGHTS = {"class": 1.0, "focal": 20.0, "dice": 1.0}
"""Weights of the matching cost's terms (MaskFormer's matcher: the same as its loss weights)."""

E2EHIM_NO_OBJECT_WEIGHT = 0.1
"""The weight of the no-object class (0) in the classification cross entropy (DETR's eos_coef)."""

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
BACKGROUND, UNKNOWN, FOREGROUND = 0, 1, 2  # E2E-HIM's trimap classes


def e2ehim_trimap(gt_alpha, kernel_size=5):
    """The default ground-truth trimaps of instances: 2 - trimap_from_alpha(alpha, kernel_size), i.e.
    E2E-HIM's classes 0 background, 1 unknown (dilate(alpha > 0) minus erode(alpha == 1), square
    window), 2 foreground. gt_alpha: float [M, H, W] in 0..1 (M >= 0). Returns int64 [M, H, W]."""
    check_tensor("losses.e2ehim_trimap", "gt_alpha", gt_alpha, rank=3, layout="[M, H, W]", floating=True)
    if gt_alpha.shape[0] == 0:
        return torch.zeros(gt_alpha.shape, dtype=torch.int64, device=gt_alpha.device)
    return 2 - trimap_from_alpha(gt_alpha[:, None], kernel_size)


def e2ehim_matching_costs(outputs, gt_alphas, gt_trimaps=None, weights=None):
    """The matching cost matrices (the module docstring has the formula): a list over the images of
    float [N, M_i] tensors (float32, float64 for float64 inputs), computed without gradient.
    Arguments as e2ehim_matching."""
    op = "losses.e2ehim_matching"
    weights = _weights(op, weights, E2EHIM_MATCHING_WEIGHTS)
    with torch.no_grad():
        presence, _, trimap, gts, trimaps = _inputs(op, outputs, gt_alphas, gt_trimaps)
        costs = []
        for b in range(presence.shape[0]):
            costs.append(_cost(presence[b], trimap[b], trimaps[b], weights))
    return costs


def e2ehim_matching(outputs, gt_alphas, gt_trimaps=None, weights=None):
    """Hungarian matching of E2E-HIM's queries to the ground-truth instances of each image.

    outputs: E2E-HIM's dict: "presence" [B, N, 2] logits (class 1 = present), "alpha" [B, N, H, W]
    (0..1), "trimap" [B, N, 3, H, W] logits (0 background, 1 unknown, 2 foreground).
    gt_alphas: a list of B float tensors [M_i, H, W] in 0..1, 0 <= M_i <= N. gt_trimaps: None (the
    default, e2ehim_trimap of each) or a list of B int tensors [M_i, H, W] of classes 0, 1, 2.
    weights: {class, focal, dice: weight} over E2EHIM_MATCHING_WEIGHTS; unknown names are refused.
    Returns a list over the images of (query_idx, gt_idx): int64 tensors of length M_i on the
    outputs' device, sorted by query index, minimising the summed cost of the pairs.
    """
    costs = e2ehim_matching_costs(outputs, gt_alphas, gt_trimaps, weights)
    return [_assign(cost) for cost in costs]


def e2ehim_loss(outputs, gt_alphas, gt_trimaps=None, weights=None, no_object_weight=E2EHIM_NO_OBJECT_WEIGHT,
                matching_weights=None, matches=None):
    """E2E-HIM's training loss and its parts (the module docstring has the formulas and sources).

    outputs, gt_alphas, gt_trimaps: as e2ehim_matching. weights: {part: weight} over
    E2EHIM_LOSS_WEIGHTS (class, mask_focal, mask_dice, trimap, alpha); unknown names are refused.
    no_object_weight: the weight of class 0 in the classification loss. matching_weights: as
    e2ehim_matching's weights. matches: None (match here, as e2ehim_matching) or e2ehim_matching's
    result, to reuse one. Computes in float32 (float64 for float64 inputs); an image without
    instances adds only its queries' no-object class terms.
    Returns (total, parts): 0-d tensors.
    """
    op = "losses.e2ehim_loss"
    weights = _weights(op, weights, E2EHIM_LOSS_WEIGHTS)
    if not isinstance(no_object_weight, (int, float)) or isinstance(no_object_weight, bool) \
            or not no_object_weight >= 0:
        fail(op, f"no_object_weight must be a number >= 0, got {no_object_weight!r}")
    presence, alpha, trimap, gts, trimaps = _inputs(op, outputs, gt_alphas, gt_trimaps)
    matching_weights = _weights(op, matching_weights, E2EHIM_MATCHING_WEIGHTS)
    B, N = presence.shape[:2]
    if matches is None:
        with torch.no_grad():
            matches = [_assign(_cost(presence[b], trimap[b], trimaps[b], matching_weights)) for b in range(B)]
    else:
        matches = _check_matches(op, matches, N, gts)
    labels = torch.zeros(B, N, dtype=torch.int64, device=presence.device)
    for b, (queries, _) in enumerate(matches):
        labels[b, queries] = 1
    class_weights = presence.new_tensor([no_object_weight, 1.0])[labels.reshape(-1)]
    ce = F.cross_entropy(presence.reshape(B * N, 2), labels.reshape(-1), reduction="none")
    # F.cross_entropy's weighted mean, 0 (not NaN) when every weight is 0
    parts = {"class": (class_weights * ce).sum() / class_weights.sum().clamp_min(torch.finfo(ce.dtype).tiny)}
    count = max(1, sum(len(q) for q, _ in matches))
    sums = {name: presence.new_zeros(()) for name in ("mask_focal", "mask_dice", "trimap", "alpha")}
    for b, (queries, targets) in enumerate(matches):
        if len(queries) == 0:
            continue
        logits = trimap[b, queries]                       # [K, 3, H, W]
        classes = trimaps[b][targets]                      # [K, H, W]
        mask = (classes != BACKGROUND).to(logits.dtype)
        log_m, log_not_m = _mask_logs(logits)
        sums["mask_focal"] = sums["mask_focal"] + _focal(log_m, log_not_m, mask).sum()
        sums["mask_dice"] = sums["mask_dice"] + _dice(log_m.exp(), mask).sum()
        ce = F.cross_entropy(logits, classes, reduction="none")
        sums["trimap"] = sums["trimap"] + ce.flatten(1).mean(1).sum()
        unknown = classes == UNKNOWN
        difference = (alpha[b, queries] - gts[b][targets]).abs()
        sums["alpha"] = sums["alpha"] + sum(weighted_mean(difference[k], unknown[k])
                                            for k in range(len(queries)))
    parts |= {name: value / count for name, value in sums.items()}
    total = sum(weights[name] * parts[name] for name in E2EHIM_LOSS_WEIGHTS)
    return total, parts


def _check_matches(op, matches, N, gts):
    if not isinstance(matches, (list, tuple)) or len(matches) != len(gts):
        fail(op, f"matches must be e2ehim_matching's list of {len(gts)} (query_idx, gt_idx) pairs")
    checked = []
    for b, pair in enumerate(matches):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            fail(op, f"matches[{b}] must be a (query_idx, gt_idx) pair of int64 tensors")
        queries, targets = (torch.as_tensor(t, dtype=torch.int64, device=gts[b].device) for t in pair)
        M = gts[b].shape[0]
        if (queries.dim() != 1 or queries.shape != targets.shape or len(queries.unique()) != len(queries)
                or len(targets.unique()) != len(targets) or (len(queries) and (
                    queries.min() < 0 or queries.max() >= N or targets.min() < 0 or targets.max() >= M))):
            fail(op, f"matches[{b}] must pair distinct queries in [0, {N}) with distinct instances "
                     f"in [0, {M})")
        checked.append((queries, targets))
    return checked


def _mask_logs(logits):
    """log m and log(1 - m) for m = 1 - softmax(logits, 1)[:, 0], from [K, 3, ...] logits."""
    normalizer = torch.logsumexp(logits, 1)
    return torch.logsumexp(logits[:, 1:], 1) - normalizer, logits[:, 0] - normalizer


def _focal(log_m, log_not_m, target):
    """MaskFormer's focal loss per mask (mean over pixels), [K, H, W] -> [K]."""
    m = log_m.exp()
    values = (FOCAL_ALPHA * target * (1 - m) ** FOCAL_GAMMA * -log_m
              + (1 - FOCAL_ALPHA) * (1 - target) * m ** FOCAL_GAMMA * -log_not_m)
    return values.flatten(1).mean(1)


def _dice(m, target):
    m, target = m.flatten(1), target.flatten(1)
    return 1 - (2 * (m * target).sum(1) + 1) / (m.sum(1) + target.sum(1) + 1)


def _cost(presence, trimap, classes, weights):
    """[N, M] matching cost of one image: presence [N, 2], trimap [N, 3, H, W], classes [M, H, W]."""
    N = presence.shape[0]
    M = classes.shape[0]
    if M == 0:
        return presence.new_zeros(N, 0)
    log_m, log_not_m = _mask_logs(trimap)
    m = log_m.exp().flatten(1)                                 # [N, P]
    target = (classes != BACKGROUND).to(m.dtype).flatten(1)    # [M, P]
    positive = FOCAL_ALPHA * (1 - m) ** FOCAL_GAMMA * -log_m.flatten(1)
    negative = (1 - FOCAL_ALPHA) * m ** FOCAL_GAMMA * -log_not_m.flatten(1)
    focal = (positive @ target.T + negative @ (1 - target).T) / m.shape[1]
    dice = 1 - (2 * m @ target.T + 1) / (m.sum(1)[:, None] + target.sum(1)[None, :] + 1)
    present = torch.softmax(presence, -1)[:, 1:2]
    return weights["class"] * -present + weights["focal"] * focal + weights["dice"] * dice


def _assign(cost):
    device = cost.device
    if cost.shape[1] == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty.clone()
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    order = np.argsort(rows)
    return (torch.as_tensor(rows[order], dtype=torch.int64, device=device),
            torch.as_tensor(cols[order], dtype=torch.int64, device=device))


def _weights(op, weights, defaults):
    if weights is not None and not isinstance(weights, dict):
        raise TypeError(f"fastmatte.{op}: weights must be a dict over {list(defaults)}, "
                        f"got {type(weights).__name__}")
    unknown = set(weights or {}) - defaults.keys()
    if unknown:
        fail(op, f"weights has unknown parts {sorted(unknown)}; the parts are {list(defaults)}")
    return defaults | (weights or {})


def _inputs(op, outputs, gt_alphas, gt_trimaps):
    """(presence, alpha, trimap, [gt alpha], [gt trimap classes]) in the working precision."""
    keys = ("presence", "alpha", "trimap")
    if not isinstance(outputs, dict) or not set(keys) <= outputs.keys():
        got = f"keys {sorted(outputs)}" if isinstance(outputs, dict) else type(outputs).__name__
        raise TypeError(f"fastmatte.{op}: outputs must be E2E-HIM's dict with presence, alpha and trimap, "
                        f"got {got}")
    check_tensor(op, "outputs['alpha']", outputs["alpha"], rank=4, layout="[B, N, H, W]", floating=True)
    B, N, H, W = outputs["alpha"].shape
    if not isinstance(gt_alphas, (list, tuple)) or len(gt_alphas) != B:
        fail(op, f"gt_alphas must be a list of B = {B} tensors [M_i, H, W], got "
                 f"{len(gt_alphas) if isinstance(gt_alphas, (list, tuple)) else type(gt_alphas).__name__}")
    named = {"outputs['presence']": (outputs["presence"], (B, N, 2)),
             "outputs['alpha']": (outputs["alpha"], (B, N, H, W)),
             "outputs['trimap']": (outputs["trimap"], (B, N, 3, H, W))}
    for b, gt in enumerate(gt_alphas):
        check_tensor(op, f"gt_alphas[{b}]", gt, rank=3, layout="[M, H, W]", floating=True)
        if gt.shape[0] > N:
            fail(op, f"gt_alphas[{b}] has {gt.shape[0]} instances, more than the N = {N} queries")
        named[f"gt_alphas[{b}]"] = (gt, (gt.shape[0], H, W))
    presence, alpha, trimap, *gts = working(op, named)
    if gt_trimaps is None:
        trimaps = [e2ehim_trimap(gt) for gt in gts]
    else:
        if not isinstance(gt_trimaps, (list, tuple)) or len(gt_trimaps) != B:
            fail(op, f"gt_trimaps must be None or a list of B = {B} int tensors [M_i, H, W]")
        trimaps = []
        for b, (classes, gt) in enumerate(zip(gt_trimaps, gts)):
            check_tensor(op, f"gt_trimaps[{b}]", classes, rank=3, layout="[M, H, W]", device=gt.device)
            if classes.is_floating_point() or classes.dtype == torch.bool or classes.shape != gt.shape:
                fail(op, f"gt_trimaps[{b}] must be an int tensor of classes 0, 1, 2 shaped like "
                         f"gt_alphas[{b}] {list(gt.shape)}, got {classes.dtype} {list(classes.shape)}")
            if classes.numel() and (classes.min() < 0 or classes.max() > 2):
                fail(op, f"gt_trimaps[{b}] must hold classes 0 (background), 1 (unknown), 2 (foreground)")
            trimaps.append(classes.long())
    return presence, alpha, trimap, gts, trimaps
