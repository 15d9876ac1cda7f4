"""PaddleSeg Matting's inference transforms, as its `tools/predict.py` applies them, redone in torch
on the image's device: shared by every PaddleSeg release in the zoo (MODNet's PaddleSeg variant,
PP-Matting, PP-MattingV2).

The val transforms of those configs resize the 8-bit photo (cv2.resize, INTER_LINEAR) through a
chain of sizes (ResizeByShort or LimitShort, then ResizeToIntMult(32)), normalize, run the network,
and bring the matte back through the same sizes in reverse (bilinear F.interpolate,
align_corners=False, in float). `resize_8bit` is OpenCV's fixed-point arithmetic for 8-bit images
(11-bit weights, the rounding of its x86 vector code), checked bit for bit against cv2.resize at
many sizes; the image is taken as round(255 x), so a photo read as 8 bits and divided by 255 comes
back exactly. A resize to the size an image already has is skipped, as PaddleSeg's functional
resize leaves such an image as it is.
"""
import torch
import torch.nn.functional as F

MULTIPLE = 32


def resize_short(height: int, width: int, target: int) -> tuple:
    """PaddleSeg's resize_short: the short side becomes target, the other int(round(side * target
    / short)) (Python's rounding)."""
    scale = target / min(height, width)
    return int(round(height * scale)), int(round(width * scale))


def limit_short(height: int, width: int, max_short: int) -> tuple:
    """LimitShort(max_short): resize_short to max_short only when the short side exceeds it."""
    return resize_short(height, width, max_short) if min(height, width) > max_short else (height, width)


def int_multiple(height: int, width: int, model: str, multiple: int = MULTIPLE) -> tuple:
    """ResizeToIntMult(multiple): both sides floored to a multiple; a side that would be 0 is an
    error naming `model` (the image is too small for its network)."""
    size = (height - height % multiple, width - width % multiple)
    if min(size) == 0:
        raise ValueError(f"{model}.predict: the official recipe makes a {size[0]}x{size[1]} network input "
                         f"of this image; its sides must reach {multiple}")
    return size


def limit_short_sizes(height: int, width: int, max_short: int, model: str) -> tuple:
    """(LimitShort(max_short)'s size, ResizeToIntMult(32)'s size): the val transforms of
    PaddleSeg's PP-Matting and PP-MattingV2 configs for a height x width photo."""
    limited = limit_short(height, width, max_short)
    return limited, int_multiple(*limited, model)


def check_max_short(model: str, max_short) -> int:
    """max_short (LimitShort's bound) as given, or ValueError naming `model`."""
    if isinstance(max_short, bool) or not isinstance(max_short, int) or max_short < MULTIPLE:
        raise ValueError(f"{model}: max_short must be an int >= {MULTIPLE}, got {max_short!r}")
    return max_short


def limit_short_predict(network, image: torch.Tensor, max_short: int, backend, model: str) -> torch.Tensor:
    """PaddleSeg's inference of a PP-Matting-style release: image (float [B, 3, H, W] in [0, 1],
    any size) through limit_short_sizes' resizes (8-bit, cv2-exact), network(x, backend=backend)
    ["alpha"], and the alpha taken back through the same sizes: [B, 1, H, W]."""
    sizes = limit_short_sizes(*image.shape[-2:], check_max_short(model, max_short), model)
    alpha = network(network_input(image, sizes), backend=backend)["alpha"]
    return restore(alpha, sizes, image.shape[-2:])


def network_input(image: torch.Tensor, sizes) -> torch.Tensor:
    """image (float [B, 3, H, W] in [0, 1]) resized through `sizes` in order, each step a
    cv2.resize INTER_LINEAR of the 8-bit image (skipped when the size does not change)."""
    for size in sizes:
        if tuple(size) != tuple(image.shape[-2:]):
            image = resize_8bit(image, size)
    return image


def restore(alpha: torch.Tensor, sizes, size) -> torch.Tensor:
    """PaddleSeg's reverse_transform: alpha at the network's size taken back through `sizes` (the
    forward chain, without its last entry, which is the network's size) and then to `size`,
    bilinear, skipping steps that change nothing."""
    for target in [*reversed(tuple(sizes)[:-1]), tuple(size)]:
        if tuple(target) != tuple(alpha.shape[-2:]):
            alpha = F.interpolate(alpha, size=tuple(target), mode="bilinear", align_corners=False)
    return alpha


def resize_8bit(image: torch.Tensor, size) -> torch.Tensor:
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
