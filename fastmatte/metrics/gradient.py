"""Grad: the gradient error of the DIM evaluation code."""
from fastmatte.metrics._inputs import metric_inputs
from fastmatte.ops.gradient_error import gradient_error


def grad_error(pred, gt, trimap=None, *, force_known=False, snap_trimap=False, check=None, backend=None):
    """Gradient error, DIM convention: both mattes min-max stretched to [0, 1] (MATLAB's
    mat2gray: a prediction that never reaches 1 is stretched; a constant matte stays as is and
    has zero gradient), filtered with the 9x9 first-order Gaussian-derivative kernels of
    gaussgradient(IM, 1.4) (unit L2 norm, replicate border), then the sum over the pixels where
    trimap == 128 (every pixel without a trimap) of (|grad pred| - |grad gt|)^2, / 1000.
    A trimap without a 128 pixel gives 0.

    force_known: set pred to 0 / 1 where the trimap says background / foreground before
    stretching and filtering. This changes Grad near the unknown region's border (the 9x9
    filter reads known pixels) and can change the stretch.
    backend: None (fastest here), "cpu", "triton" or "torch" (the eager reference).
    uint8 pred and gt (and a uint8 trimap) reach the kernels as they are, without a float copy.
    Filtering runs in float32 (float64 if pred or gt is float64), sums in float64; an image
    holding a NaN anywhere gives NaN. Other arguments and the return value as for ``sad``.
    """
    inputs = metric_inputs("metrics.grad_error", pred, gt, trimap, force_known, snap_trimap, check)
    return inputs.finish(gradient_error(inputs.pred, inputs.gt, inputs.trimap, backend=backend))
