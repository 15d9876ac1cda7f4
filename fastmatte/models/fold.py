"""BatchNorm folding for inference: a convolution followed by a BatchNorm in eval mode (running
statistics) is one convolution with rescaled weights and a bias. Shared by every zoo model's fused
path; the folded weights are computed on each call (cheap next to the convolution, and always those
of the current parameters)."""
import torch
import torch.nn.functional as F
from torch import nn


def fold(conv, bn: nn.BatchNorm2d):
    """(weight, bias) of conv (an nn.Conv2d, or an nn.ConvTranspose2d, whose weight holds the
    output channels second) followed by bn in eval mode as one conv of the same kind."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
    return conv.weight * scale.view(shape), bias


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, folded: bool) -> torch.Tensor:
    """bn(conv(x)); folded: as one convolution (inference: bn must use its running statistics).
    conv must use zero padding given by its own `padding` (an int or a tuple of ints)."""
    if not folded:
        return bn(conv(x))
    weight, bias = fold(conv, bn)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
