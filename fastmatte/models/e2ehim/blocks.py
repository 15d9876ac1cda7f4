"""E2E-HIM's convolution units: conv + GroupNorm + activation stacks, the bottleneck residual
block (the official RESBASEE, normalized by GroupNorm32, the official GNs_) and the position
attention module (the official PAM_Module). Module names are the authors', so that their
checkpoint loads as it is."""
import torch
import torch.nn.functional as F
from torch import nn


def leaky():
    """The official nn.LeakyReLU(inplace=True): slope 0.01."""
    return nn.LeakyReLU(0.01)


def conv_gn(cin: int, cout: int, kernel: int, groups: int, act, stride: int = 1) -> list:
    """[Conv2d(cin, cout, kernel, stride, 'same' zero padding, bias), GroupNorm(groups, cout), act]:
    the three entries of an official nn.Sequential (indices 0, 1, 2)."""
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.GroupNorm(groups, cout), act]


def conv_stage(cin: int, cout: int, kernel: int, groups: int, act, planes: int, blocks: int,
               stride: int = 1) -> nn.Sequential:
    """nn.Sequential(*conv_gn(...), then `blocks` Bottleneck(cout, planes)) (indices 3, 4, ...)."""
    return nn.Sequential(*conv_gn(cin, cout, kernel, groups, act, stride),
                         *(Bottleneck(cout, planes) for _ in range(blocks)))


class GroupNorm32(nn.Module):
    """The official GNs_: GroupNorm with 32 channels per group (ch // 32 groups; ch // 16 when ch is
    not a multiple of 32), held as `gn`. forward(x[B, ch, H, W]) -> [B, ch, H, W]."""

    def __init__(self, channels: int):
        super().__init__()
        groups = channels // 32 if channels % 32 == 0 else channels // 16
        self.gn = nn.GroupNorm(groups, channels)

    def forward(self, x):
        return self.gn(x)


class Bottleneck(nn.Module):
    """The official RESBASEE(C, P): 1x1 C->P, GroupNorm32, ReLU, 3x3 P->P, GroupNorm32,
    LeakyReLU(0.01), 1x1 P->C, GroupNorm32 (all in `in_conv1`); plus the input, LeakyReLU(0.01).
    forward(x[B, C, H, W]) -> [B, C, H, W]."""

    def __init__(self, channels: int, planes: int):
        super().__init__()
        self.in_conv1 = nn.Sequential(
            nn.Conv2d(channels, planes, 1), GroupNorm32(planes), nn.ReLU(),
            nn.Conv2d(planes, planes, 3, 1, 1), GroupNorm32(planes), leaky(),
            nn.Conv2d(planes, channels, 1), GroupNorm32(channels))

    def forward(self, x):
        return F.leaky_relu(self.in_conv1(x) + x, 0.01)


class PositionAttention(nn.Module):
    """The official PAM_Module(C, P): self-attention over the positions of a map, without any
    1/sqrt(d) scaling: out = gamma * (v softmax(q^T k)^T) + x, q and k 1x1 C->P, v 1x1 C->C, gamma a
    learned scalar (zero at init).

    forward(x[B, C, H, W], fused) -> [B, C, H, W]. fused: one scaled_dot_product_attention with
    scale 1; otherwise the official bmm, softmax, bmm.
    """

    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.query_conv = nn.Conv2d(channels, inner, 1)
        self.key_conv = nn.Conv2d(channels, inner, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x, fused: bool):
        batch, channels, height, width = x.shape
        q = self.query_conv(x).flatten(2)  # [B, P, HW]
        k = self.key_conv(x).flatten(2)
        v = self.value_conv(x).flatten(2)  # [B, C, HW]
        if fused:
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 scale=1.0).transpose(1, 2)
        else:
            attention = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # [B, HW, HW]
            out = torch.bmm(v, attention.transpose(1, 2))
        return self.gamma * out.reshape(batch, channels, height, width) + x
