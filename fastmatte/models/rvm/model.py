"""Robust Video Matting (Lin, Yang, Saleemi, Sengupta, WACV 2022), MobileNetV3 variant: a recurrent
video matting network that runs at a downsampled size and carries the result to the full frame
with a deep guided filter. Built to compute exactly what the released ONNX model computes."""
import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.backbones.mobilenetv3 import MobileNetV3Large
from fastmatte.models.image_check import check_image
from fastmatte.models.rvm.decoder import LRASPP, STATE_CHANNELS, RecurrentDecoder
from fastmatte.models.rvm.refiner import DeepGuidedFilterRefiner
from fastmatte.ops._backend import check_backend

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the backbone's input normalization (ImageNet weights)
IMAGENET_STD = (0.229, 0.224, 0.225)
TARGET_SIDE = 512  # the official advice: downsample so that the long side is about 512
ASPP_CHANNELS = 128
HIDDEN_CHANNELS = 16


def auto_downsample_ratio(height: int, width: int) -> float:
    """The downsample ratio RVM's authors recommend for a frame: its long side brought to about
    TARGET_SIDE (512; flooring may give 511), never upsampled: min(1, 512 / max(height, width))."""
    return min(1.0, TARGET_SIDE / max(height, width))


class RVM(nn.Module):
    """RVM with a MobileNetV3-Large backbone, in the released model's fused form (every BatchNorm
    folded into the conv before it; see fastmatte.models.backbones.mobilenetv3).

    recurrent = True: the model carries a state from frame to frame of one clip.

    forward(image, state=None, downsample_ratio=None, backend=None):
      image: float [B, 3, H, W] RGB in [0, 1], any H, W, in the model's dtype and device.
      state: None (a new clip: zeros) or the previous call's "state", (r1, r2, r3, r4), each a
        tensor that broadcasts to [B, C, h, w] (C = 16, 20, 40, 64; h, w = the downsampled size
        halved 1, 2, 3, 4 times rounding up), as the ONNX graph's state inputs do. A state made
        at another size or ratio does not fit and is refused.
      downsample_ratio: the network runs on the frame resized by this ratio, a number in (0, 1];
        None picks auto_downsample_ratio(H, W) (long side about 512, never upsampled).
      backend: None = the fastmatte ops (guided_upsample); "torch" = their eager references.
    Returns a dict: "alpha" [B, 1, H, W] and "foreground" [B, 3, H, W], both in [0, 1], and
    "state" (r1, r2, r3, r4) for the next frame, all in image's dtype.

    What runs, and where it follows the ONNX release rather than the upstream PyTorch code:
      1. Downsample: bilinear, align_corners=False, scale_factor=ratio with
         recompute_scale_factor=False (the output is floor(H * ratio) x floor(W * ratio), and
         source positions use the ratio itself), no antialias; skipped at ratio 1, where it is
         the identity. ImageNet normalization comes after it.
      2. MobileNetV3Large (features at 1/2, 1/4, 1/8, 1/16 of the downsampled frame), LRASPP
         on the 1/16 features, RecurrentDecoder (pyramid of the downsampled frame by ceil-mode
         average pooling; x2 bilinear upsampling cropped to each skip's size; four ConvGRUs) to
         16 hidden channels, project: a 1x1 conv to a foreground residual (3) and alpha (1).
      3. DeepGuidedFilterRefiner to the full size, at every ratio, 1 included (the upstream
         PyTorch code skips it at 1; the ONNX graph, whose weights these are, always runs it).
    Modules are registered in the order forward runs them: the release reader
    (fastmatte.models.rvm.release) pairs the ONNX graph's Conv nodes with them in that order.
    """

    recurrent = True

    def __init__(self):
        super().__init__()
        self.backbone = MobileNetV3Large()
        self.aspp = LRASPP(self.backbone.out_channels[-1], ASPP_CHANNELS)
        self.decoder = RecurrentDecoder((*self.backbone.out_channels[:3], ASPP_CHANNELS), HIDDEN_CHANNELS)
        self.project = nn.Conv2d(HIDDEN_CHANNELS, 4, 1)
        self.refiner = DeepGuidedFilterRefiner(HIDDEN_CHANNELS)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image, state=None, downsample_ratio=None, backend=None):
        check_backend("RVM", backend)
        check_image("RVM", image, self.mean)
        height, width = image.shape[-2:]
        ratio = auto_downsample_ratio(height, width) if downsample_ratio is None else \
            _check_ratio(downsample_ratio)
        low_size = (math.floor(height * ratio), math.floor(width * ratio))
        if min(low_size) < 1:
            raise ValueError(f"RVM: downsample_ratio {ratio} makes the {height}x{width} image "
                             f"{low_size[0]}x{low_size[1]}; choose a larger ratio")
        state = _check_state(state, image, low_size)
        low = image if ratio == 1 else F.interpolate(image, scale_factor=ratio, mode="bilinear",
                                                     align_corners=False, recompute_scale_factor=False)
        if low.device.type == "cpu":
            # The low-resolution network runs channels-last on the CPU: oneDNN's NHWC kernels are
            # much faster than its NCHW ones on these few-channel, wide maps (the decoder's last
            # block: 77 -> 37 ms at HD, ratio 0.25, one thread). Both backends do it: the eager
            # twin differs only in the fastmatte ops. The state comes back channels-last too.
            low = low.contiguous(memory_format=torch.channels_last)
        f1, f2, f3, f4 = self.backbone((low - self.mean) / self.std)
        hidden, state = self.decoder(low, (f1, f2, f3, self.aspp(f4)), state)
        foreground_residual, alpha = self.project(hidden).split([3, 1], 1)
        foreground, alpha = self.refiner(image, low, foreground_residual, alpha, hidden, backend)
        return {"alpha": alpha, "foreground": foreground, "state": state}

    def predict(self, image, backend=None):
        """The official inference recipe for one frame: alpha [B, 1, H, W] of `image` (float
        [B, 3, H, W] in [0, 1]) from a zero state at the automatic downsample ratio. Gradients
        follow the caller's grad mode (Matter calls it under torch.no_grad)."""
        return self(image, backend=backend)["alpha"]


