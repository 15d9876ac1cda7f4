"""fastmatte.ops.gradient_error: DIM's Grad metric of each image of a [B, H, W] batch."""
import torch

from fastmatte import reference
from fastmatte.ops._metric_op import MetricOp

_OP = MetricOp("gradient_error", reference.gradient_error)


def gradient_error(pred: torch.Tensor, gt: torch.Tensor, mask=None, *, backend=None) -> torch.Tensor:
    """The Grad error of the DIM evaluation code, per image. The user-facing form, which takes
    NumPy arrays, uint8, trimaps and the other conventions, is ``fastmatte.metrics.grad_error``.

    Args:
        pred, gt: [B, H, W] mattes of one dtype and device: uint8 (0..255, read as v / 255 in
            float32 inside the kernels: no converted copy), float32 or float64 (0..1).
        mask: [B, H, W] bool (True: summed), a uint8 trimap (its pixels equal to 128 are
            summed, as DIM counts them; read as it is), or None for every pixel.
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        [B] float64: for each image, both mattes min-max stretched (mat2gray; a constant image
        is left as is), filtered with gaussgradient's 9x9 Gaussian-derivative kernels (sigma
        1.4, unit L2 norm, replicate border, convolution), and sum over the counted pixels of
        (|grad pred| - |grad gt|)^2, divided by 1000. Filtering runs in float32 (float64 for
        float64 mattes), sums in float64; uint8 mattes give what their float32 copies v / 255
        give. An image holding a NaN anywhere gives NaN. Not differentiable.
    """
    return _OP(pred, gt, mask, backend)
