"""MODNet's building blocks, as both official releases compute them: IBNorm, the conv + IBNorm +
ReLU unit every branch is made of, and the squeeze-excitation block of the low-resolution branch."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import ops


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

    def fused(self, x, relu: bool, backend=None):
        """The same in inference (the BatchNorm's running statistics), with the ReLU after it when
        relu, as one fastmatte.ops.ibnorm: two passes over x, none over a copy."""
        bn, instance = self.bnorm, self.inorm
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        channels = x.shape[1] - self.split
        weight = instance.weight if instance.affine else x.new_ones(channels)
        bias = instance.bias if instance.affine else x.new_zeros(channels)
        return ops.ibnorm(x, scale, shift, weight, bias, eps=instance.eps, relu=relu, backend=backend)


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

    def forward(self, x, fused: bool = False, backend=None):
        """fused (inference only): the IBNorm and ReLU as one fastmatte.ops.ibnorm (see IBNorm.fused)."""
        if not fused:
            return self.layers(x)
        conv, *rest = self.layers
        y = conv(x)
        relu = any(isinstance(layer, nn.ReLU) for layer in rest)
        if isinstance(rest[0] if rest else None, IBNorm):
            return rest[0].fused(y, relu, backend)
        return y.relu_() if relu else y


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
