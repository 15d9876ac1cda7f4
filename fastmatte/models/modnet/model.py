"""MODNet (Ke, Sun, Li, Yan, Lau, AAAI 2022): trimap-free portrait matting in three branches, as the
released code builds it (not the paper's e-ASPP, which the releases do not have). One class for both
official releases, ZHKKKe/MODNet's PyTorch model and PaddleSeg's Matting port (`variant`)."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import ops
from fastmatte.models.backbones.mobilenetv2 import MobileNetV2
from fastmatte.models.image_check import check_image
from fastmatte.models.modnet.blocks import ConvIBNormReLU, SEBlock
from fastmatte.models.modnet.recipe import RECIPES, check_variant
from fastmatte.ops._backend import check_backend

HR_CHANNELS = 32


def merge(parts, size, fused, backend):
    """The parts (maps of one batch) bilinearly resized to size (H, W), those of that size as they
    are, concatenated along channels in order: MODNet's every resize-and-concatenate. The eager
    twin resizes with F.interpolate to the size: the official code's scale factors 2, 1/2 and 1/4
    give the same source coordinates bit for bit, as sizes are multiples of 32. Fused, one
    fastmatte.ops.resize_concat writes the channels-last result in one pass, without the resized
    maps."""
    size = tuple(size)
    if fused:
        return ops.resize_concat(list(parts), size, backend=backend)
    resized = [p if tuple(p.shape[-2:]) == size else
               F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in parts]
    return resized[0] if len(resized) == 1 else torch.cat(resized, 1)


def double(x):
    """x's size (H, W) doubled."""
    return (2 * x.shape[-2], 2 * x.shape[-1])


def run(units, x, fused, backend):
    """x through a sequence of ConvIBNormReLU units (see ConvIBNormReLU.forward)."""
    for unit in units:
        x = unit(x, fused, backend)
    return x


class LRBranch(nn.Module):
    """Low-resolution branch: SE on the 1/32 features, x2 and a 5x5 conv to 1/16 (96 channels), x2
    and a 5x5 conv to lr8x (32 channels, 1/8); conv_lr (3x3 stride 2, sigmoid) gives the 1/16
    semantic map, in training or when asked (aux)."""

    def __init__(self, enc_channels, affine_instance):
        super().__init__()
        self.se_block = SEBlock(enc_channels[4])
        self.conv_lr16x = ConvIBNormReLU(enc_channels[4], enc_channels[3], 5, padding=2,
                                         affine_instance=affine_instance)
        self.conv_lr8x = ConvIBNormReLU(enc_channels[3], enc_channels[2], 5, padding=2,
                                        affine_instance=affine_instance)
        self.conv_lr = ConvIBNormReLU(enc_channels[2], 1, 3, stride=2, padding=1, ibnorm=False, relu=False)

    def forward(self, enc32x, aux, fused=False, backend=None):
        se = self.se_block(enc32x)
        lr16x = self.conv_lr16x(merge((se,), double(se), fused, backend), fused, backend)
        lr8x = self.conv_lr8x(merge((lr16x,), double(lr16x), fused, backend), fused, backend)
        semantic = torch.sigmoid(self.conv_lr(lr8x, fused, backend)) if aux else None
        return lr8x, semantic


