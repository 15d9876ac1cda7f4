"""Eager reference of gradient_error: DIM's Grad, written the way the MATLAB code reads."""
import math

import torch
import torch.nn.functional as F


def gaussgradient_kernel(dtype=torch.float64) -> torch.Tensor:
    """DIM's gaussgradient(IM, 1.4) x-kernel hx [9, 9]: hx(i, j) = gauss(i) * dgauss(j) for
    offsets i (rows), j (columns) in -4..4, divided by its L2 norm; the y-kernel is hx.T."""
    sigma = 1.4
    halfsize = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    u = torch.arange(-halfsize, halfsize + 1, dtype=torch.float64)
    gauss = torch.exp(-u ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    dgauss = -u * gauss / sigma ** 2
    hx = gauss[:, None] * dgauss[None, :]
    return (hx / hx.pow(2).sum().sqrt()).to(dtype)


def float_operands(pred: torch.Tensor, gt: torch.Tensor, mask=None):
    """The metric ops' inputs in the references' float form: uint8 mattes become float32
    v / 255 (correctly rounded), a uint8 trimap the bool mask trimap == 128; float mattes and
    bool masks are returned as they are."""
    if pred.dtype == torch.uint8:
        pred, gt = pred.to(torch.float32) / 255, gt.to(torch.float32) / 255
    if mask is not None and mask.dtype == torch.uint8:
        mask = mask == 128
    return pred, gt, mask


def gradient_error(pred: torch.Tensor, gt: torch.Tensor, mask=None) -> torch.Tensor:
    """pred, gt [B, H, W] uint8 (0..255) or float32/float64 (0..1); mask [B, H, W] bool, uint8
    trimap (128 counted) or None (every pixel). Returns [B] float64: sum over the counted pixels
    of (|grad mat2gray(pred)| - |grad mat2gray(gt)|)^2 / 1000, NaN for an image holding a NaN."""
    pred, gt, mask = float_operands(pred, gt, mask)
    B, H, W = pred.shape
    if pred.numel() == 0:
        return torch.zeros(B, dtype=torch.float64, device=pred.device)
    mattes = torch.stack([pred, gt])  # [2, B, H, W]
    lo = mattes.flatten(2).amin(2)[..., None, None]
    hi = mattes.flatten(2).amax(2)[..., None, None]
    stretched = torch.where(hi > lo, (mattes - lo) / (hi - lo), mattes)  # mat2gray
    hx = gaussgradient_kernel(pred.dtype)
    # imfilter(..., 'conv') convolves: conv2d correlates, so the kernels are flipped.
    weight = torch.stack([hx, hx.T]).flip(-2, -1)[:, None]  # [2 (x, y), 1, 9, 9]
    r = hx.shape[0] // 2
    padded = F.pad(stretched.reshape(2 * B, 1, H, W), (r, r, r, r), mode="replicate")
    gradients = F.conv2d(padded, weight)  # [2B, 2, H, W]
    amplitude = gradients.pow(2).sum(1).sqrt().view(2, B, H, W)
    error = (amplitude[0] - amplitude[1]) ** 2
    if mask is not None:
        error = torch.where(mask, error, 0)
    value = error.sum((1, 2), dtype=torch.float64) / 1000
    has_nan = (lo.isnan() | hi.isnan()).view(2, B).any(0)
    return torch.where(has_nan, float("nan"), value)
