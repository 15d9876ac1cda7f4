"""The conv + BatchNorm units PP-MattingV2 is made of, under PaddleSeg's parameter names: its
layers.ConvBN / ConvBNReLU (`conv`, `bn`: the checkpoint's `_conv`, `_batch_norm`, renamed by
convert.py) and the transformer's Conv2DBN (`c`, `bn`, as in the checkpoint). Each runs either as
the official layers (eager) or, in inference, with the BatchNorm folded into the conv
(fastmatte.models.fold; fastmatte's choice)."""
import torch.nn.functional as F
from torch import nn

from fastmatte.models.fold import conv_bn


class ConvBN(nn.Module):
    """PaddleSeg's ConvBN (relu=False) or ConvBNReLU (relu=True): a kernel x kernel stride-1 conv
    ('same' padding, kernel // 2), with a bias only when bias, then BatchNorm (eps 1e-5).
    forward(x[B, in, H, W], folded=False) -> [B, out, H, W]."""

    def __init__(self, in_channels, out_channels, kernel=1, groups=1, bias=False, relu=False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, 1, kernel // 2, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = relu

    def forward(self, x, folded: bool = False):
        x = conv_bn(self.conv, self.bn, x, folded)
        return F.relu(x, inplace=True) if self.relu else x


class Conv2DBN(nn.Module):
    """The DPP transformer's Conv2DBN: a 1x1 conv without bias (`c`), then BatchNorm (`bn`).
    forward(x[B, in, H, W], folded=False) -> [B, out, H, W]."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.c = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x, folded: bool = False):
        return conv_bn(self.c, self.bn, x, folded)
