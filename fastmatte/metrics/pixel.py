"""SAD, MSE, MAD and SAD-T: per-pixel errors summed or averaged over the counted pixels."""
import torch
import torch.nn.functional as F

from fastmatte.metrics._inputs import counts, masked_sum, metric_inputs, warn_if_empty
from fastmatte.ops._checks import check_int, fail


def sad(pred, gt, trimap=None, *, force_known=False, snap_trimap=False, check=None):
    """Sum of absolute differences, DIM convention: sum |pred - gt| (0..1 scale) over the
    pixels where trimap == 128 (every pixel without a trimap), divided by 1000. A trimap
    without a 128 pixel gives 0 (an empty sum, as DIM's code gives).

    Args:
        pred, gt: NumPy arrays or torch tensors, [H, W], [B, H, W] or [B, 1, H, W] (a 3-D
            array whose last dimension is 1, 3 or 4 is refused as a channels-last image);
            uint8 (0..255) or float (0..1). See ``fastmatte.metrics``.
        trimap: same layout: uint8 0 / 128 / 255 (the 128 pixels are counted), float 0..1
            (read as round(255 * t)) or bool (True: counted); None: every pixel counts.
        force_known: set pred to 0 where trimap == 0 and to 1 where trimap == 255 first (the
            PaddleSeg / mmediting convention); no effect on SAD, whose sum covers only
            unknown pixels.
        snap_trimap: snap every trimap value to the nearest of 0, 128, 255 first (0..63 -> 0,
            64..191 -> 128, 192..255 -> 255), for JPEG trimaps or an unknown region saved as
            127; a RuntimeWarning says how many pixels changed (where values are checked).
            Without it a trimap holding any other value is an error.
        check: check the values (float mattes within [0, 1], NaN allowed; trimap values 0,
            128, 255). None (default): for NumPy arrays and CPU tensors, where it costs no
            host synchronization, not for CUDA tensors nor under torch.compile; True: also
            for CUDA tensors (one host synchronization per call); False: never.

    Returns:
        A float (NumPy in) or 0-d float64 tensor (on the inputs' device) for [H, W] input,
        else one value per image ([B] NumPy array or float64 tensor).

    Raises:
        ValueError naming the argument: a layout, size or dtype not accepted, or no pixel
        (H or W is 0); MetricInputError (a ValueError) for values the check refuses: a trimap
        value other than 0, 128, 255 (listing the values found and their pixel counts), float
        values outside 0..1 (saying when they look like 0..255 data).
    """
    inputs = metric_inputs("metrics.sad", pred, gt, trimap, force_known, snap_trimap, check)
    p, g = inputs.mattes()
    return inputs.finish(masked_sum((p - g).abs(), inputs.region()) / 1000)


def mse(pred, gt, trimap=None, *, force_known=False, snap_trimap=False, check=None):
    """Mean squared error, DIM convention: the plain mean of (pred - gt)^2 (0..1 scale) over
    the pixels where trimap == 128 (every pixel without a trimap); not scaled.

    A trimap without a 128 pixel gives NaN (0 / 0, as DIM's code gives), with a
    RuntimeWarning for CPU / NumPy data (on a GPU the check would cost a host sync).
    Arguments and return value as for ``sad``; force_known has no effect.
    """
    inputs = metric_inputs("metrics.mse", pred, gt, trimap, force_known, snap_trimap, check)
    return inputs.finish(_mean("metrics.mse", inputs, lambda d: d ** 2))


def mad(pred, gt, trimap=None, *, force_known=False, snap_trimap=False, check=None):
    """Mean absolute difference: the mean of |pred - gt| (0..1 scale) over the pixels where
    trimap == 128 (every pixel without a trimap); not scaled. NaN, with a warning, where there
    is nothing to count, as for ``mse``. Arguments and return value as for ``sad``.
    """
    inputs = metric_inputs("metrics.mad", pred, gt, trimap, force_known, snap_trimap, check)
    return inputs.finish(_mean("metrics.mad", inputs, torch.abs))


def _mean(op, inputs, error_of_difference):
    """[B] float64 mean over the counted pixels of error_of_difference(pred - gt)."""
    p, g = inputs.mattes()
    region = inputs.region()
    n = counts(p, region)
    warn_if_empty(op, inputs.batched, n)
    return masked_sum(error_of_difference(p - g), region) / n


def sad_t(pred, gt, trimap=None, *, band_size=15, force_known=False, snap_trimap=False, check=None):
    """SAD over the transition band (SAD-T, as the CRA and P3M evaluations report it): sum
    |pred - gt| over the band, / 1000.

    With a trimap, the band is its unknown region (trimap == 128), so ``sad_t`` equals ``sad``.
    Without one, fastmatte builds the band from gt: the pixels within a band_size x band_size
    square (centered; band_size odd) of both a pixel with gt > 0 and a pixel with gt < 1, i.e.
    dilate(gt > 0) & dilate(gt < 1). That is every soft pixel and every hard 0/1 edge, widened
    by band_size // 2 pixels on each side; an all-0 or all-1 gt has an empty band (SAD-T 0).
    Other arguments and the return value as for ``sad``.
    """
    op = "metrics.sad_t"
    check_int(op, "band_size", band_size, 1)
    if band_size % 2 == 0:
        fail(op, f"band_size must be odd (a centered square), got {band_size}")
    inputs = metric_inputs(op, pred, gt, trimap, force_known, snap_trimap, check)
    p, g = inputs.mattes()
    region = transition_band(g, band_size) if trimap is None else inputs.region()
    return inputs.finish(masked_sum((p - g).abs(), region) / 1000)


def transition_band(gt: torch.Tensor, band_size: int) -> torch.Tensor:
    """[B, H, W] bool: dilate(gt > 0) & dilate(gt < 1) with a band_size square (odd)."""
    def dilate(mask):
        grown = F.max_pool2d(mask[:, None].float(), band_size, stride=1, padding=band_size // 2)
        return grown[:, 0] > 0

    if gt.numel() == 0:
        return torch.zeros_like(gt, dtype=torch.bool)
    return dilate(gt > 0) & dilate(gt < 1)
