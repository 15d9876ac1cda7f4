"""CRA's low-resolution decoder: the encoder's pyramid (strides 16..128) back up to 1/16."""
import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.1  # the authors' leaky ReLU everywhere


class CRADecoder(nn.Module):
    """From the coarsest feature up: bilinear x2 (align_corners=False), cat(upsampled, skip), one
    3x3 conv (bias, no norm) + leaky_relu(0.1), per finer stage.

    forward(features: [f_16, f_32, f_64, f_128] maps, finest first) -> the last three outputs,
    coarsest first: [B, widths[0], H/64, W/64], [B, widths[1], H/32, W/32], [B, widths[2], H/16, W/16].
    """

    def __init__(self, in_channels=(96, 192, 384, 768), widths=(256, 128, 64)):
        super().__init__()
        previous = [in_channels[-1], *widths[:-1]]
        skips = in_channels[-2::-1]
        self.convs = nn.ModuleList(nn.Conv2d(p + s, w, 3, padding=1)
                                   for p, s, w in zip(previous, skips, widths))

    def forward(self, features):
        x, outputs = features[-1], []
        for conv, skip in zip(self.convs, features[-2::-1]):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = F.leaky_relu(conv(torch.cat([x, skip], 1)), SLOPE)
            outputs.append(x)
        return outputs

