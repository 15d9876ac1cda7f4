"""fastmatte.ops.guided_upsample: the full-resolution end of a deep guided filter in one pass."""
import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import FLOAT_DTYPES, check_tensor, fail

BACKENDS = OpBackends("guided_upsample", triton=True)


def guided_upsample(image: torch.Tensor, coef_a: torch.Tensor, coef_b: torch.Tensor, *,
                    backend=None):
    """Foreground and alpha from a frame and its guided filter's low-resolution coefficients.

    Args:
        image: [B, 3, H, W] frame in [0, 1], float32, float64, float16 or bfloat16, H, W >= 1.
        coef_a, coef_b: [B, 4, h, w] the linear coefficients A and b (channels: the 3 foreground
            residual channels, then alpha), image's dtype and device, h, w >= 1 (any size:
            RVM's are the downsampled frame's).
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        (foreground [B, 3, H, W], alpha [B, 1, H, W]) in image's dtype, contiguous:
        A, b bilinearly upsampled to H x W (F.interpolate, align_corners=False),
        out = A * [image, mean of image's 3 channels] + b,
        foreground = clamp(out[:, :3] + image, 0, 1), alpha = clamp(out[:, 3:], 0, 1)
        (fastmatte.reference.guided_upsample). Half types compute in float32. A NaN passes
        through the clamps, as in torch.clamp.

    The kernels read the frame and the coefficients once and write foreground and alpha once;
    the upsampled coefficients never exist at full resolution. Differentiable in all three
    inputs (the clamps pass the gradient inside [0, 1], bounds included); the backward is one
    op for every backend (ATen arithmetic, which does build the full-resolution maps).
    Non-contiguous inputs are copied.
    """
    _check_inputs(image, coef_a, coef_b)
    choice = BACKENDS.resolve(image.device, backend)
    if choice == "torch":
        return reference.guided_upsample(image, coef_a, coef_b)
    upsample = (torch.ops.fastmatte.guided_upsample_triton if choice == "triton"
                else torch.ops.fastmatte.guided_upsample)
    foreground, alpha = upsample(image.contiguous(), coef_a.contiguous(), coef_b.contiguous())
    return foreground, alpha


def _check_inputs(image, coef_a, coef_b):
    op = "guided_upsample"
    check_tensor(op, "image", image, rank=4, layout="[B, 3, H, W]", floating=True)
    if image.dtype not in FLOAT_DTYPES:
        fail(op, f"image must be float32, float64, float16 or bfloat16, got {image.dtype}")
    if image.shape[1] != 3 or image.shape[2] == 0 or image.shape[3] == 0:
        fail(op, f"image must be [B, 3, H, W] with H, W >= 1, got {list(image.shape)}")
    batch = image.shape[0]
    for name, coef in (("coef_a", coef_a), ("coef_b", coef_b)):
        check_tensor(op, name, coef, rank=4, layout="[B, 4, h, w]", dtype=image.dtype,
                     device=image.device)
        if coef.shape[0] != batch or coef.shape[1] != 4 or coef.shape[2] == 0 or coef.shape[3] == 0:
            fail(op, f"{name} must be [B={batch}, 4, h, w] (image's batch, 4 coefficients) with "
                     f"h, w >= 1, got {list(coef.shape)}")
    if coef_b.shape != coef_a.shape:
        fail(op, f"coef_b must have coef_a's shape {list(coef_a.shape)}, got {list(coef_b.shape)}")


@torch.library.custom_op("fastmatte::guided_upsample_triton", mutates_args=())
def _guided_upsample_triton(image: torch.Tensor, coef_a: torch.Tensor,
                            coef_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fastmatte::guided_upsample with the Triton kernel (same arguments and semantics)."""
    _check_inputs(image, coef_a, coef_b)  # called directly too
    from fastmatte.kernels.guided_upsample import guided_upsample_forward  # after TRITON_INTERPRET

    return guided_upsample_forward(image, coef_a, coef_b)


def _forward_fake(image, coef_a, coef_b):
    batch, _, height, width = image.shape
    return image.new_empty(batch, 3, height, width), image.new_empty(batch, 1, height, width)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_foreground, grad_alpha):
    image, coef_a, coef_b = ctx.saved_tensors
    return torch.ops.fastmatte.guided_upsample_backward(
        grad_foreground.contiguous(), grad_alpha.contiguous(), image, coef_a, coef_b)


_guided_upsample_triton.register_fake(_forward_fake)
if HAS_C:
    torch.library.register_fake("fastmatte::guided_upsample", _forward_fake)
    torch.library.register_fake("fastmatte::guided_upsample_backward",
                                lambda grad_foreground, grad_alpha, image, coef_a, coef_b: (
                                    torch.empty_like(image, memory_format=torch.contiguous_format),
                                    torch.empty_like(coef_a, memory_format=torch.contiguous_format),
                                    torch.empty_like(coef_b, memory_format=torch.contiguous_format)))
    for name in ("fastmatte::guided_upsample", "fastmatte::guided_upsample_triton"):
        torch.library.register_autograd(name, _backward, setup_context=_setup_context)
