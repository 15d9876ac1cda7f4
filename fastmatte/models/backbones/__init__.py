"""Backbones of the zoo's models, in the package (no timm or torchvision): Swin (swin.py,
swin_blocks.py), the loader of ImageNet Swin weights (swin_weights.py), MobileNetV2 as MODNet's two
releases build it (mobilenetv2.py), MobileNetV3-Large in RVM's dilated, BatchNorm-folded form
(mobilenetv3.py), PaddleSeg's Matting HRNet (hrnet.py, PP-Matting's backbone) and PaddleSeg's STDC1
(stdc.py, PP-MattingV2's)."""
from fastmatte.models.backbones.hrnet import HRNet, hrnet_w18, hrnet_w48, paddle_hrnet_names
from fastmatte.models.backbones.mobilenetv2 import MobileNetV2
from fastmatte.models.backbones.mobilenetv3 import MobileNetV3Large
from fastmatte.models.backbones.stdc import STDC1
from fastmatte.models.backbones.swin import SwinTransformer
from fastmatte.models.backbones.swin_weights import BackboneLoadReport, load_backbone_weights

__all__ = ["BackboneLoadReport", "HRNet", "MobileNetV2", "MobileNetV3Large", "STDC1", "SwinTransformer",
           "hrnet_w18", "hrnet_w48", "load_backbone_weights", "paddle_hrnet_names"]
