"""Reference of fastmatte.ops.area_resize: F.adaptive_avg_pool2d, eager."""
import torch.nn.functional as F


def area_resize(x, size):
    """x [B, C, h, w], size (H, W) -> [B, C, H, W]: F.adaptive_avg_pool2d(x, size), which is
    F.interpolate(x, size, mode="area"): each output pixel the mean of its source window
    [floor(i * h / H), ceil((i + 1) * h / H)) x [floor(j * w / W), ceil((j + 1) * w / W)).
    The output is in x's suggested memory format; half types accumulate in float32."""
    return F.adaptive_avg_pool2d(x, (int(size[0]), int(size[1])))
