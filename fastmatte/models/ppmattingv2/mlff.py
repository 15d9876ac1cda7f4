"""One level of PP-MattingV2's decoder: MLFF, multi-level feature fusion (mlff32x ... mlff2x).

Official facts: each input i goes through pwconvs[i] (1x1 conv, no bias, + BN), a bilinear resize
to the level's size (align_corners=False) and dwconvs[i] (depthwise 3x3 conv, no bias, + BN +
ReLU). The channel mean and channel max of every resulting map, in the order [mean0, max0, mean1,
max1, ...], go through conv_atten (3x3 ConvBNReLU 2n -> n, 3x3 ConvBN n -> n) and a sigmoid: map i
is multiplied by attention channel i. The products are concatenated (merge "concat") and conv_out
(3x3 conv, no bias, + BN + ReLU) gives the level's output.
"""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import ops
from fastmatte.models.paddleseg_layers import ConvBN


def resize(x, size, fused, backend=None):
    """x bilinearly resized to size (align_corners=False). The eager twin always calls
    F.interpolate, as the official code does (at x's own size it is the identity); fused
    (fastmatte's choice), a map already of that size is taken as it is and any other is resized
    by fastmatte.ops.resize_concat (channels-last output)."""
    size = tuple(size)
    if not fused:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x if tuple(x.shape[-2:]) == size else ops.resize_concat([x], size, backend=backend)


class MLFF(nn.Module):
    """forward(inputs, size, fused=False, backend=None): inputs a list of maps [B, in_channels[i],
    h_i, w_i] -> [B, out_channels, *size]. fused (inference; fastmatte's choice): channels-last,
    BatchNorms folded, and without gradients the products are written straight into
    the concatenation."""

    def __init__(self, in_channels, mid_channels, out_channels):
        super().__init__()
        self.pwconvs = nn.ModuleList(ConvBN(i, m, 1) for i, m in zip(in_channels, mid_channels))
        self.dwconvs = nn.ModuleList(ConvBN(m, m, 3, groups=m, relu=True) for m in mid_channels)
        count = len(in_channels)
        self.conv_atten = nn.Sequential(ConvBN(2 * count, count, 3, relu=True), ConvBN(count, count, 3))
        self.conv_out = ConvBN(sum(mid_channels), out_channels, 3, relu=True)

    def forward(self, inputs, size, fused: bool = False, backend=None):
        feats = [dw(resize(pw(x, fused), size, fused, backend), fused)
                 for x, pw, dw in zip(inputs, self.pwconvs, self.dwconvs)]
        stats = [s for f in feats for s in (f.mean(1, keepdim=True), f.amax(1, keepdim=True))]
        atten = torch.cat(stats, 1)
        for conv in self.conv_atten:
            atten = conv(atten, fused)
        atten = torch.sigmoid(atten)
        if not (fused and not torch.is_grad_enabled()):  # out= does not record gradients
            merged = torch.cat([f * atten[:, i:i + 1] for i, f in enumerate(feats)], 1)
        else:
            first = feats[0]
            merged = torch.empty((first.shape[0], sum(f.shape[1] for f in feats), *size), dtype=first.dtype,
                                 device=first.device, memory_format=torch.channels_last)
            start = 0
            for i, f in enumerate(feats):
                torch.mul(f, atten[:, i:i + 1], out=merged[:, start:start + f.shape[1]])
                start += f.shape[1]
        return self.conv_out(merged, fused)
