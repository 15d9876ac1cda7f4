"""MODNet's building blocks, as both official releases compute them: IBNorm, the conv + IBNorm +
ReLU unit every branch is made of, and the squeeze-excitation block of the low-resolution branch."""
import torch
import torch.nn.functional as F
from torch import nn


class IBNorm(nn.Module):
    """Instance-batch normalization: BatchNorm2d (affine, running statistics, eps 1e-5) on the first
    C // 2 channels and InstanceNorm2d (per-image statistics, also in eval; eps 1e-5) on the rest,
    concatenated in that order. affine_instance: the InstanceNorm half has a scale (`inorm.weight`)
    and a shift (PaddleSeg's release); ZHKKKe's has none.

    forward(x[B, C, H, W]) -> [B, C, H, W], x's dtype."""

    def __init__(self, channels: int, affine_instance: bool = False):
        super().__init__()
        self.split = channels // 2
        self.bnorm = nn.BatchNorm2d(self.split)
        self.inorm = nn.InstanceNorm2d(channels - self.split, affine=affine_instance)

    def forward(self, x):
        bn = self.bnorm(x[:, :self.split].contiguous())
        instance = self.inorm(x[:, self.split:].contiguous())
        return torch.cat((bn, instance), 1)


class ConvIBNormReLU(nn.Module):
    """`layers`: Conv2d (with a bias, also before the norm), then IBNorm and ReLU, each optional
    (the output heads have neither). forward(x) -> the conv's output size, x's dtype."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, padding=0, ibnorm=True, relu=True,
                 affine_instance=False):
        super().__init__()
        layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding)]
        if ibnorm:
            layers.append(IBNorm(out_channels, affine_instance))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class SEBlock(nn.Module):
    """Squeeze-excitation: x * sigmoid(fc(mean of x over H, W)), fc = Linear(C -> C / 4, no bias),
    ReLU, Linear(C / 4 -> C, no bias). forward(x[B, C, H, W]) -> [B, C, H, W]."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False))

    def forward(self, x):
        scale = torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        return x * scale[:, :, None, None]
