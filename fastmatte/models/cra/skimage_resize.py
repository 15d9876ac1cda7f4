"""skimage.transform.resize (order 1, mode "reflect", anti_aliasing when shrinking, clip) in
PyTorch, for CRA's inference recipe: its authors resize their inputs and outputs with it."""
import torch
import torch.nn.functional as F


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """x [B, C, H, W] float -> [B, C, size[0], size[1]], as skimage.transform.resize gives per image:
    a Gaussian of sigma max(0, (in/out - 1) / 2) per axis (scipy's gaussian_filter: truncate 4,
    "mirror" border) when shrinking that axis, then linear interpolation at the pixel centres
    (in = (out + 0.5) * in/out - 0.5, mirrored at the borders), clipped to each image's range."""
    out = x
    for axis, length in ((2, size[0]), (3, size[1])):
        out = _resize_axis(_antialias(out, axis, length), axis, length)
    low = x.amin((1, 2, 3), keepdim=True)
    high = x.amax((1, 2, 3), keepdim=True)
    return torch.minimum(torch.maximum(out, low), high)


def _antialias(x, axis, length):
    sigma = max(0.0, (x.shape[axis] / length - 1) / 2)
    radius = int(4.0 * sigma + 0.5)
    if radius == 0:
        return x
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(x)
    moved = x.movedim(axis, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    flat = F.pad(flat, (radius, radius), mode="reflect")  # PyTorch's reflect is scipy's mirror
    return F.conv1d(flat, kernel.view(1, 1, -1)).reshape(shape).movedim(-1, axis)


def _resize_axis(x, axis, length):
    n = x.shape[axis]
    if n == length:
        return x
    position = (torch.arange(length, dtype=torch.float64) + 0.5) * (n / length) - 0.5
    if n == 1:
        position = torch.zeros_like(position)
    period = 2 * (n - 1) if n > 1 else 1
    position = torch.remainder(position, period)  # mirror about the first and last pixel centres
    position = torch.where(position > n - 1, period - position, position)
    low = position.floor().long().clamp(max=n - 1)
    high = (low + 1).clamp(max=n - 1)
    weight = (position - low).to(x.dtype).to(x.device)
    shape = [1] * x.ndim
    shape[axis] = length
    weight = weight.view(shape)
    low, high = low.to(x.device), high.to(x.device)
    return x.index_select(axis, low) * (1 - weight) + x.index_select(axis, high) * weight