def state_shapes(batch: int, low_size) -> tuple:
    """The shapes of (r1, r2, r3, r4) for a batch whose downsampled frame is low_size (h, w)."""
    shapes, (h, w) = [], low_size
    for channels in STATE_CHANNELS:
        h, w = -(-h // 2), -(-w // 2)
        shapes.append((batch, channels, h, w))
    return tuple(shapes)


def _check_ratio(ratio):
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1:
        raise ValueError(f"RVM: downsample_ratio must be a number in (0, 1] (or None for the automatic "
                         f"ratio), got {ratio!r}")
    return float(ratio)


def _check_state(state, image, low_size):
    """The state to start from: zeros [1, 1, 1, 1] for None, else `state` checked."""
    if state is None:
        return (image.new_zeros(1, 1, 1, 1),) * len(STATE_CHANNELS)
    shapes = state_shapes(image.shape[0], low_size)
    if not isinstance(state, (tuple, list)) or len(state) != len(shapes) or \
            not all(torch.is_tensor(s) for s in state):
        raise ValueError(f"RVM: state must be None or the 4 tensors (r1, r2, r3, r4) of the previous "
                         f"call's 'state', got {type(state).__name__}")
    for index, (tensor, shape) in enumerate(zip(state, shapes)):
        fits = tensor.ndim == 4 and all(have in (1, want) for have, want in zip(tensor.shape, shape))
        if not fits:
            raise ValueError(f"RVM: state[{index}] is {list(tensor.shape)}, which does not broadcast to "
                             f"{list(shape)}, the r{index + 1} of a {image.shape[-2]}x{image.shape[-1]} "
                             f"frame downsampled to {low_size[0]}x{low_size[1]} (a state from another size "
                             f"or ratio: start the clip again with state=None)")
        if tensor.device != image.device or tensor.dtype != image.dtype:
            raise ValueError(f"RVM: state[{index}] is {tensor.dtype} on {tensor.device}, the image "
                             f"{image.dtype} on {image.device}")
    return tuple(state)
