"""SAD, MSE, MAD and SAD-T: per-pixel errors summed or averaged over the counted pixels."""
import torch
import torch.nn.functional as F

from fastmatte.metrics._inputs import metric_inputs, warn_if_empty
from fastmatte.ops._checks import check_int, fail


def sad(pred, gt, trimap=None, *, force_known=False):
    """Sum of absolute differences, DIM convention: sum |pred - gt| (0..1 scale) over the
    pixels where trimap == 128 (every pixel without a trimap), divided by 1000.

    pred, gt, trimap: see ``fastmatte.metrics`` for the accepted arrays, dtypes and layouts.
    force_known: set pred to 0 where trimap == 0 and to 1 where trimap == 255 first (the
    PaddleSeg / mmediting convention); no effect on SAD, whose sum covers only unknown pixels.
    Returns a float (NumPy) or 0-d float64 tensor for [H, W] input, else one value per image.
    """
    inputs = metric_inputs("metrics.sad", pred, gt, trimap, force_known)
    return inputs.finish(inputs.masked_sum((inputs.pred - inputs.gt).abs()) / 1000)


def mse(pred, gt, trimap=None, *, force_known=False):
    """Mean squared error, DIM convention: the plain mean of (pred - gt)^2 (0..1 scale) over
    the pixels where trimap == 128 (every pixel without a trimap); not scaled.

    An image with no pixel to count (an empty unknown region) gives NaN, with a
    RuntimeWarning for CPU / NumPy data (on a GPU the check would cost a host sync).
    Arguments and return value as for ``sad``; force_known has no effect.
    """
    inputs = metric_inputs("metrics.mse", pred, gt, trimap, force_known)
    counts = inputs.counts()
    warn_if_empty("metrics.mse", inputs, counts)
    return inputs.finish(inputs.masked_sum((inputs.pred - inputs.gt) ** 2) / counts)


def mad(pred, gt, trimap=None, *, force_known=False):
    """Mean absolute difference: the mean of |pred - gt| (0..1 scale) over the pixels where
    trimap == 128 (every pixel without a trimap); not scaled. NaN, with a warning, where there
    is nothing to count, as for ``mse``. Arguments and return value as for ``sad``.
    """
    inputs = metric_inputs("metrics.mad", pred, gt, trimap, force_known)
    counts = inputs.counts()
    warn_if_empty("metrics.mad", inputs, counts)
    return inputs.finish(inputs.masked_sum((inputs.pred - inputs.gt).abs()) / counts)


def sad_t(pred, gt, trimap=None, *, band_size=15, force_known=False):
    """SAD over the transition band (SAD-T, as the CRA and P3M evaluations report it): sum
    |pred - gt| over the band, / 1000.

    With a trimap, the band is its unknown region (trimap == 128), so ``sad_t`` equals ``sad``.
    Without one, fastmatte builds the band from gt: the pixels within a band_size x band_size
    square (centered; band_size odd) of both a pixel with gt > 0 and a pixel with gt < 1, i.e.
    dilate(gt > 0) & dilate(gt < 1). That is every soft pixel and every hard 0/1 edge, widened
    by band_size // 2 pixels on each side; an all-0 or all-1 gt has an empty band (SAD-T 0).
    """
    op = "metrics.sad_t"
    check_int(op, "band_size", band_size, 1)
    if band_size % 2 == 0:
        fail(op, f"band_size must be odd (a centered square), got {band_size}")
    inputs = metric_inputs(op, pred, gt, trimap, force_known)
    if trimap is None:
        inputs = inputs._replace(region=transition_band(inputs.gt, band_size))
    return inputs.finish(inputs.masked_sum((inputs.pred - inputs.gt).abs()) / 1000)


def transition_band(gt: torch.Tensor, band_size: int) -> torch.Tensor:
    """[B, H, W] bool: dilate(gt > 0) & dilate(gt < 1) with a band_size square (odd)."""
    def dilate(mask):
        grown = F.max_pool2d(mask[:, None].float(), band_size, stride=1, padding=band_size // 2)
        return grown[:, 0] > 0

    if gt.numel() == 0:
        return torch.zeros_like(gt, dtype=torch.bool)
    return dilate(gt > 0) & dilate(gt < 1)
