"""MobileNetV3-Large (Howard et al., ICCV 2019) in the form Robust Video Matting uses: the ImageNet
classifier removed, the last stage dilated (output stride 16 instead of 32), and four feature maps
tapped for a decoder.

Every convolution that is followed by a BatchNorm in the trained network is a convolution with a
bias here, and there is no BatchNorm: this is the released model's fused form. RVM's public ONNX
release was exported with each BatchNorm folded into the convolution before it (weight scaled per
output channel, the shift became a bias), and the BatchNorm statistics cannot be recovered from
it. The fused network computes the same function at inference, with fewer operations. The
squeeze-excitation convolutions had no BatchNorm and keep their own biases.
"""
import torch.nn.functional as F
from torch import nn

# One row per inverted-residual block, in order:
# (in, kernel, expanded, out, squeeze width (0: no squeeze-excitation), activation, stride, dilation).
# The squeeze widths are the expanded width / 4 rounded to a multiple of 8, as the trained
# network has them. Block 13 is the classifier's last stride-2 block: RVM runs it at stride 1 and
# dilates it and the two after it, so the deepest features stay at 1/16 of the input.
BLOCKS = (
    (16, 3, 16, 16, 0, "relu", 1, 1),
    (16, 3, 64, 24, 0, "relu", 2, 1),
    (24, 3, 72, 24, 0, "relu", 1, 1),
    (24, 5, 72, 40, 24, "relu", 2, 1),
    (40, 5, 120, 40, 32, "relu", 1, 1),
    (40, 5, 120, 40, 32, "relu", 1, 1),
    (40, 3, 240, 80, 0, "hardswish", 2, 1),
    (80, 3, 200, 80, 0, "hardswish", 1, 1),
    (80, 3, 184, 80, 0, "hardswish", 1, 1),
    (80, 3, 184, 80, 0, "hardswish", 1, 1),
    (80, 3, 480, 112, 120, "hardswish", 1, 1),
    (112, 3, 672, 112, 168, "hardswish", 1, 1),
    (112, 5, 672, 160, 168, "hardswish", 1, 2),
    (160, 5, 960, 160, 240, "hardswish", 1, 2),
    (160, 5, 960, 160, 240, "hardswish", 1, 2),
)
TAPS = (0, 2, 5)  # blocks whose outputs are features 1..3 (1/2, 1/4, 1/8); feature 4 is the head's
STEM_CHANNELS = 16
HEAD_CHANNELS = 960
ACTIVATIONS = {"relu": F.relu, "hardswish": F.hardswish}


class SqueezeExcitation(nn.Module):
    """Channel gating: x * hardsigmoid(excite(relu(squeeze(mean of x over H, W)))).

    forward(x[B, C, H, W]) -> [B, C, H, W]; squeeze and excite are 1x1 convs with biases
    (C -> width -> C).
    """

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.squeeze = nn.Conv2d(channels, width, 1)
        self.excite = nn.Conv2d(width, channels, 1)

    def forward(self, x):
        scale = F.hardsigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(x, 1)))))
        return x * scale


class InvertedResidual(nn.Module):
    """One MobileNetV3 block: 1x1 expand (absent when expanded == in), depthwise k x k (stride,
    dilation, "same" padding), optional squeeze-excitation, 1x1 project without activation, and
    the input added back when the block keeps both size and width.

    forward(x[B, in, H, W]) -> [B, out, ceil(H / stride), ceil(W / stride)].
    Modules are registered in the order forward runs them (the RVM release reader relies on it).
    """

    def __init__(self, in_channels, kernel, expanded, out_channels, squeeze, activation, stride, dilation):
        super().__init__()
        self.activation = ACTIVATIONS[activation]
        self.expand = nn.Conv2d(in_channels, expanded, 1) if expanded != in_channels else None
        self.depthwise = nn.Conv2d(expanded, expanded, kernel, stride, padding=(kernel - 1) // 2 * dilation,
                                   dilation=dilation, groups=expanded)
        self.se = SqueezeExcitation(expanded, squeeze) if squeeze else None
        self.project = nn.Conv2d(expanded, out_channels, 1)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        y = x if self.expand is None else self.activation(self.expand(x))
        y = self.activation(self.depthwise(y))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class MobileNetV3Large(nn.Module):
    """The feature extractor: stem (3x3 stride-2 conv, hardswish), the 15 BLOCKS, head (1x1 conv
    to 960, hardswish).

    forward(x[B, 3, H, W] normalized with ImageNet's mean and std) -> (f1, f2, f3, f4):
      f1 [B, 16, H/2, W/2], f2 [B, 24, H/4, W/4], f3 [B, 40, H/8, W/8], f4 [B, 960, H/16, W/16],
      each size rounded up (every stride-2 layer gives ceil(n / 2)); x's dtype.
    """

    out_channels = (16, 24, 40, HEAD_CHANNELS)

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(InvertedResidual(*row) for row in BLOCKS)
        self.head = nn.Conv2d(BLOCKS[-1][3], HEAD_CHANNELS, 1)

    def forward(self, x):
        x = F.hardswish(self.stem(x))
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in TAPS:
                features.append(x)
        return (*features, F.hardswish(self.head(x)))
