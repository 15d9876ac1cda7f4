"""fastmatte.ops.gradient_error: DIM's Grad metric of each image of a [B, H, W] batch."""
import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import check_metric_inputs

BACKENDS = OpBackends("gradient_error", triton=True)


def gradient_error(pred: torch.Tensor, gt: torch.Tensor, mask=None, *, backend=None) -> torch.Tensor:
    """The Grad error of the DIM evaluation code, per image. The user-facing form, which takes
    NumPy arrays, uint8, trimaps and the other conventions, is ``fastmatte.metrics.grad_error``.

    Args:
        pred, gt: [B, H, W] float32 or float64 mattes (0..1), one dtype and device.
        mask: [B, H, W] bool, the pixels summed (DIM: trimap == 128), or None for every pixel.
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        [B] float64: for each image, both mattes min-max stretched (mat2gray; a constant image
        is left as is), filtered with gaussgradient's 9x9 Gaussian-derivative kernels (sigma
        1.4, unit L2 norm, replicate border, convolution), and sum over the mask of
        (|grad pred| - |grad gt|)^2, divided by 1000. Filtering runs in the input's precision,
        sums in float64. An image holding a NaN anywhere gives NaN. Not differentiable.
    """
    check_metric_inputs("gradient_error", pred, gt, mask)
    args = (pred.contiguous(), gt.contiguous(), None if mask is None else mask.contiguous())
    choice = BACKENDS.resolve(pred.device, backend)
    if choice == "torch":
        return reference.gradient_error(*args)
    if choice == "triton":
        return torch.ops.fastmatte.gradient_error_triton(*args)
    return torch.ops.fastmatte.gradient_error(*args)


@torch.library.custom_op("fastmatte::gradient_error_triton", mutates_args=())
def _gradient_error_triton(pred: torch.Tensor, gt: torch.Tensor,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """fastmatte::gradient_error with the Triton kernels (same arguments and semantics)."""
    check_metric_inputs("gradient_error", pred, gt, mask)  # called directly too
    from fastmatte.kernels.gradient_error import gradient_error_forward  # after TRITON_INTERPRET

    return gradient_error_forward(pred, gt, mask)


def _per_image_fake(pred, gt, mask=None):
    return pred.new_empty((pred.shape[0],), dtype=torch.float64)


_gradient_error_triton.register_fake(_per_image_fake)
if HAS_C:
    torch.library.register_fake("fastmatte::gradient_error", _per_image_fake)