class HRBranch(nn.Module):
    """High-resolution branch at 1/4 and 1/2 on the image and the backbone's 1/2 and 1/4 features,
    with lr8x; conv_hr (on the x2 result and the image, sigmoid) gives the full-resolution detail
    map, in training or when asked."""

    def __init__(self, hr, enc_channels, affine_instance):
        super().__init__()

        def unit(i, o, k=3, stride=1, **kw):
            return ConvIBNormReLU(i, o, k, stride, padding=k // 2, affine_instance=affine_instance, **kw)

        self.tohr_enc2x = unit(enc_channels[0], hr, 1)
        self.conv_enc2x = unit(hr + 3, hr, 3, stride=2)
        self.tohr_enc4x = unit(enc_channels[1], hr, 1)
        self.conv_enc4x = unit(2 * hr, 2 * hr)
        self.conv_hr4x = nn.Sequential(unit(3 * hr + 3, 2 * hr), unit(2 * hr, 2 * hr), unit(2 * hr, hr))
        self.conv_hr2x = nn.Sequential(unit(2 * hr, 2 * hr), unit(2 * hr, hr), unit(hr, hr), unit(hr, hr))
        self.conv_hr = nn.Sequential(unit(hr + 3, hr), unit(hr, 1, 1, ibnorm=False, relu=False))

    def forward(self, img, enc2x, enc4x, lr8x, aux, fused=False, backend=None):
        enc2x = self.tohr_enc2x(enc2x, fused, backend)
        hr4x = self.conv_enc2x(merge((img, enc2x), enc2x.shape[-2:], fused, backend), fused, backend)
        enc4x = self.tohr_enc4x(enc4x, fused, backend)
        hr4x = self.conv_enc4x(merge((hr4x, enc4x), hr4x.shape[-2:], fused, backend), fused, backend)
        hr4x = run(self.conv_hr4x, merge((hr4x, lr8x, img), hr4x.shape[-2:], fused, backend), fused, backend)
        hr2x = run(self.conv_hr2x, merge((hr4x, enc2x), enc2x.shape[-2:], fused, backend), fused, backend)
        if not aux:
            return hr2x, None
        return hr2x, torch.sigmoid(run(self.conv_hr, merge((hr2x, img), img.shape[-2:], fused, backend),
                                       fused, backend))


class FusionBranch(nn.Module):
    """Fusion branch: lr8x (x2, 5x5 conv, x2) with hr2x at 1/2, then x2 and, with the image at full
    resolution, a 3x3 conv to 16 channels and a 1x1 conv to the alpha logit."""

    def __init__(self, hr, enc_channels, affine_instance):
        super().__init__()
        self.conv_lr4x = ConvIBNormReLU(enc_channels[2], hr, 5, padding=2, affine_instance=affine_instance)
        self.conv_f2x = ConvIBNormReLU(2 * hr, hr, 3, padding=1, affine_instance=affine_instance)
        self.conv_f = nn.Sequential(
            ConvIBNormReLU(hr + 3, hr // 2, 3, padding=1, affine_instance=affine_instance),
            ConvIBNormReLU(hr // 2, 1, 1, ibnorm=False, relu=False))

    def forward(self, img, lr8x, hr2x, fused=False, backend=None):
        lr4x = self.conv_lr4x(merge((lr8x,), double(lr8x), fused, backend), fused, backend)
        f2x = self.conv_f2x(merge((lr4x, hr2x), hr2x.shape[-2:], fused, backend), fused, backend)
        return run(self.conv_f, merge((f2x, img), img.shape[-2:], fused, backend), fused, backend)


class MODNet(nn.Module):
    """MODNet with a MobileNetV2 backbone and 32 high-resolution channels, as released.

    variant: "zhkkke" (ZHKKKe/MODNet's PyTorch model, its .ckpt files) or "paddleseg" (PaddleSeg's
      modnet-mobilenetv2: the backbone's first block has a 1x1 expand conv, the InstanceNorm half of
      every IBNorm is affine, and predict follows PaddleSeg's transforms). load_model picks it
      from the checkpoint.

    forward(image, aux=False, backend=None):
      image: float [B, 3, H, W] RGB in [0, 1], H and W multiples of 32 (the branches concatenate
        maps of the five scales), in the model's dtype and device; normalized inside to [-1, 1]
        ((x - 0.5) / 0.5), as both releases do.
      aux: also return the training heads' outputs; always in training mode.
      backend: in eval mode, None = fastmatte's inference path (channels-last; the backbone's
        BatchNorms folded into its convolutions; every IBNorm + ReLU one fastmatte.ops.ibnorm,
        every resize-and-concatenate one fastmatte.ops.resize_concat; a backend name is passed to
        those ops); "torch" = the eager
        twin, the same layers as plain PyTorch modules in the order the official code runs
        them. In training mode both run the eager layers (batch statistics).
    Returns a dict: "alpha" [B, 1, H, W] in (0, 1); with aux also "semantic" [B, 1, H/16, W/16]
    (sigmoid of the low-resolution head) and "detail" [B, 1, H, W] (sigmoid of the
    high-resolution head); image's dtype.
    """

    def __init__(self, variant: str = "zhkkke"):
        super().__init__()
        self.variant = check_variant(variant)
        affine = variant == "paddleseg"
        self.backbone = MobileNetV2(expand_always=affine)
        channels = self.backbone.out_channels
        self.lr_branch = LRBranch(channels, affine)
        self.hr_branch = HRBranch(HR_CHANNELS, channels, affine)
        self.f_branch = FusionBranch(HR_CHANNELS, channels, affine)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5), persistent=False)

    def forward(self, image, aux: bool = False, backend=None):
        check_backend("MODNet", backend)
        check_image("MODNet", image, self.mean)
        height, width = image.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(f"MODNet: image height and width must be multiples of 32, got {height}x{width} "
                             f"(predict(image) resizes any image as the official demo does)")
        aux = aux or self.training
        fused = backend != "torch" and not self.training
        img = (image - self.mean) / self.mean
        if fused:
            # fastmatte's path runs channels-last: oneDNN's NHWC convolutions are several times
            # faster than its NCHW ones on these wide maps of few channels (the full-resolution
            # 35 -> 16 conv: about 4x), and every resize and concatenation keeps the layout.
            img = img.contiguous(memory_format=torch.channels_last)
        enc2x, enc4x, _, _, enc32x = self.backbone(img, fold_batchnorm=fused)
        lr8x, semantic = self.lr_branch(enc32x, aux, fused, backend)
        hr2x, detail = self.hr_branch(img, enc2x, enc4x, lr8x, aux, fused, backend)
        alpha = torch.sigmoid(self.f_branch(img, lr8x, hr2x, fused, backend))
        return {"alpha": alpha, "semantic": semantic, "detail": detail} if aux else {"alpha": alpha}

    def predict(self, image, backend=None):
        """The official inference recipe of the variant (fastmatte.models.modnet.recipe): image (float
        [B, 3, H, W] in [0, 1], any size) resized as the official demo does, matted, the alpha
        resized back: [B, 1, H, W]. Gradients follow the caller's grad mode."""
        check_image("MODNet", image, self.mean)
        recipe = RECIPES[self.variant]
        alpha = self(recipe.network_input(image, backend), backend=backend)["alpha"]
        return recipe.restore(alpha, image.shape[-2:], backend)
