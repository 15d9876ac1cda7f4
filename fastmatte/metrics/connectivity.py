"""Conn: the connectivity error of the DIM evaluation code."""
from fastmatte.metrics._inputs import metric_inputs
from fastmatte.ops.connectivity_error import connectivity_error


def conn_error(pred, gt, trimap=None, *, force_known=False, snap_trimap=False, check=None, backend=None):
    """Connectivity error, DIM convention (step 0.1, theta 0.15), summed over the pixels where
    trimap == 128 (every pixel without a trimap), / 1000; a trimap without a 128 pixel gives 0.

    For t_k = k/10 (k = 1..10, correctly rounded in the working precision, so that uint8 51 =
    0.2 passes 0.2), Omega_k is the largest 4-connected component of (pred >= t_k) &
    (gt >= t_k); when two are equally large, the one whose first pixel in column-major order
    comes first (MATLAB's bwconncomp order); empty if no pixel passes. Each pixel's l is
    t_{j-1} for the first j at which it is outside Omega_j (t_0 = 0), or 1 if it is in all ten.
    With d = alpha - l, phi = 1 - d * (d >= 0.15), and the error is sum |phi_pred - phi_gt|.

    The components are found on the whole image, so force_known (pred set to 0 / 1 where the
    trimap says background / foreground) changes Conn even though only unknown pixels count.
    backend: None (fastest here), "cpu", "triton" or "torch" (the eager reference).
    uint8 pred and gt (and a uint8 trimap) reach the kernels as they are, without a float copy.
    Other arguments and the return value as for ``sad``.
    """
    inputs = metric_inputs("metrics.conn_error", pred, gt, trimap, force_known, snap_trimap, check)
    return inputs.finish(connectivity_error(inputs.pred, inputs.gt, inputs.trimap, backend=backend))
