"""PP-MattingV2 (PaddleSeg, 2023): real-time trimap-free human matting, STDC1 backbone, the
double pyramid pool module (dpp.py) and the MLFF decoder (mlff.py), as PaddleSeg's released
ppmattingv2-stdc1-human_512 builds it (decoder channels 128, 96, 64, 32, 16; head width 8; DPP
output 256 channels, merge "add"). Only that configuration is built: the official class's defaults
(DPP output 512, merge "concat", decoder ending in 32, head width 32) differ from the release's
config and are not offered.
The forward is the official one; the inference path (channels-last, folded BatchNorms, fastmatte
ops) and predict's max_short argument are fastmatte's."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import ops
from fastmatte.models import paddleseg_transforms as transforms
from fastmatte.models.backbones.stdc import STDC1
from fastmatte.models.image_check import check_finite, check_image, check_network_size
from fastmatte.models.ppmattingv2.dpp import DoublePyramidPool
from fastmatte.models.paddleseg_layers import ConvBN
from fastmatte.models.ppmattingv2.mlff import MLFF
from fastmatte.ops._backend import check_backend

BACKBONES = ("stdc1",)
DPP_CHANNELS = 256
DECODER_CHANNELS = (128, 96, 64, 32, 16)
HEAD_CHANNELS = 8
MAX_SHORT = 512  # the config's LimitShort(max_short=512)


class MattingHead(nn.Module):
    """The official MattingHead: 3x3 ConvBNReLU (`conv`, no bias) to mid channels, mid_num - 1 more
    (`mid_conv`), a 1x1 conv to one channel without bias (`conv_out`), sigmoid.
    forward(x[B, in, H, W], folded=False) -> [B, 1, H, W] in (0, 1)."""

    def __init__(self, in_channels, mid_channels, mid_num=1):
        super().__init__()
        self.conv = ConvBN(in_channels, mid_channels, 3, relu=True)
        self.mid_conv = nn.ModuleList(ConvBN(mid_channels, mid_channels, 3, relu=True)
                                      for _ in range(mid_num - 1))
        self.conv_out = nn.Conv2d(mid_channels, 1, 1, bias=False)

    def forward(self, x, folded: bool = False):
        x = self.conv(x, folded)
        for conv in self.mid_conv:
            x = conv(x, folded)
        return torch.sigmoid(self.conv_out(x))


class PPMattingV2(nn.Module):
    """PP-MattingV2 as released (ppmattingv2-stdc1-human_512.pdparams). Module names are PaddleSeg's.

    backbone: "stdc1", the one released.
    max_short: predict's LimitShort bound (the config's 512), fastmatte's constructor default;
      predict(max_short=...) overrides it per call.

    forward(image, aux=False, backend=None):
      image: float [B, 3, H, W] RGB in [0, 1], H and W multiples of 32, in the model's dtype and
        device; normalized inside to (image - 0.5) / 0.5, the official Normalize. On the CPU an
        image holding NaN or infinite values is refused (elsewhere not checked: that would
        wait for the device).
      aux: also return "alpha_8x"; always in training mode (the official training forward).
      backend: in eval mode, None = fastmatte's inference path (channels-last; every BatchNorm
        folded into its conv; the head's resize-and-concatenate with the image and the decoder's
        resizes by fastmatte.ops.resize_concat, the image's `area` resizes by
        fastmatte.ops.area_resize, the DPP attention by scaled_dot_product_attention; a backend
        name is passed to those ops); "torch" = the eager twin, the same layers as plain PyTorch
        in the official order (NCHW, BatchNorm layers, F.interpolate, torch.cat, explicit
        matmul and softmax). In training mode both run the eager layers (batch statistics).
    Returns a dict: "alpha" [B, 1, H, W] in (0, 1); with aux also "alpha_8x" [B, 1, H/8, W/8]
    (sigmoid of matting_head_mlff8x, the training-only head); image's dtype.
    """

    def __init__(self, backbone: str = "stdc1", max_short: int = MAX_SHORT):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"PPMattingV2: backbone must be one of {', '.join(map(repr, BACKBONES))}, "
                             f"got {backbone!r}")
        self.max_short = transforms.check_max_short("PPMattingV2", max_short)
        self.backbone = STDC1()
        c, d = STDC1.feat_channels, DECODER_CHANNELS
        self.dpp = DoublePyramidPool(sum(c[1:]), DPP_CHANNELS, DPP_CHANNELS)
        self.mlff32x = MLFF([c[4], DPP_CHANNELS], [DPP_CHANNELS] * 2, d[0])
        self.mlff16x = MLFF([c[3], d[0], DPP_CHANNELS], [d[0]] * 3, d[1])
        self.mlff8x = MLFF([c[2], d[1], DPP_CHANNELS], [d[1]] * 3, d[2])
        self.mlff4x = MLFF([c[1], d[2], 3], [d[2], d[2], 3], d[3])
        self.mlff2x = MLFF([c[0], d[3], 3], [d[3], d[3], 3], d[4])
        self.matting_head_mlff8x = MattingHead(d[2], 32)
        self.matting_head_mlff2x = MattingHead(d[4] + 3, HEAD_CHANNELS, mid_num=2)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5), persistent=False)

    def forward(self, image, aux: bool = False, backend=None):
        check_backend("PPMattingV2", backend)
        check_image("PPMattingV2", image, self.mean)
        check_network_size("PPMattingV2", image)
        check_finite("PPMattingV2", image)
        height, width = image.shape[-2:]
        aux = aux or self.training
        fused = backend != "torch" and not self.training
        img = (image - self.mean) / self.mean
        if fused:
            img = img.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(img, fold_batchnorm=fused)
        dpp = self.dpp(feats[1:], fused)
        x = self.mlff32x([feats[4], dpp], feats[4].shape[-2:], fused, backend)
        x = self.mlff16x([feats[3], x, dpp], feats[3].shape[-2:], fused, backend)
        x8 = self.mlff8x([feats[2], x, dpp], feats[2].shape[-2:], fused, backend)
        x = self.mlff4x([feats[1], x8, _area(img, feats[1].shape[-2:], fused, backend)],
                        feats[1].shape[-2:], fused, backend)
        x = self.mlff2x([feats[0], x, _area(img, feats[0].shape[-2:], fused, backend)],
                        feats[0].shape[-2:], fused, backend)
        if fused:
            x = ops.resize_concat([x, img], (height, width), backend=backend)
        else:
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
            x = torch.cat([x, img], 1)
        out = {"alpha": self.matting_head_mlff2x(x, fused)}
        if aux:
            out["alpha_8x"] = self.matting_head_mlff8x(x8, fused)
        return out

    def predict(self, image, backend=None, max_short=None):
        """PaddleSeg's inference recipe (the config's val transforms, predict's reverse_transform):
        image (float [B, 3, H, W] in [0, 1], any size) through LimitShort(max_short) (short side
        brought down to max_short when longer) and ResizeToIntMult(32) (sides floored to multiples
        of 32), each a cv2.resize INTER_LINEAR of the 8-bit image
        (fastmatte.models.paddleseg_transforms), matted, and the alpha taken back through the
        same sizes bilinearly: [B, 1, H, W]. max_short None takes the model's (512 by default).
        Gradients follow the caller's grad mode."""
        check_image("PPMattingV2", image, self.mean)
        max_short = self.max_short if max_short is None else max_short
        return transforms.limit_short_predict(self, image, max_short, backend, "PPMattingV2")


def _area(img, size, fused, backend):
    """The official F.interpolate(mode="area") of the normalized image (adaptive average pooling);
    fused, fastmatte.ops.area_resize, the same in one pass."""
    if fused:
        return ops.area_resize(img, tuple(size), backend=backend)
    return F.interpolate(img, size=tuple(size), mode="area")

