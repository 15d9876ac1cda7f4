"""CRAMatting's low-resolution decoder: the backbone's feature pyramid to the 4-channel 1/8 map
(coarse alpha logit + 3 trimap logits)."""
import torch.nn.functional as F
from torch import nn


class CoarseDecoder(nn.Module):
    """Top-down feature pyramid (1x1 laterals, bilinear upsampling, sums) over the backbone's
    stages, then a 3x3 conv + ReLU and a 1x1 conv to `4 * 2 * 2` channels at the finest stage's
    resolution (1/16 of the image), pixel-shuffled x2 to the 4 output channels at 1/8.

    No normalization layers: matting trains and runs at batch 1, where BatchNorm statistics
    are meaningless.

    forward(features: list of [B, C_i, H_i, W_i], finest first) -> [B, 4, 2*H_0, 2*W_0].
    """

    OUT_CHANNELS = 4  # coarse alpha logit, then foreground / unknown / background logits

    def __init__(self, in_channels, width=128):
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.smooth = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Conv2d(width, self.OUT_CHANNELS * 4, 1)

    def forward(self, features):
        x = self.laterals[-1](features[-1])
        for lateral, feature in zip(self.laterals[-2::-1], features[-2::-1]):
            x = lateral(feature) + F.interpolate(x, size=feature.shape[-2:], mode="bilinear",
                                                 align_corners=False)
        return F.pixel_shuffle(self.head(F.relu(self.smooth(x))), 2)
