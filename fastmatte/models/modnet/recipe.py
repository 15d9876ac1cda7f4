"""MODNet's two official inference recipes: how each release's demo sizes a photo for the network
(multiples of 32) and brings the matte back to the photo's size.

ZHKKKe/MODNet (its colab demo, inference.py): a photo whose long side is under 512, or whose short
  side is over 512, is scaled so that its short side is 512 (the long side int(long / short * 512));
  any other keeps its size; both sides are then floored to a multiple of 32. The resize is an area
  resize (adaptive average pooling, F.interpolate mode "area"), and so is the way back.
PaddleSeg (modnet-mobilenetv2.yml's val transforms, predict's reverse_transform): ResizeByShort(512)
  always scales the short side to 512 (the other side int(round(side * 512 / short)), Python's
  rounding), then ResizeToIntMult(32) floors both sides to a multiple of 32, each a cv2.resize
  INTER_LINEAR of the 8-bit photo, redone bit for bit in torch on the image's device
  (fastmatte.models.paddleseg_transforms, shared with PP-Matting and PP-MattingV2). The matte goes
  back through the same sizes in reverse, bilinear (align_corners=False), in float.
A resize to the size an image already has is skipped, as both demos leave such an image as it is.
"""
from typing import NamedTuple

import torch.nn.functional as F

from fastmatte import ops
from fastmatte.models import paddleseg_transforms as transforms

VARIANTS = ("zhkkke", "paddleseg")
REFERENCE_SIDE = 512
MULTIPLE = 32


def check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"MODNet: variant must be one of {', '.join(map(repr, VARIANTS))}, got {variant!r}")
    return variant


def zhkkke_size(height: int, width: int) -> tuple:
    """The network size ZHKKKe's demo picks for a height x width photo."""
    if max(height, width) < REFERENCE_SIDE or min(height, width) > REFERENCE_SIDE:
        if width >= height:
            height, width = REFERENCE_SIDE, int(width / height * REFERENCE_SIDE)
        else:
            height, width = int(height / width * REFERENCE_SIDE), REFERENCE_SIDE
    return transforms.int_multiple(height, width, "MODNet", MULTIPLE)


def paddleseg_sizes(height: int, width: int) -> tuple:
    """(ResizeByShort's size, ResizeToIntMult's size) PaddleSeg's transforms give a photo."""
    short = transforms.resize_short(height, width, REFERENCE_SIDE)
    return short, transforms.int_multiple(*short, "MODNet", MULTIPLE)


class Recipe(NamedTuple):
    network_input: callable  # (image [B, 3, H, W] in [0, 1], backend) -> the network's input
    restore: callable  # (alpha at the network's size, (H, W), backend) -> alpha [B, 1, H, W]


def _area(x, size, backend):
    """F.interpolate(x, size, mode="area"); fastmatte.ops.area_resize (the same, in one pass)
    unless backend is "torch" (the eager twin)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if backend == "torch":
        return F.interpolate(x, size=tuple(size), mode="area")
    return ops.area_resize(x, tuple(size), backend=backend)


def _zhkkke_input(image, backend=None):
    return _area(image, zhkkke_size(*image.shape[-2:]), backend)


def _zhkkke_restore(alpha, size, backend=None):
    return _area(alpha, size, backend)


def _paddleseg_input(image, backend=None):
    return transforms.network_input(image, paddleseg_sizes(*image.shape[-2:]))


def _paddleseg_restore(alpha, size, backend=None):
    return transforms.restore(alpha, paddleseg_sizes(*size), size)


RECIPES = {"zhkkke": Recipe(_zhkkke_input, _zhkkke_restore),
           "paddleseg": Recipe(_paddleseg_input, _paddleseg_restore)}
