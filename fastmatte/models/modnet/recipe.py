"""MODNet's two official inference recipes: how each release's demo sizes a photo for the network
(multiples of 32) and brings the matte back to the photo's size.

ZHKKKe/MODNet (its colab demo, inference.py): a photo whose long side is under 512, or whose short
  side is over 512, is scaled so that its short side is 512 (the long side int(long / short * 512));
  any other keeps its size; both sides are then floored to a multiple of 32. The resize is an area
  resize (adaptive average pooling, F.interpolate mode "area"), and so is the way back.
PaddleSeg (modnet-mobilenetv2.yml's val transforms, predict's reverse_transform): ResizeByShort(512)
  always scales the short side to 512 (the other side int(round(side * 512 / short)), Python's
  rounding), then ResizeToIntMult(32) floors both sides to a multiple of 32, each a cv2.resize
  INTER_LINEAR of the 8-bit photo. Here each is OpenCV's fixed-point arithmetic for 8-bit images
  (11-bit weights, the rounding of its x86 vector code) redone in torch on the image's device, so
  the network gets the very pixels the official pipeline gives it (checked against cv2.resize
  at many sizes), without a trip through the host. The image is taken as round(255 x): a photo
  read as 8 bits and divided by 255 comes back exactly. The matte goes back through the same
  sizes in reverse, bilinear (align_corners=False), in float.
A resize to the size an image already has is skipped, as both demos leave such an image as it is.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F

from fastmatte import ops

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
    return _multiple(height, width)


def paddleseg_sizes(height: int, width: int) -> tuple:
    """(ResizeByShort's size, ResizeToIntMult's size) PaddleSeg's transforms give a photo."""
    scale = REFERENCE_SIDE / min(height, width)
    short = (int(round(height * scale)), int(round(width * scale)))
    return short, _multiple(*short)


def _multiple(height, width):
    size = (height - height % MULTIPLE, width - width % MULTIPLE)
    if min(size) == 0:
        raise ValueError(f"MODNet.predict: the official recipe makes a {size[0]}x{size[1]} network input of "
                         f"this image; its sides must reach {MULTIPLE}")
    return size


def _resize_8bit(image, size):
    """cv2.resize(u8, (w, h), interpolation=cv2.INTER_LINEAR) of the 8-bit image round(255 image),
    computed as OpenCV computes it on x86 (bit for bit), divided by 255 again. Like OpenCV, only
    the source rows some output row uses go through the horizontal pass."""
    x0, x1, a0, a1 = _linear_taps(image.shape[-1], size[1], image.device, clamp=True)
    y0, y1, b0, b1 = _linear_taps(image.shape[-2], size[0], image.device, clamp=False)

    def horizontal(rows):  # exact, in units of 1/2048, then OpenCV's >> 4
        u8 = torch.round(rows.float() * 255).clamp_(0, 255).to(torch.int32)
        return (u8[..., x0] * a0 + u8[..., x1] * a1) >> 4

    top, bottom = horizontal(image[..., y0, :]), horizontal(image[..., y1, :])
    out = ((b0[:, None] * top) >> 16) + ((b1[:, None] * bottom) >> 16)
    return (((out + 2) >> 2).clamp_(0, 255).float() / 255).to(image.dtype)


def _linear_taps(source: int, target: int, device, clamp: bool):
    """OpenCV's INTER_LINEAR taps along one axis: (first source index, second, their weights in
    11-bit fixed point). The position is computed in float32 and each weight rounded on its own,
    as OpenCV does; along x a position before the first or after the last pixel takes that pixel
    alone (clamp), along y the weights stay and only the indices are clipped. Made on `device`
    without a host sync (CUDA graphs capture it)."""
    position = ((torch.arange(target, dtype=torch.float64, device=device) + 0.5) * (source / target)
                - 0.5).float()
    first = torch.floor(position)
    fraction = position - first
    first = first.long()
    if clamp:
        fraction = torch.where((first < 0) | (first >= source - 1), 0.0, fraction)
    second = (first + 1).clamp(0, source - 1)
    first = first.clamp(0, source - 1)
    weights = [torch.round(w * 2048).to(torch.int32) for w in (1 - fraction, fraction)]
    return first, second, *weights


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
    for size in paddleseg_sizes(*image.shape[-2:]):
        if size != tuple(image.shape[-2:]):
            image = _resize_8bit(image, size)
    return image


def _paddleseg_restore(alpha, size, backend=None):
    short, _ = paddleseg_sizes(*size)
    for target in (short, tuple(size)):
        if target != tuple(alpha.shape[-2:]):
            alpha = F.interpolate(alpha, size=target, mode="bilinear", align_corners=False)
    return alpha


RECIPES = {"zhkkke": Recipe(_zhkkke_input, _zhkkke_restore),
           "paddleseg": Recipe(_paddleseg_input, _paddleseg_restore)}
