"""RVM's head on the backbone: the LR-ASPP context module and the recurrent decoder, whose
ConvGRUs carry the temporal state from frame to frame.

Convolutions followed by BatchNorm in the trained network are convolutions with biases here (the
BatchNorm folded in, as in the released ONNX model; see fastmatte.models.backbones.mobilenetv3).
"""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.rvm.layout import in_layout_of

STATE_CHANNELS = (16, 20, 40, 64)  # the four recurrent states, at 1/2, 1/4, 1/8 and 1/16


class LRASPP(nn.Module):
    """Lite reduced atrous spatial pyramid pooling: relu(conv(x)) * sigmoid(gate(mean of x)).

    forward(x[B, in, h, w]) -> [B, out, h, w]. conv is a 1x1 conv with bias (a folded
    BatchNorm); gate a 1x1 conv without bias on the global average of x.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.gate = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return F.relu(self.conv(x)) * torch.sigmoid(self.gate(F.adaptive_avg_pool2d(x, 1)))


class ConvGRU(nn.Module):
    """A convolutional GRU cell whose output is its new state.

    forward(x[B, C, h, w], state) -> new state [B, C, h, w]:
      r, z = split(sigmoid(gates([x, state])))       (3x3, 2C -> 2C)
      candidate = tanh(candidate([x, r * state]))    (3x3, 2C -> C)
      new = (1 - z) * state + z * candidate
    state: a tensor that broadcasts to x's shape ([1, 1, 1, 1] zeros start a clip, as the
    released ONNX graph broadcasts its state inputs).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)
        self.candidate = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(self, x, state):
        state = in_layout_of(state.expand_as(x), x)  # a broadcast or NCHW state: see layout.py
        r, z = torch.sigmoid(self.gates(torch.cat([x, state], 1))).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([x, r * state], 1)))
        return (1 - z) * state + z * candidate


class Bottleneck(nn.Module):
    """The 1/16 stage: the LR-ASPP output's second half goes through a ConvGRU.

    forward(x[B, C, h, w], state) -> (x with its second half replaced by the new state, new state
    [B, C/2, h, w]).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.gru = ConvGRU(channels // 2)

    def forward(self, x, state):
        kept, recurrent = x.chunk(2, 1)
        state = self.gru(recurrent, state)
        return torch.cat([kept, state], 1), state


class UpsamplingBlock(nn.Module):
    """x2 up, merge a skip feature and the image pyramid level, 3x3 conv, ConvGRU on half.

    forward(x[B, in, h, w], skip[B, skip, hs, ws], image[B, 3, hs, ws], state) -> (out[B, out, hs,
    ws], new state [B, out/2, hs, ws]): x is upsampled x2 (bilinear, align_corners=False) and
    cropped to hs x ws (2h >= hs: every level halves rounding up), then
    relu(conv([x, skip, image])); its second half goes through the ConvGRU.
    """

    def __init__(self, in_channels: int, skip_channels: int, image_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + skip_channels + image_channels, out_channels, 3, padding=1)
        self.gru = ConvGRU(out_channels // 2)

    def forward(self, x, skip, image, state):
        x = _up_to(x, image)
        x = F.relu(self.conv(torch.cat([x, skip, image], 1)))
        kept, recurrent = x.chunk(2, 1)
        state = self.gru(recurrent, state)
        return torch.cat([kept, state], 1), state


class OutputBlock(nn.Module):
    """The last x2 up to the (downsampled) image's size, merged with the image: two 3x3 conv + ReLU.

    forward(x[B, in, h, w], image[B, 3, H, W]) -> hidden features [B, out, H, W].
    """

    def __init__(self, in_channels: int, image_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels + image_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x, image):
        x = torch.cat([_up_to(x, image), image], 1)
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class RecurrentDecoder(nn.Module):
    """From the backbone's features (f4 after LR-ASPP) back to the image's size, with a ConvGRU at
    each of the four coarse levels.

    forward(image[B, 3, H, W], features (f1, f2, f3, f4), state (r1, r2, r3, r4)) ->
      (hidden [B, 16, H, W], new state): image is the downsampled frame in [0, 1] (not
      normalized); its pyramid s1, s2, s3 is 2x2 average pooling (ceil_mode, padding not
      counted), so every level is ceil(previous / 2), the backbone's sizes. The new state is
      r1 [B, 16, H/2, W/2], r2 [B, 20, H/4, W/4], r3 [B, 40, H/8, W/8], r4 [B, 64, H/16, W/16]
      (sizes rounded up); each given state must broadcast to its shape.
    Modules are registered in the order forward runs them (the RVM release reader relies on it).
    """

    def __init__(self, feature_channels=(16, 24, 40, 128), hidden=16):
        super().__init__()
        f1, f2, f3, f4 = feature_channels
        r1, r2, r3, _ = STATE_CHANNELS
        self.bottleneck = Bottleneck(f4)
        self.up3 = UpsamplingBlock(f4, f3, 3, 2 * r3)
        self.up2 = UpsamplingBlock(2 * r3, f2, 3, 2 * r2)
        self.up1 = UpsamplingBlock(2 * r2, f1, 3, 2 * r1)
        self.output = OutputBlock(2 * r1, 3, hidden)

    def forward(self, image, features, state):
        f1, f2, f3, f4 = features
        r1, r2, r3, r4 = state
        s1 = _half(image)
        s2 = _half(s1)
        s3 = _half(s2)
        x, r4 = self.bottleneck(f4, r4)
        x, r3 = self.up3(x, f3, s3, r3)
        x, r2 = self.up2(x, f2, s2, r2)
        x, r1 = self.up1(x, f1, s1, r1)
        return self.output(x, image), (r1, r2, r3, r4)


def _half(x):
    return F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False)


def _up_to(x, like):
    """x upsampled x2 (bilinear, align_corners=False) and cropped to like's height and width."""
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return x[:, :, :like.shape[-2], :like.shape[-1]]
