"""fastmatte.ops.guided_upsample: the full-resolution end of a deep guided filter in one pass.

Today only its eager reference runs (backend None or "torch"); the fused kernels come next."""
from fastmatte import reference


def guided_upsample(image, coef_a, coef_b, backend=None):
    """image [B, 3, H, W] float; coef_a, coef_b [B, 4, h, w] of image's dtype and device ->
    (foreground [B, 3, H, W], alpha [B, 1, H, W]) in [0, 1]: see
    fastmatte.reference.guided_upsample for the exact math."""
    if backend not in (None, "torch"):
        raise ValueError(f"fastmatte.guided_upsample: backend {backend!r} cannot run yet: only its eager "
                         "reference exists (backend=None or 'torch')")
    return reference.guided_upsample(image, coef_a, coef_b)
