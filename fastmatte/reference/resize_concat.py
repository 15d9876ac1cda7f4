"""Reference of fastmatte.ops.resize_concat: torch.cat of bilinearly resized feature maps, eager."""
import torch
import torch.nn.functional as F


def resize_concat(tensors, size):
    """tensors: 1+ [B, C_i, h_i, w_i] of one batch size, dtype and device; size (H, W) ->
    [B, sum C_i, H, W], channels-last: each input resized to H x W by F.interpolate(mode="bilinear",
    align_corners=False) (left as it is when already H x W), concatenated along channels in order.
    Half types resize in their own dtype, as F.interpolate does (it computes in float32)."""
    size = (int(size[0]), int(size[1]))
    resized = [t if tuple(t.shape[-2:]) == size else
               F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in tensors]
    return torch.cat(resized, dim=1).contiguous(memory_format=torch.channels_last)
