"""Backbones of the zoo's models, in the package (no timm or torchvision): Swin (swin.py,
swin_blocks.py), the loader of ImageNet Swin weights (swin_weights.py), and MobileNetV3-Large in
RVM's dilated, BatchNorm-folded form (mobilenetv3.py)."""
from fastmatte.models.backbones.mobilenetv3 import MobileNetV3Large
from fastmatte.models.backbones.swin import SwinTransformer
from fastmatte.models.backbones.swin_weights import BackboneLoadReport, load_backbone_weights

__all__ = ["BackboneLoadReport", "MobileNetV3Large", "SwinTransformer", "load_backbone_weights"]
