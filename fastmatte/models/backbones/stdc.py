"""STDC1 (Fan et al., "Rethinking BiSeNet For Real-time Semantic Segmentation", CVPR 2021) as
PaddleSeg's Matting code builds it for PP-MattingV2: a stem of two 3x3 stride-2 conv-BN-ReLU layers
and three stages of two concatenating bottlenecks each, returning five feature maps.

Module names follow PaddleSeg's 1:1 (features.N.conv / .bn, features.N.conv_list.K.conv / .bn,
features.N.avd_layer.0 / .1), so a PP-MattingV2 .pdparams read by fastmatte.models.read_state_dict
loads strictly once its "backbone." prefix is removed; no key mapping is needed.
"""
import torch
from torch import nn

from fastmatte.models.fold import conv_bn

CHANNELS = (32, 64, 256, 512, 1024)  # width of the 1/2, 1/4, 1/8, 1/16 and 1/32 features


class ConvBNRelu(nn.Module):
    """kernel x kernel conv (no bias, padding kernel // 2) -> BatchNorm (eps 1e-5) -> ReLU.
    forward(x[B, in, H, W]) -> [B, out, ceil(H / stride), ceil(W / stride)]."""

    def __init__(self, in_channels, out_channels, kernel=3, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, folded: bool = False):
        """folded (inference only): the BatchNorm folded into the conv (fastmatte.models.fold)."""
        return self.relu(conv_bn(self.conv, self.bn, x, folded))


class CatBottleneck(nn.Module):
    """STDC's concatenating block (block_num 4): out1 = 1x1 ConvBNRelu to out/2, then three 3x3
    ConvBNRelu to out/4, out/8 and out/8, each fed the previous one's output; the result is
    concat[out1, o2, o3, o4] (out channels). With stride 2, o2's input is avd_layer(out1)
    (depthwise 3x3 stride-2 conv + BN, no ReLU) and out1 enters the concat through a 3x3 stride-2
    average pool that excludes the padding (Paddle's exclusive=True).
    forward(x[B, in, H, W]) -> [B, out, ceil(H / stride), ceil(W / stride)]."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        half = out_channels // 2
        self.stride = stride
        if stride == 2:
            self.avd_layer = nn.Sequential(
                nn.Conv2d(half, half, 3, 2, 1, groups=half, bias=False), nn.BatchNorm2d(half))
            self.skip = nn.AvgPool2d(3, 2, 1, count_include_pad=False)
        widths = (half, out_channels // 4, out_channels // 8, out_channels // 8)
        self.conv_list = nn.ModuleList(
            [ConvBNRelu(in_channels, half, kernel=1)]
            + [ConvBNRelu(widths[i - 1], widths[i]) for i in range(1, 4)])

    def forward(self, x, folded: bool = False):
        out1 = self.conv_list[0](x, folded)
        out = conv_bn(self.avd_layer[0], self.avd_layer[1], out1, folded) if self.stride == 2 else out1
        outs = [self.skip(out1) if self.stride == 2 else out1]
        for conv in self.conv_list[1:]:
            out = conv(out, folded)
            outs.append(out)
        return torch.cat(outs, 1)


class STDC1(nn.Module):
    """STDC1: features.0-1 the stem (3 -> 32 -> 64, both stride 2), features.2-7 the bottlenecks
    (64 -> 256 s2, 256 -> 256; 256 -> 512 s2, 512 -> 512; 512 -> 1024 s2, 1024 -> 1024).

    forward(x[B, 3, H, W], normalised as (image - 0.5) / 0.5) -> five maps
    [B, 32, H/2, W/2], [B, 64, H/4, W/4], [B, 256, H/8, W/8], [B, 512, H/16, W/16],
    [B, 1024, H/32, W/32] (sizes rounded up); `feat_channels` lists their widths.
    fold_batchnorm=True (inference only, eval mode; fastmatte's choice) runs every conv with its
    BatchNorm folded into its weight and bias: the same function with fewer passes over memory.
    """

    feat_channels = CHANNELS

    def __init__(self, in_channels=3, layers=(2, 2, 2)):
        super().__init__()
        c = CHANNELS
        blocks = [ConvBNRelu(in_channels, c[0], 3, 2), ConvBNRelu(c[0], c[1], 3, 2)]
        self.ends = []  # index after the last block of each stage
        for stage, n in enumerate(layers):
            cin, cout = c[stage + 1], c[stage + 2]
            blocks += [CatBottleneck(cin if j == 0 else cout, cout, 2 if j == 0 else 1) for j in range(n)]
            self.ends.append(len(blocks))
        self.features = nn.Sequential(*blocks)

    def forward(self, x, fold_batchnorm: bool = False) -> list:
        feats = []
        for i, block in enumerate(self.features):
            x = block(x, fold_batchnorm)
            if i < 2 or i + 1 in self.ends:
                feats.append(x)
        return feats
