"""PP-Matting (Chen et al., "PP-Matting: High-Accuracy Natural Image Matting", 2022) as PaddleSeg's
Matting code builds it: an HRNet backbone, the semantic context branch (scb.py) on its 1/32 map,
the high-resolution detail branch (hrdb.py) on its 1/2 and 1/4 maps guided by the SCB, and the
fusion of the 3-class semantic map with the detail map."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import ops
from fastmatte.models import paddleseg_transforms as transforms
from fastmatte.models.backbones.hrnet import hrnet_w18, hrnet_w48
from fastmatte.models.image_check import check_finite, check_image, check_network_size
from fastmatte.models.ppmatting.hrdb import HRDB
from fastmatte.models.ppmatting.scb import SCB, STAGE_OUT, resize
from fastmatte.ops._backend import check_backend

BACKBONES = {"hrnet_w18": hrnet_w18, "hrnet_w48": hrnet_w48}
MAX_SHORT = 512  # LimitShort of the human_512 configs; human_1024: 1024, hrnet_w48-distinctions: 1536
FOREGROUND, TRANSITION = 0, 1  # the semantic classes (2 is the background)


def official_fusion(logits, detail):
    """The official fusion, in its order: k = argmax(softmax(logits)) (first maximum on ties);
    alpha = detail * [k == 1] + [k == 0]. Differentiable in detail."""
    index = torch.argmax(F.softmax(logits, dim=1), dim=1, keepdim=True)
    return detail * (index == TRANSITION).to(detail.dtype) + (index == FOREGROUND).to(detail.dtype)


class PPMatting(nn.Module):
    """PP-Matting with an HRNet backbone, as PaddleSeg releases it.

    backbone: "hrnet_w18" (the human_512 / human_1024 releases) or "hrnet_w48" (distinctions);
      load_model picks it from the checkpoint's shapes.
    max_short: predict's default LimitShort: 512 for human_512 (the default), 1024 for
      human_1024, 1536 for hrnet_w48-distinctions (the released configs' val transforms); e.g.
      load_model("ppmatting", weights=..., max_short=1024). predict(max_short=...) overrides it.

    forward(image, aux=False, backend=None):
      image: float [B, 3, H, W] RGB in [0, 1], H and W multiples of 32 (predict resizes any image
        as the official tool does), finite (checked on the CPU), in the model's dtype and device;
        normalized inside to [-1, 1] ((x - 0.5) / 0.5) as the official transforms do.
      aux: also return "semantic" and "detail"; always in training mode.
      backend: in eval mode, None = fastmatte's inference path (channels-last convolutions,
        every BatchNorm folded, every resize-and-concatenate one fastmatte.ops.resize_concat, the
        gates fastmatte.ops.gated_conv, the fusion fastmatte.ops.trimap_fusion; a backend name
        is passed to those ops); "torch" = the eager twin, the same layers as plain PyTorch
        modules in the official order (softmax, argmax and the masks for the fusion). Training
        mode runs the eager twin (batch statistics).
    Returns a dict: "alpha" [B, 1, H, W] (1 where the semantic class is foreground, 0 where it is
    background, the detail in the transition band); with aux also "semantic", the 3-class logits
    [B, 3, H, W] before the softmax (0 foreground, 1 transition, 2 background; the official
    training forward returns their softmax, F.softmax(semantic, 1)) and "detail" [B, 1, H, W],
    the sigmoid of the detail head. alpha is differentiable in detail only, as the official
    training fusion is (the argmax gives the semantic head no gradient).
    """

    def __init__(self, backbone: str = "hrnet_w18", max_short: int = MAX_SHORT):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"PPMatting: backbone must be one of {', '.join(map(repr, BACKBONES))}, "
                             f"got {backbone!r}")
        self.backbone_name = backbone
        self.max_short = transforms.check_max_short("PPMatting", max_short)
        self.backbone = BACKBONES[backbone]()
        channels = self.backbone.feat_channels
        self.scb = SCB(channels[-1])
        self.hrdb = HRDB(channels[0] + channels[1], STAGE_OUT)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5), persistent=False)

    def forward(self, image, aux: bool = False, backend=None):
        check_backend("PPMatting", backend)
        check_image("PPMatting", image, self.mean)
        check_network_size("PPMatting", image)
        check_finite("PPMatting", image)
        size = tuple(image.shape[-2:])
        aux = aux or self.training
        fused = backend != "torch" and not self.training
        x = (image - self.mean) / self.mean
        if fused:
            # channels-last: oneDNN's NHWC convolutions are much faster on these wide maps.
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.backbone(x, fold_batchnorm=fused)
        scb_outputs = self.scb(features[-1], fused, backend)
        logits = scb_outputs[-1]
        if fused:
            hrdb_input = ops.resize_concat(features[:2], size, backend=backend)
        else:
            hrdb_input = torch.cat([resize(f, size) for f in features[:2]], 1)
        detail = torch.sigmoid(self.hrdb(hrdb_input, scb_outputs, fused, backend))
        if fused:
            alpha = ops.trimap_fusion(logits, detail, FOREGROUND, TRANSITION, backend=backend)
        else:
            alpha = official_fusion(logits, detail)
        return {"alpha": alpha, "semantic": logits, "detail": detail} if aux else {"alpha": alpha}

    def predict(self, image, backend=None, max_short=None):
        """PaddleSeg's inference recipe (the configs' val transforms and predict's
        reverse_transform): image (float [B, 3, H, W] in [0, 1], any size) resized as an 8-bit
        photo by LimitShort(max_short; None: the model's max_short) and ResizeToIntMult(32)
        (cv2 INTER_LINEAR, bit for bit: fastmatte.models.paddleseg_transforms), matted, and the
        alpha taken back through those sizes (bilinear): [B, 1, H, W]. Gradients follow the
        caller's grad mode."""
        check_image("PPMatting", image, self.mean)
        max_short = self.max_short if max_short is None else max_short
        return transforms.limit_short_predict(self, image, max_short, backend, "PPMatting")
