"""fastmatte.ops.connectivity_error: DIM's Conn metric of each image of a [B, H, W] batch."""
import torch

from fastmatte import reference
from fastmatte.ops._metric_op import MetricOp

_OP = MetricOp("connectivity_error", reference.connectivity_error)


def connectivity_error(pred: torch.Tensor, gt: torch.Tensor, mask=None, *, backend=None) -> torch.Tensor:
    """The Conn error of the DIM evaluation code (step 0.1, theta 0.15), per image. The
    user-facing form is ``fastmatte.metrics.conn_error``.

    Args:
        pred, gt: [B, H, W] mattes of one dtype and device: uint8 (0..255, read as v / 255 in
            float32 inside the kernels: no converted copy), float32 or float64 (0..1).
        mask: [B, H, W] bool (True: summed), a uint8 trimap (its pixels equal to 128 are
            summed, as DIM counts them; read as it is), or None for every pixel.
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        [B] float64. With thresholds t_k = k/10 (k = 0..10) correctly rounded in the working
        dtype (float32 for uint8 mattes, else theirs): Omega_k is the largest 4-connected
        component of (pred >= t_k) & (gt >= t_k) (a value equal to a threshold passes it; on a
        tie between components, the one whose first pixel in column-major order comes first,
        as MATLAB's bwconncomp orders them; empty if no pixel passes); l = t_{j-1} for the
        first k = j with the pixel outside Omega_k, or 1 if there is none; phi = 1 - d *
        (d >= 0.15) with d = alpha - l; and the sum over the counted pixels of
        |phi_pred - phi_gt|, divided by 1000. Per-pixel math in the working dtype, sums in
        float64 (uint8 mattes give what their float32 copies give). A NaN pixel reaches no
        threshold; its own phi is NaN (so the image's value is NaN if it is counted). Not
        differentiable.

    The kernels share the work of the ten thresholds (a union-find that adds pixels from the
    highest level down) instead of labelling ten masks.
    """
    return _OP(pred, gt, mask, backend)
