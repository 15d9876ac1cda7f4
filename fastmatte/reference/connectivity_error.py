"""Eager reference of connectivity_error: DIM's Conn, threshold by threshold as the MATLAB code
does it, with the connected components from scipy.ndimage.label."""
import numpy as np
import torch

from fastmatte.reference.gradient_error import float_operands


def largest_component(mask: torch.Tensor) -> torch.Tensor:
    """The largest 4-connected component of a 2-D bool mask (all False if it has none). On a
    tie, the one whose first pixel comes first in column-major order, as MATLAB's bwconncomp
    numbers its components: labelling the transposed mask numbers them in that order."""
    from scipy import ndimage

    labels, count = ndimage.label(mask.T.cpu().numpy())  # 4-connectivity by default
    if count == 0:
        return torch.zeros_like(mask)
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels.T == 1 + int(np.argmax(sizes))  # argmax: the first of equal maxima
    return torch.from_numpy(np.ascontiguousarray(largest)).to(mask.device)


def connectivity_error(pred: torch.Tensor, gt: torch.Tensor, mask=None) -> torch.Tensor:
    """pred, gt [B, H, W] uint8 (0..255) or float32/float64 (0..1); mask [B, H, W] bool, uint8
    trimap (128 counted) or None (every pixel). Returns [B] float64: DIM's Conn with thresholds
    k/10 and theta = 0.15 in the working dtype (float32 for uint8, else pred's)."""
    pred, gt, mask = float_operands(pred, gt, mask)
    dtype = pred.dtype
    thresholds = torch.arange(11, dtype=dtype, device=pred.device) / 10
    theta = torch.tensor(0.15, dtype=dtype, device=pred.device)
    values = []
    for b in range(pred.shape[0]):
        p, g = pred[b], gt[b]
        l_map = torch.ones_like(p)  # pixels in every Omega_k keep t_10 = 1
        assigned = torch.zeros_like(p, dtype=torch.bool)
        for k in range(1, 11):
            omega = largest_component((p >= thresholds[k]) & (g >= thresholds[k]))
            leaves = ~assigned & ~omega
            l_map = torch.where(leaves, thresholds[k - 1], l_map)
            assigned |= leaves
        d_pred, d_gt = p - l_map, g - l_map
        phi_pred = 1 - d_pred * (d_pred >= theta).to(dtype)
        phi_gt = 1 - d_gt * (d_gt >= theta).to(dtype)
        error = (phi_pred - phi_gt).abs()
        if mask is not None:
            error = torch.where(mask[b], error, 0)
        values.append(error.sum(dtype=torch.float64) / 1000)
    if not values:
        return torch.zeros(0, dtype=torch.float64, device=pred.device)
    return torch.stack(values)
