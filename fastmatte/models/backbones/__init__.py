"""Backbones of the zoo's models, in the package (no timm or torchvision): Swin (swin.py,
swin_blocks.py) and the loader of ImageNet Swin weights (swin_weights.py)."""
from fastmatte.models.backbones.swin import SwinTransformer
from fastmatte.models.backbones.swin_weights import BackboneLoadReport, load_backbone_weights

__all__ = ["BackboneLoadReport", "SwinTransformer", "load_backbone_weights"]
