"""Backbones of the zoo's models, in the package (no timm or torchvision): Swin (swin.py,
swin_blocks.py), the loader of ImageNet Swin weights (swin_weights.py), MobileNetV3-Large in RVM's
dilated, BatchNorm-folded form (mobilenetv3.py) and PaddleSeg's STDC1 for PP-MattingV2 (stdc.py)."""
from fastmatte.models.backbones.mobilenetv3 import MobileNetV3Large
from fastmatte.models.backbones.stdc import STDC1
from fastmatte.models.backbones.swin import SwinTransformer
from fastmatte.models.backbones.swin_weights import BackboneLoadReport, load_backbone_weights

__all__ = ["BackboneLoadReport", "MobileNetV3Large", "STDC1", "SwinTransformer", "load_backbone_weights"]
