"""The convolution unit of PP-Matting's heads: PaddleSeg's ConvBNReLU / ConvBN (the SCB's, whose
convolutions have a bias) and ResNet-vd's ConvBNLayer (the HRDB's, without one), under PaddleSeg's
attribute names `_conv` and `_batch_norm`, so that a checkpoint's head keys need no mapping."""
import torch.nn.functional as F
from torch import nn

from fastmatte.models.fold import conv_bn


class ConvBN(nn.Module):
    """k x k conv (zero padding `padding`, dilation) -> BatchNorm (eps 1e-5) -> ReLU when relu.

    forward(x [B, cin, H, W], folded=False) -> [B, cout, H', W']; folded (inference, running
    statistics; fastmatte's choice): the BatchNorm folded into the convolution and the ReLU in
    place (the eager twin runs them as the official layers do)."""

    def __init__(self, cin, cout, kernel, padding=0, dilation=1, bias=True, relu=True):
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=bias)
        self._batch_norm = nn.BatchNorm2d(cout, eps=1e-5)
        self.relu = relu

    def forward(self, x, folded: bool = False):
        y = conv_bn(self._conv, self._batch_norm, x, folded)
        if not self.relu:
            return y
        return y.relu_() if folded else F.relu(y)
