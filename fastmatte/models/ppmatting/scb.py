"""PP-Matting's semantic context branch (SCB): pyramid pooling on the backbone's 1/32 map, then
six stages up to full resolution, each fed the pooled context upsampled to its size; the last
gives the 3-class semantic logits (0 foreground, 1 transition, 2 background).

Module names are PaddleSeg's (psp_module.stages.K.1, psp_module.conv_bn_relu2, psps.K.0,
scb_stages.K.J): a checkpoint's scb.* keys load as they are."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import ops
from fastmatte.models.paddleseg_layers import ConvBN

PSP_CHANNELS = 512
BINS = (1, 3, 5)
STAGE_MID = (512, 256, 128, 128, 64, 64)
STAGE_OUT = (256, 128, 64, 64, 64, 3)  # the six outputs' widths (the HRDB takes 0, 2 and 4)
PSP_UPSAMPLES = (2, 4, 8, 16)  # psps[k] upsamples the pooled context to stage k + 1's input size


def resize(x, size):
    """Bilinear resize (align_corners=False) to size (H, W), as Paddle's F.interpolate does."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def double(x):
    """x's size (H, W) doubled."""
    return 2 * x.shape[-2], 2 * x.shape[-1]


def run(units, x, folded):
    """x through a sequence of ConvBN units (other modules, the upsamples, are not in `units`)."""
    for unit in units:
        x = unit(x, folded)
    return x


class PPModule(nn.Module):
    """PaddleSeg's pyramid pooling (dim_reduction off): for each bin b in 1, 3, 5, adaptive average
    pooling to b x b and a 1x1 ConvBNReLU keeping the channels, resized back to the input's size;
    concat [input, bin 5, bin 3, bin 1] (the pooled maps in reverse bin order), then a 3x3
    ConvBNReLU to 512. forward(x [B, C, h, w]) -> [B, 512, h, w]."""

    def __init__(self, channels, out_channels=PSP_CHANNELS):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBN(channels, channels, 1, bias=True, relu=True))
            for b in BINS)
        self.conv_bn_relu2 = ConvBN(channels * (len(BINS) + 1), out_channels, 3, bias=True, relu=True)

    def forward(self, x, fused=False, backend=None):
        pooled = [stage[1](stage[0](x), fused) for stage in self.stages][::-1]
        if fused:
            cat = ops.resize_concat([x, *pooled], x.shape[-2:], backend=backend)
        else:
            cat = torch.cat([x, *(resize(p, x.shape[-2:]) for p in pooled)], 1)
        return self.conv_bn_relu2(cat, fused)


def stage(cin, mid, cout, dilation):
    """Three 3x3 ConvBNReLU (cin -> mid -> mid -> cout; the 2nd and 3rd with `dilation`) and a x2
    bilinear upsample."""
    return nn.Sequential(ConvBN(cin, mid, 3, bias=True, relu=True),
                         ConvBN(mid, mid, 3, dilation, bias=True, relu=True),
                         ConvBN(mid, cout, 3, dilation, bias=True, relu=True),
                         nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))


class SCB(nn.Module):
    """forward(x [B, C, H/32, W/32], fused=False, backend=None) -> the six stage outputs:
    [B, 256, H/16, W/16], [B, 128, H/8, W/8], [B, 64, H/4, W/4], [B, 64, H/2, W/2], [B, 64, H, W]
    and the logits [B, 3, H, W].

    Stage 0 takes concat(pooled context, x) and its 2nd and 3rd convs are dilated (2); stage k in
    1..4 takes concat(psps[k-1](context), stage k-1's output); stage 5 is two 3x3 ConvBNReLU and a
    plain 3x3 conv to the logits. Every conv has a bias, also before a BatchNorm (official).

    fused (inference; fastmatte's path): BatchNorms folded, and each stage's x2 upsample and the
    next concatenation with the context's upsample done by one fastmatte.ops.resize_concat from
    the two low-resolution maps (channels-last); a stage's output is then the slice of that
    result (the same values). The eager twin runs the official modules in their order."""

    def __init__(self, in_channels):
        super().__init__()
        stage_in = (PSP_CHANNELS + in_channels,) + tuple(o + o for o in STAGE_OUT[:4])
        self.psp_module = PPModule(in_channels)
        self.psps = nn.ModuleList(
            nn.Sequential(ConvBN(PSP_CHANNELS, STAGE_OUT[k], 3, bias=True, relu=True),
                          nn.Upsample(scale_factor=up, mode="bilinear", align_corners=False))
            for k, up in enumerate(PSP_UPSAMPLES))
        self.scb_stages = nn.ModuleList(
            [stage(stage_in[i], STAGE_MID[i], STAGE_OUT[i], 2 if i == 0 else 1) for i in range(5)]
            + [nn.Sequential(ConvBN(STAGE_OUT[4], STAGE_MID[5], 3, bias=True, relu=True),
                             ConvBN(STAGE_MID[5], STAGE_MID[5], 3, bias=True, relu=True),
                             nn.Conv2d(STAGE_MID[5], STAGE_OUT[5], 3, padding=1))])

    def forward(self, x, fused=False, backend=None):
        context = self.psp_module(x, fused, backend)
        return self._fused(context, x, backend) if fused else self._eager(context, x)

    def _eager(self, context, x):
        psps = [psp(context) for psp in self.psps]
        outputs = []
        for i, layers in enumerate(self.scb_stages):
            if i == 0:
                x = torch.cat((context, x), 1)
            elif i <= len(psps):
                x = torch.cat((psps[i - 1], x), 1)
            x = layers(x)
            outputs.append(x)
        return outputs

    def _fused(self, context, x, backend):
        x = ops.resize_concat([context, x], x.shape[-2:], backend=backend)
        outputs = []
        for i, layers in enumerate(self.scb_stages[:5]):
            y = run(layers[:3], x, True)
            parts = [self.psps[i][0](context, True)] if i < len(self.psps) else []
            x = ops.resize_concat([*parts, y], double(y), backend=backend)
            outputs.append(x[:, x.shape[1] - y.shape[1]:])  # stage i's upsampled output
        head = self.scb_stages[5]
        outputs.append(head[2](run(head[:2], x, True)))
        return outputs
