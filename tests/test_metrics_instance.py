"""fastmatte.metrics.instance_metrics against a brute-force matching written from its docstring."""
import itertools
import math

import numpy as np
import pytest
import torch

from fastmatte.metrics import instance_metrics


def rectangles(count, shape, rng, jitter=None):
    """count soft-edged rectangles as float mattes [count, H, W]; with `jitter` (a previous
    result's boxes), shifted copies of those."""
    H, W = shape
    boxes = jitter if jitter is not None else [
        (rng.integers(0, H - 8), rng.integers(0, W - 8), rng.integers(6, 16), rng.integers(6, 16))
        for _ in range(count)]
    if jitter is not None:
        boxes = [(y + rng.integers(-3, 4), x + rng.integers(-3, 4), h, w) for y, x, h, w in boxes]
    out = np.zeros((len(boxes), H, W))
    for i, (y, x, h, w) in enumerate(boxes):
        out[i, max(y, 0):y + h, max(x, 0):x + w] = 1.0
        out[i, max(y, 0):y + h, max(x, 0)] = 0.6  # a soft column
    return out, boxes


def brute_force(preds, gts, threshold):
    """Every one-to-one assignment; the one with the largest summed IoU over pairs >= threshold."""
    p, g = preds > 0.5, gts > 0.5
    n1, n2 = len(p), len(g)
    iou = np.zeros((n1, n2))
    for i in range(n1):
        for j in range(n2):
            union = (p[i] | g[j]).sum()
            iou[i, j] = (p[i] & g[j]).sum() / union if union else 0.0
    n = max(n1, n2)
    best, best_pairs = -1.0, []
    for perm in itertools.permutations(range(n)):
        pairs = [(i, j) for i, j in enumerate(perm) if i < n1 and j < n2 and iou[i, j] >= threshold]
        total = sum(iou[i, j] for i, j in pairs)
        if total > best + 1e-12:
            best, best_pairs = total, pairs
    return best_pairs


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    gts, boxes = rectangles(int(rng.integers(1, 4)), (48, 64), rng)
    preds, _ = rectangles(0, (48, 64), rng, jitter=boxes)
    extra, _ = rectangles(int(rng.integers(0, 2)), (48, 64), rng)
    preds = np.concatenate([preds[rng.permutation(len(preds))][:len(preds) - seed % 2], extra])
    scores = instance_metrics(preds, gts, (0.5, 0.75))
    for threshold, got in scores.items():
        pairs = brute_force(preds, gts, threshold)
        assert got.matches == len(pairs)
        assert got.rec == pytest.approx(len(pairs) / len(gts))
        if len(preds):
            assert got.acc == pytest.approx(len(pairs) / len(preds))
        else:
            assert math.isnan(got.acc)
        if pairs:
            assert got.emse == pytest.approx(np.mean([((preds[i] - gts[j]) ** 2).mean() for i, j in pairs]))
            assert got.emad == pytest.approx(np.mean([np.abs(preds[i] - gts[j]).mean() for i, j in pairs]))
        else:
            assert math.isnan(got.emse) and math.isnan(got.emad)


def test_perfect_and_permuted():
    rng = np.random.default_rng(0)
    gts, _ = rectangles(3, (40, 40), rng)
    for preds in (gts, gts[::-1].copy(), torch.from_numpy(gts[[2, 0, 1]])):
        s = instance_metrics(preds, gts)[0.5]
        assert (s.matches, s.rec, s.acc, s.emse, s.emad) == (3, 1.0, 1.0, 0.0, 0.0)


def test_one_to_one_and_thresholds():
    gt = np.zeros((1, 10, 10))
    gt[0, :, :6] = 1  # 60 pixels
    pred = np.zeros((2, 10, 10))
    pred[0, :, :4] = 1  # IoU 40/60: matched at 0.5, not at 0.75
    pred[1, :, :5] = 1  # IoU 50/60: the better one, and only one of the two is matched
    scores = instance_metrics(pred, gt)
    assert scores[0.5].matches == 1 and scores[0.5].acc == 0.5 and scores[0.5].rec == 1.0
    assert scores[0.5].emse == pytest.approx(10 / 100)  # pred[1]: 10 pixels off
    assert scores[0.75].matches == 1  # 50/60 = 0.83
    assert instance_metrics(pred[:1], gt)[0.75].matches == 0


def test_binarization_and_uint8():
    gt = np.uint8([[[0, 127, 128, 255]]])
    pred = np.uint8([[[0, 0, 128, 255]]])  # binarized: 128 and above
    assert instance_metrics(pred, gt)[0.75].matches == 1
    assert instance_metrics(pred.astype(np.float32) / 255, gt)[0.75].matches == 1


def test_no_instances():
    gts = np.ones((2, 5, 5))
    none = np.zeros((0, 5, 5))
    s = instance_metrics(none, gts)[0.5]
    assert s.matches == 0 and s.rec == 0.0 and math.isnan(s.acc) and math.isnan(s.emse)
    s = instance_metrics(gts, none)[0.5]
    assert s.matches == 0 and s.acc == 0.0 and math.isnan(s.rec)
    assert instance_metrics(np.zeros((1, 5, 5)), np.zeros((1, 5, 5)))[0.5].matches == 0  # empty never match


def test_bad_inputs():
    with pytest.raises(ValueError, match="iou_thresholds must lie in"):
        instance_metrics(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)), (0.0,))
    with pytest.raises(ValueError, match="must have the same H x W"):
        instance_metrics(np.zeros((1, 3, 3)), np.zeros((1, 3, 4)))
    with pytest.raises(TypeError, match="gt_alphas must be a NumPy array or a torch tensor"):
        instance_metrics(np.zeros((1, 3, 3)), None)
    with pytest.raises(ValueError, match=r"pred_alphas has no pixels \(size \[1, 0, 3\]\)"):
        instance_metrics(np.zeros((1, 0, 3)), np.zeros((1, 0, 3)))
    with pytest.raises(ValueError, match="gt_alphas holds float values from 0 to 255, outside 0..1: it "
                                         "looks like 0..255 data"):
        instance_metrics(np.zeros((1, 3, 3)), np.linspace(0, 255, 9).reshape(1, 3, 3))
