"""PP-Matting's high-resolution detail branch (HRDB): three ResNet-vd BasicBlocks at full
resolution on the backbone's 1/2 and 1/4 maps, each followed by a 1x1 conv halving the width and a
gated convolution guided by an SCB output (0, 2, 4), then a 1x1 conv to the detail logit.

Module names are PaddleSeg's (res_list.K.conv0 / conv1 / short, convs.K, gf_list.K, gates.K,
detail_conv): a checkpoint's hrdb.* keys load as they are."""
import torch.nn.functional as F
from torch import nn

from fastmatte.models.paddleseg_layers import ConvBN
from fastmatte.nn import GatedConv2d

CHANNELS = (64, 32, 16, 8)
GUIDES = (0, 2, 4)  # the SCB outputs that guide the three gates


class BasicBlock(nn.Module):
    """ResNet-vd BasicBlock, stride 1: 3x3 ConvBNReLU -> 3x3 ConvBN, + shortcut, ReLU (bias-free
    convs, padding 1). The shortcut is the input, or `short` (1x1 ConvBN) when the width changes.
    forward(x [B, cin, H, W], folded=False) -> [B, cout, H, W]."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv0 = ConvBN(cin, cout, 3, relu=True)
        self.conv1 = ConvBN(cout, cout, 3)
        self.short = ConvBN(cin, cout, 1) if cin != cout else None

    def forward(self, x, folded=False):
        y = self.conv1(self.conv0(x, folded), folded)
        skip = x if self.short is None else self.short(x, folded)
        return y.add_(skip).relu_() if folded else F.relu(skip + y)


class HRDB(nn.Module):
    """forward(x [B, in_channels, H, W], scb_outputs, fused=False, backend=None) -> the detail
    logit [B, 1, H, W] (pre-sigmoid).

    For i in 0, 1, 2: x = convs[i](res_list[i](x)) (1x1 with bias: 64 -> 32 -> 16 -> 8);
    guide = gf_list[i](scb_outputs[GUIDES[i]]) (1x1 to one channel, with bias), resized to H x W;
    x = gates[i](x, guide). Then detail_conv, a 1x1 conv 8 -> 1 without bias (official).

    The gates are fastmatte.nn.GatedConv2d, which resize the guide themselves (the official code
    resizes it first; the same values). fused (inference; fastmatte's path): BatchNorms folded,
    the convolutions channels-last, each gate one fastmatte.ops.gated_conv (on the CPU it reads
    and writes channels-last as it is; elsewhere it makes x contiguous); the eager twin runs
    every gate layer by layer (GatedConv2d's backend "torch")."""

    def __init__(self, in_channels, scb_channels):
        super().__init__()
        self.gf_list = nn.ModuleList(nn.Conv2d(scb_channels[i], 1, 1) for i in GUIDES)
        self.res_list = nn.ModuleList(BasicBlock(cin, cout) for cin, cout in
                                      ((in_channels, CHANNELS[0]), (CHANNELS[1],) * 2, (CHANNELS[2],) * 2))
        self.convs = nn.ModuleList(nn.Conv2d(CHANNELS[i], CHANNELS[i + 1], 1) for i in range(3))
        self.gates = nn.ModuleList(GatedConv2d(c) for c in CHANNELS[1:])
        self.detail_conv = nn.Conv2d(CHANNELS[-1], 1, 1, bias=False)

    def forward(self, x, scb_outputs, fused=False, backend=None):
        for i, source in enumerate(GUIDES):
            x = self.convs[i](self.res_list[i](x, fused))
            guide = self.gf_list[i](scb_outputs[source])
            x = self.gates[i](x, guide, backend=backend if fused else "torch")
        return self.detail_conv(x)
