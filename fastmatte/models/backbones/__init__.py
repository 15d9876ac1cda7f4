"""Backbones of the zoo's models, in the package (no timm or torchvision): Swin (swin.py,
swin_blocks.py), the loader of ImageNet Swin weights (swin_weights.py), and MobileNetV3-Large in
RVM's dilated, BatchNorm-folded form (mobilenetv3.py), and PaddleSeg's Matting HRNet
(hrnet.py, PP-Matting's backbone)."""
from fastmatte.models.backbones.hrnet import HRNet, hrnet_w18, hrnet_w48, paddle_hrnet_names
from fastmatte.models.backbones.mobilenetv3 import MobileNetV3Large
from fastmatte.models.backbones.swin import SwinTransformer
from fastmatte.models.backbones.swin_weights import BackboneLoadReport, load_backbone_weights

__all__ = ["BackboneLoadReport", "HRNet", "MobileNetV3Large", "SwinTransformer", "hrnet_w18", "hrnet_w48",
           "load_backbone_weights", "paddle_hrnet_names"]
