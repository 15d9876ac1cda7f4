"""HRNet as PaddleSeg's Matting code builds it (the PP-Matting backbone, `HRNet_W18` / `HRNet_W48`).

This is not the segmentation HRNet: it returns five maps, the stem's first conv output and the
four stage-4 branches, and every convolution uses Paddle's 'same' padding, which on a stride-2
conv over an even size pads 0 before and 1 after (TF style), not 1 and 1.

Module names are torch-style (stem1, layer1, transition1, stage2.0.branches.1.3.conv2, ...);
`paddle_hrnet_names` maps the `backbone.*` keys of a PaddleSeg checkpoint (as
`fastmatte.models.read_state_dict` returns them) onto these names.
"""
import math
import re

import torch.nn.functional as F
from torch import nn

from fastmatte.models.fold import conv_bn

__all__ = ["HRNet", "hrnet_w18", "hrnet_w48", "paddle_hrnet_names"]


def same_pad(size: int, kernel: int, stride: int) -> tuple:
    """Paddle/TF 'same' padding of one dimension: (before, after), before = total // 2."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Module):
    """k x k conv (no bias, 'same' padding) + BatchNorm (+ ReLU): [N, cin, H, W] -> [N, cout, H/s, W/s]."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        pad = 0 if stride > 1 else kernel // 2  # stride 1, odd kernel: 'same' is symmetric
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)

    def forward(self, x, folded: bool = False):
        """folded (inference, running statistics): the BatchNorm folded into the convolution."""
        if self.stride > 1:
            top, bottom = same_pad(x.shape[-2], self.kernel, self.stride)
            left, right = same_pad(x.shape[-1], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        x = conv_bn(self.conv, self.bn, x, folded)
        if not self.relu:
            return x
        return x.relu_() if folded else F.relu(x)


def chain(layers, x, folded: bool):
    """x through a ConvBN, an nn.Sequential of ConvBNs or an nn.Identity."""
    for layer in layers if isinstance(layers, nn.Sequential) else (layers,):
        x = x if isinstance(layer, nn.Identity) else layer(x, folded)
    return x


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) + shortcut, ReLU: [N, cin, H, W] -> [N, 4 * width, H, W]."""

    def __init__(self, cin: int, width: int):
        super().__init__()
        self.conv1 = ConvBN(cin, width, 1)
        self.conv2 = ConvBN(width, width, 3)
        self.conv3 = ConvBN(width, 4 * width, 1, relu=False)
        self.downsample = ConvBN(cin, 4 * width, 1, relu=False) if cin != 4 * width else None

    def forward(self, x, folded: bool = False):
        skip = x if self.downsample is None else self.downsample(x, folded)
        y = self.conv3(self.conv2(self.conv1(x, folded), folded), folded)
        return y.add_(skip).relu_() if folded else F.relu(y + skip)


class BasicBlock(nn.Module):
    """3x3 ConvBNReLU -> 3x3 ConvBN + identity, ReLU: [N, C, H, W] -> [N, C, H, W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvBN(channels, channels, 3)
        self.conv2 = ConvBN(channels, channels, 3, relu=False)

    def forward(self, x, folded: bool = False):
        y = self.conv2(self.conv1(x, folded), folded)
        return y.add_(x).relu_() if folded else F.relu(y + x)


class HRModule(nn.Module):
    """Branches of 4 BasicBlocks, then the fuse: out_i = ReLU(x_i + sum_{j != i} T_ij(x_j)).

    T_ij (j > i): 1x1 ConvBN to ch_i, bilinear resize to x_i's size (align_corners=False).
    T_ij (j < i): i - j stride-2 3x3 convs; ConvBNReLU keeping ch_j, the last a ConvBN to ch_i.
    Takes and returns the list of branch maps, branch b [N, ch_b, H / 2**b, W / 2**b].
    """

    def __init__(self, channels: list, blocks: int = 4):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c) for _ in range(blocks))) for c in channels)
        self.fuse = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(ConvBN(channels[j], channels[i], 1, relu=False))
                elif j < i:
                    chain = [ConvBN(channels[j], channels[j], 3, 2) for _ in range(i - j - 1)]
                    row.append(nn.Sequential(*chain, ConvBN(channels[j], channels[i], 3, 2, relu=False)))
                else:
                    row.append(nn.Identity())
            self.fuse.append(row)

    def forward(self, xs: list, folded: bool = False) -> list:
        xs = [chain(branch, x, folded) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            y = xs[i]
            for j, t in enumerate(row):
                if j > i:
                    term = F.interpolate(t(xs[j], folded), size=xs[i].shape[-2:], mode="bilinear",
                                         align_corners=False)
                elif j < i:
                    term = chain(t, xs[j], folded)
                else:
                    continue
                # folded (inference): the sum accumulates in place once it is a new tensor
                y = y.add_(term) if folded and y is not xs[i] else y + term
            out.append(y.relu_() if folded and y is not xs[i] else F.relu(y))
        return out


class HRNet(nn.Module):
    """PaddleSeg Matting HRNet with branch widths `width * (1, 2, 4, 8)` (18: W18, 48: W48).

    forward(x [N, 3, H, W], H and W multiples of 32) returns 5 maps, channels `feat_channels`:
      [N, 64, H/2, W/2] (stem conv 1), [N, w, H/4, W/4], [N, 2w, H/8, W/8], [N, 4w, H/16, W/16],
      [N, 8w, H/32, W/32] (the stage-4 branches).
    fold_batchnorm=True (inference only, eval mode; fastmatte's choice, not the official code's)
      runs every conv with its BatchNorm folded in (fastmatte.models.fold); the maps keep x's
      memory format (channels-last in, channels-last out).
    """

    def __init__(self, width: int = 18, modules_per_stage: tuple = (1, 4, 3)):
        super().__init__()
        ch = [width * 2 ** b for b in range(4)]
        self.feat_channels = [64] + ch
        self.stem1 = ConvBN(3, 64, 3, 2)
        self.stem2 = ConvBN(64, 64, 3, 2)
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *(Bottleneck(256, 64) for _ in range(3)))
        self.transition1 = nn.ModuleList([ConvBN(256, ch[0], 3), ConvBN(256, ch[1], 3, 2)])
        self.stage2 = nn.Sequential(*(HRModule(ch[:2]) for _ in range(modules_per_stage[0])))
        self.transition2 = ConvBN(ch[1], ch[2], 3, 2)
        self.stage3 = nn.Sequential(*(HRModule(ch[:3]) for _ in range(modules_per_stage[1])))
        self.transition3 = ConvBN(ch[2], ch[3], 3, 2)
        self.stage4 = nn.Sequential(*(HRModule(ch) for _ in range(modules_per_stage[2])))

    def forward(self, x, fold_batchnorm: bool = False) -> list:
        folded = fold_batchnorm
        x0 = self.stem1(x, folded)
        x = self.stem2(x0, folded)
        for block in self.layer1:
            x = block(x, folded)
        xs = [t(x, folded) for t in self.transition1]
        for stage, transition in ((self.stage2, None), (self.stage3, self.transition2),
                                  (self.stage4, self.transition3)):
            if transition is not None:
                xs = xs + [transition(xs[-1], folded)]
            for module in stage:
                xs = module(xs, folded)
        return [x0] + xs


