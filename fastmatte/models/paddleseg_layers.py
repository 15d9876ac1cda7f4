"""PaddleSeg's conv + BatchNorm units, shared by its releases in the zoo (PP-Matting's heads,
PP-MattingV2's decoder and DPP), under PaddleSeg's parameter names, so that a checkpoint's keys
load as they are. Each runs either as the official layers (the eager twin) or, in inference, with
the BatchNorm folded into the convolution (fastmatte.models.fold; fastmatte's choice)."""
import torch.nn.functional as F
from torch import nn

from fastmatte.models.fold import conv_bn


class ConvBN(nn.Module):
    """PaddleSeg's ConvBN (relu=False) / ConvBNReLU (relu=True), and ResNet-vd's ConvBNLayer: a
    kernel x kernel stride-1 conv (`_conv`; 'same' zero padding, dilation * (kernel // 2); a bias
    only when bias), BatchNorm (`_batch_norm`, eps 1e-5), ReLU when relu.

    forward(x [B, cin, H, W], folded=False) -> [B, cout, H, W]; folded (inference: the BatchNorm's
    running statistics): one convolution, the ReLU in place."""

    def __init__(self, cin, cout, kernel, dilation=1, groups=1, bias=False, relu=False):
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                               groups=groups, bias=bias)
        self._batch_norm = nn.BatchNorm2d(cout, eps=1e-5)
        self.relu = relu

    def forward(self, x, folded: bool = False):
        y = conv_bn(self._conv, self._batch_norm, x, folded)
        if not self.relu:
            return y
        return y.relu_() if folded else F.relu(y)


class Conv2DBN(nn.Module):
    """PP-MattingV2's transformer unit Conv2DBN: a 1x1 conv without bias (`c`), then BatchNorm
    (`bn`). forward(x [B, cin, H, W], folded=False) -> [B, cout, H, W]."""

    def __init__(self, cin, cout):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x, folded: bool = False):
        return conv_bn(self.c, self.bn, x, folded)
