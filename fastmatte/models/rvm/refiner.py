"""RVM's deep guided filter (after Wu et al., CVPR 2018): the low-resolution prediction carried to
the full-resolution frame by a guided filter whose coefficients a small network predicts."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.rvm.layout import in_layout_of
from fastmatte.ops import guided_upsample


class DeepGuidedFilterRefiner(nn.Module):
    """Guided-filter coefficients at low resolution, applied at full resolution.

    At the low resolution, with guide x = [image, mean of its 3 channels] and target y = [the
    foreground residual, alpha] (4 channels each, alpha not clamped):
      mean_x = box(x), mean_y = box(y),
      cov_xy = box(x * y) - mean_x * mean_y,  var_x = box(x * x) - mean_x * mean_x,
      A = conv3(relu(conv2(relu(conv1([cov_xy, var_x, hidden])))))   (1x1 convs: 24 -> 16 -> 16 -> 4),
      b = mean_y - A * mean_x.
    `box` is the trained network's "box filter": a learned 3x3 depthwise conv (4 groups, padding
    1, no bias). It was initialized to 1/9 but trained to uneven, asymmetric weights, so neither
    a true box filter nor an integral image reproduces it. Unlike the classic guided filter, A
    is predicted, with no epsilon and no division. conv1 and conv2 carry folded BatchNorms.
    Full resolution: fastmatte.ops.guided_upsample(image, A, b) (bilinear up of A and b, then
    A * [image, mean] + b, the residual added to the image, both clamped to [0, 1]).

    forward(image[B, 3, H, W], image_low[B, 3, h, w], foreground_residual[B, 3, h, w],
    alpha[B, 1, h, w], hidden[B, 16, h, w], backend=None) -> (foreground [B, 3, H, W],
    alpha [B, 1, H, W]) in [0, 1], image's dtype. backend is guided_upsample's.
    """

    def __init__(self, hidden_channels: int = 16):
        super().__init__()
        self.box_filter = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.conv1 = nn.Conv2d(4 * 2 + hidden_channels, hidden_channels, 1)
        self.conv2 = nn.Conv2d(hidden_channels, hidden_channels, 1)
        self.conv3 = nn.Conv2d(hidden_channels, 4, 1)

    def coefficients(self, image_low, foreground_residual, alpha, hidden):
        """(A, b), each [B, 4, h, w]: the guided filter's linear coefficients at low resolution."""
        x = torch.cat([image_low, image_low.mean(1, keepdim=True)], 1)
        y = torch.cat([foreground_residual, alpha], 1)
        # The four box filterings as one depthwise conv over 16 channels: the same sums, in half
        # the time of four calls on 4 channels each (measured at HD, ratio 0.25, on the CPU). x's
        # one-channel mean would make the cat NCHW: see layout.py.
        weight = self.box_filter.weight.repeat(4, 1, 1, 1)
        stacked = in_layout_of(torch.cat([x, y, x * y, x * x], 1), image_low)
        boxed = F.conv2d(stacked, weight, padding=1, groups=16)
        mean_x, mean_y, mean_xy, mean_xx = boxed.split(4, 1)
        cov_xy = mean_xy - mean_x * mean_y
        var_x = mean_xx - mean_x * mean_x
        a = self.conv3(F.relu(self.conv2(F.relu(self.conv1(torch.cat([cov_xy, var_x, hidden], 1))))))
        return a, mean_y - a * mean_x

    def forward(self, image, image_low, foreground_residual, alpha, hidden, backend=None):
        a, b = self.coefficients(image_low, foreground_residual, alpha, hidden)
        # In the image's layout (the low-resolution maps may be channels-last): the eager reference
        # would otherwise mix layouts in its full-resolution arithmetic.
        a, b = (t.contiguous(memory_format=torch.contiguous_format) for t in (a, b))
        return guided_upsample(image, a, b, backend=backend)

