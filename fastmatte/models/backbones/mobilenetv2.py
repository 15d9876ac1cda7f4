"""MobileNetV2 (Sandler et al., CVPR 2018), width 1.0, as MODNet's two official releases build it:
ZHKKKe/MODNet's PyTorch backbone and PaddleSeg's Matting backbone, the ImageNet classifier removed
and five feature maps tapped for a decoder.

The two differ in one place: PaddleSeg's blocks always have the 1x1 expand convolution, also in the
first block, whose expansion is 1 (a 32 -> 32 convolution), where ZHKKKe's (and torchvision's) go
straight to the depthwise convolution. `expand_always=True` builds PaddleSeg's form. Both add the
input back in every block that keeps size and width (ZHKKKe's rule); PaddleSeg's rule, every block
but the first of its group, picks the same blocks in this configuration.

Module names follow torchvision's (features.N.conv.K), which ZHKKKe's checkpoints use after their
"backbone.model." prefix; fastmatte.models.modnet converts PaddleSeg's names to these.
"""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.fold import fold

# (expansion t, output channels c, blocks n, stride of the first block s), per group.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
TAPS = (1, 3, 6, 13, 18)  # features whose outputs are the five feature maps (1/2 ... 1/32)


def conv_bn(in_channels, out_channels, kernel, stride=1, groups=1, relu6=True) -> list:
    """[conv (no bias, "same" padding), BatchNorm(eps 1e-5)] and a ReLU6 when relu6."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_channels)]
    return layers + [nn.ReLU6(inplace=True)] if relu6 else layers


class InvertedResidual(nn.Module):
    """1x1 expand + BN + ReLU6 (absent when expansion is 1, unless expand_always), depthwise 3x3 at
    `stride` + BN + ReLU6, 1x1 project + BN (no activation), the input added back when the block
    keeps size and width. forward(x[B, in, H, W]) -> [B, out, ceil(H / stride), ceil(W / stride)]."""

    def __init__(self, in_channels, out_channels, stride, expansion, expand_always=False):
        super().__init__()
        hidden = round(in_channels * expansion)
        expand = conv_bn(in_channels, hidden, 1) if expansion != 1 or expand_always else []
        self.conv = nn.Sequential(*expand, *conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  *conv_bn(hidden, out_channels, 1, relu6=False))
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """The feature extractor: features[0] a 3x3 stride-2 conv 3 -> 32 + BN + ReLU6, features[1..17]
    the inverted residual blocks of SETTINGS, features[18] a 1x1 conv 320 -> 1280 + BN + ReLU6.

    forward(x[B, 3, H, W]) -> the outputs of features 1, 3, 6, 13 and 18: [B, 16, H/2, W/2],
    [B, 24, H/4, W/4], [B, 32, H/8, W/8], [B, 96, H/16, W/16], [B, 1280, H/32, W/32] (sizes rounded
    up at every stride), in x's dtype.

    forward(x, fold_batchnorm=True) (inference only, eval mode) runs each conv with its BatchNorm folded into
    its weight and bias, and ReLU6 as one clamp: the same function with fewer passes over memory.
    """

    out_channels = (16, 24, 32, 96, HEAD_CHANNELS)

    def __init__(self, expand_always: bool = False):
        super().__init__()
        features, channels = [nn.Sequential(*conv_bn(3, STEM_CHANNELS, 3, 2))], STEM_CHANNELS
        for expansion, out, count, stride in SETTINGS:
            for index in range(count):
                features.append(InvertedResidual(channels, out, stride if index == 0 else 1, expansion,
                                                 expand_always))
                channels = out
        features.append(nn.Sequential(*conv_bn(channels, HEAD_CHANNELS, 1)))
        self.features = nn.Sequential(*features)

    def forward(self, x, fold_batchnorm: bool = False):
        taps = []
        for index, feature in enumerate(self.features):
            if fold_batchnorm:
                layers = feature.conv if isinstance(feature, InvertedResidual) else feature
                y = run_folded(layers, x)
                x = x + y if getattr(feature, "residual", False) else y
            else:
                x = feature(x)
            if index in TAPS:
                taps.append(x)
        return tuple(taps)


def run_folded(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """layers (conv, BN[, ReLU6], conv, BN, ...) run on x with every BN folded into its conv, in
    inference (the BNs' running statistics)."""
    modules = list(layers)
    for index, module in enumerate(modules):
        if isinstance(module, nn.Conv2d):
            weight, bias = fold(module, modules[index + 1])
            x = F.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
        elif isinstance(module, nn.ReLU6):
            x = x.clamp_(0, 6)
    return x

