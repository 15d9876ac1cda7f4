"""Instance matting metrics of E2E-HIM: EMSE, EMAD, REC and ACC at IoU thresholds."""
import math
from typing import NamedTuple

import torch

from fastmatte.metrics._inputs import as_bhw, as_matte, as_tensor, check_matte_dtype, check_unit_range
from fastmatte.ops._checks import fail


class InstanceScores(NamedTuple):
    """The scores at one IoU threshold (floats; NaN where undefined, see instance_metrics)."""

    emse: float
    emad: float
    rec: float
    acc: float
    matches: int


def instance_metrics(pred_alphas, gt_alphas, iou_thresholds=(0.5, 0.75)) -> dict:
    """Instance matting scores of one image, as E2E-HIM reports them (EMSE, EMAD, REC, ACC
    at IoU 0.5 and 0.75). The paper publishes no code; fastmatte defines them this way:

    1. Each matte is binarized at alpha > 0.5 (uint8: >= 128), and the IoU of every
       (prediction, ground truth) pair is |P & G| / |P | G| (0 when both are empty, so empty
       mattes never match).
    2. For each threshold, predictions and ground truths are matched one to one, maximizing
       the summed IoU over the pairs whose IoU >= threshold (Hungarian algorithm,
       scipy.optimize.linear_sum_assignment; other pairs weigh 0). Matches are the assigned
       pairs with IoU >= threshold; no instance is matched twice.
    3. EMSE and EMAD: the mean over the matches of each pair's MSE and MAD over the whole
       image (0..1 scale, not scaled); NaN without a match.
       REC = matches / N2 (recall, NaN if N2 = 0); ACC = matches / N1 (precision, NaN if
       N1 = 0).

    Args:
        pred_alphas: [N1, H, W] (or [N1, 1, H, W]) predicted instance mattes; gt_alphas
            [N2, H, W] ground truths. NumPy or torch, uint8 (0..255) or float (0..1), as the
            other metrics (float values outside 0..1 are an error, checked always: this
            function synchronizes with the host anyway); N1 or N2 may be 0, H and W not.
        iou_thresholds: the IoU thresholds, each in (0, 1].

    Returns:
        {threshold: InstanceScores(emse, emad, rec, acc, matches)}.
    """
    from scipy.optimize import linear_sum_assignment

    op = "metrics.instance_metrics"
    for t in iou_thresholds:
        if not 0 < t <= 1:
            fail(op, f"iou_thresholds must lie in (0, 1], got {t}")
    preds = as_tensor(op, "pred_alphas", pred_alphas)
    gts = as_tensor(op, "gt_alphas", gt_alphas)
    device = preds.device if isinstance(pred_alphas, torch.Tensor) else gts.device
    preds, gts = (as_bhw(op, name, t.to(device)) for name, t in (("pred_alphas", preds), ("gt_alphas", gts)))
    if preds.shape[1:] != gts.shape[1:]:
        fail(op, f"pred_alphas and gt_alphas must have the same H x W, got {list(preds.shape)} "
                 f"and {list(gts.shape)}")
    if preds.shape[1] * preds.shape[2] == 0:
        fail(op, f"pred_alphas has no pixels (size {list(preds.shape)}): there is nothing to compare")
    for name, t in (("pred_alphas", preds), ("gt_alphas", gts)):
        check_matte_dtype(op, name, t)
        if t.is_floating_point():
            check_unit_range(op, name, t)
    preds = as_matte(preds, torch.float64).flatten(1)
    gts = as_matte(gts, torch.float64).flatten(1)
    n1, n2 = preds.shape[0], gts.shape[0]

    p_bin, g_bin = (preds > 0.5).double(), (gts > 0.5).double()
    inter = p_bin @ g_bin.T
    union = p_bin.sum(1)[:, None] + g_bin.sum(1)[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), 0.0).cpu()

    scores = {}
    for threshold in iou_thresholds:
        weight = torch.where(iou >= threshold, iou, 0.0).numpy()
        rows, cols = linear_sum_assignment(weight, maximize=True)
        pairs = [(int(i), int(j)) for i, j in zip(rows, cols) if iou[i, j] >= threshold]
        if pairs:
            diffs = torch.stack([preds[i] - gts[j] for i, j in pairs])
            emse, emad = float((diffs ** 2).mean(1).mean()), float(diffs.abs().mean(1).mean())
        else:
            emse = emad = math.nan
        scores[threshold] = InstanceScores(
            emse, emad, len(pairs) / n2 if n2 else math.nan, len(pairs) / n1 if n1 else math.nan, len(pairs))
    return scores