def hrnet_w18() -> HRNet:
    return HRNet(18)


def hrnet_w48() -> HRNet:
    return HRNet(48)


_RULES = [
    (r"^conv_layer1_(\d)\.", lambda m: f"stem{m[1]}."),
    (r"^la1\.bb_layer2_(\d+)\.conv_down\.", lambda m: f"layer1.{int(m[1]) - 1}.downsample."),
    (r"^la1\.bb_layer2_(\d+)\.", lambda m: f"layer1.{int(m[1]) - 1}."),
    (r"^tr1\.transition_tr1_layer_(\d)\.", lambda m: f"transition1.{int(m[1]) - 1}."),
    (r"^tr(\d)\.transition_tr\d_layer_\d\.", lambda m: f"transition{m[1]}."),
    (r"^st(\d)\.stage_st\d_(\d+)\.branches_func\.bb_st\d_\d+_branch_layer_(\d+)_(\d+)\.",
     lambda m: f"stage{m[1]}.{int(m[2]) - 1}.branches.{int(m[3]) - 1}.{int(m[4]) - 1}."),
    (r"^st(\d)\.stage_st\d_(\d+)\.fuse_func\.residual_st\d_\d+_layer_(\d+)_(\d+)_(\d+)\.",
     lambda m: f"stage{m[1]}.{int(m[2]) - 1}.fuse.{int(m[3]) - 1}.{int(m[4]) - 1}.{int(m[5]) - 1}."),
    (r"^st(\d)\.stage_st\d_(\d+)\.fuse_func\.residual_st\d_\d+_layer_(\d+)_(\d+)\.",
     lambda m: f"stage{m[1]}.{int(m[2]) - 1}.fuse.{int(m[3]) - 1}.{int(m[4]) - 1}."),
]


def paddle_hrnet_names(state_dict: dict, prefix: str = "backbone.") -> dict:
    """PaddleSeg Matting HRNet tensors -> this module's state dict.

    Takes the keys under `prefix` (e.g. `backbone.st4.stage_st4_3.fuse_func.residual_st4_3_layer_4_1_3
    ._conv.weight` -> `stage4.2.fuse.3.0.2.conv.weight`; `_batch_norm` -> `bn`); other keys are
    ignored. Raises KeyError on a backbone key no rule knows.
    """
    out = {}
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        for pattern, repl in _RULES:
            new, hit = re.subn(pattern, repl, name)
            if hit:
                break
        else:
            raise KeyError(f"unknown PaddleSeg HRNet key {key!r}")
        out[new.replace("._conv.", ".conv.").replace("._batch_norm.", ".bn.")] = tensor
    return out

