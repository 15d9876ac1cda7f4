"""Reference of fastmatte.ops.guided_upsample: the full-resolution end of a deep guided filter
(RVM's refiner), eager."""
import torch
import torch.nn.functional as F


def guided_upsample(image: torch.Tensor, coef_a: torch.Tensor, coef_b: torch.Tensor):
    """image [B, 3, H, W]; coef_a, coef_b [B, 4, h, w] (the guided filter's linear coefficients
    at low resolution) -> (foreground [B, 3, H, W], alpha [B, 1, H, W]), both in [0, 1]:
      A, b = coef_a, coef_b upsampled to H x W (bilinear, align_corners=False);
      out = A * [image, mean over the 3 channels of image] + b;
      foreground = clamp(out[:, :3] + image, 0, 1) (the low-resolution target was a residual),
      alpha = clamp(out[:, 3:], 0, 1).
    Half types compute in float32; the outputs are in image's dtype."""
    compute = torch.promote_types(image.dtype, torch.float32)
    size = image.shape[-2:]
    a = F.interpolate(coef_a.to(compute), size=size, mode="bilinear", align_corners=False)
    b = F.interpolate(coef_b.to(compute), size=size, mode="bilinear", align_corners=False)
    x = image.to(compute)
    out = a * torch.cat([x, x.mean(1, keepdim=True)], dim=1) + b
    foreground = (out[:, :3] + x).clamp(0, 1)
    alpha = out[:, 3:].clamp(0, 1)
    return foreground.to(image.dtype), alpha.to(image.dtype)
