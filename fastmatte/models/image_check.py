"""The image check every zoo model's forward starts with."""
import torch


def check_image(owner: str, image, like: torch.Tensor):
    """ValueError (naming `owner`, e.g. "RVM") unless image is a non-empty float [B, 3, H, W]
    tensor of like's dtype and device (like: a buffer of the model)."""
    if not torch.is_tensor(image) or image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
        got = f"{image.dtype} {list(image.shape)}" if torch.is_tensor(image) else type(image).__name__
        raise ValueError(f"{owner}: image must be a float [B, 3, H, W] tensor in [0, 1], got {got}")
    if image.shape[0] == 0 or image.shape[2] == 0 or image.shape[3] == 0:
        raise ValueError(f"{owner}: image must not be empty, got {list(image.shape)}")
    if image.device != like.device or image.dtype != like.dtype:
        raise ValueError(f"{owner}: image is {image.dtype} on {image.device} but the model is "
                         f"{like.dtype} on {like.device}; convert one of them (image.to or model.to)")


def check_network_size(owner: str, image, multiple: int = 32):
    """ValueError (naming `owner`) unless image's height and width are multiples of `multiple` (the
    network's stride); the message points to predict, which resizes any image."""
    height, width = image.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(f"{owner}: image height and width must be multiples of {multiple}, got "
                         f"{height}x{width} (predict(image) resizes any image as the official recipe does)")


def check_finite(owner: str, image):
    """ValueError (naming `owner`) if a CPU image holds NaN or infinite values. Not checked on a GPU
    (it would wait for the device every frame, and cannot run inside a CUDA graph) nor while
    torch.compile traces."""
    if image.device.type == "cpu" and not torch.compiler.is_compiling() and not bool(image.isfinite().all()):
        raise ValueError(f"{owner}: image holds NaN or infinite values")
