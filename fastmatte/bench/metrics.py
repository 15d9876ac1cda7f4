"""Benchmark cases of the matting metrics at HD/4K: fastmatte.metrics against a NumPy/SciPy
implementation of the same DIM definitions in the style of the common Python ports
(scipy.ndimage.convolve with the 9x9 kernel, scipy.ndimage.label at each threshold), timed
in the same run. Inputs: a uint8 portrait matte, a noisy prediction and a trimap, which reach
the Grad and Conn kernels as they are; fastmatte's times include its default value checks (on
CPU data, a histogram of the trimap)."""
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from fastmatte import metrics
from fastmatte.bench.cases import RESOLUTIONS
from fastmatte.bench.cases import OpCase
from fastmatte.reference.gradient_error import gaussgradient_kernel


def portrait_mattes(height, width, seed=0):
    """(pred, gt, trimap) uint8 [H, W]: a head-and-shoulders silhouette with a soft, hairy
    edge; the prediction blurred and noisy; the trimap's unknown band around the edge."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(-1, 1, width)[None, :] * width / height
    head = (x / 0.22) ** 2 + ((y - 0.36) / 0.28) ** 2
    body = (x / 0.48) ** 2 + ((y - 1.15) / 0.5) ** 2
    distance = (torch.minimum(head, body).sqrt() - 1) * height * 0.25  # ~ pixels outside the outline
    hair = torch.rand(height, width, generator=gen) * 0.01 * height * (y < 0.5)
    gt = (0.5 - (distance - hair) / (0.004 * height)).clamp(0, 1)
    pred = F.avg_pool2d(gt[None, None], 5, stride=1, padding=2)[0, 0]
    pred = (pred + 0.05 * torch.randn(height, width, generator=gen)).clamp(0, 1)
    unknown = F.max_pool2d(((gt > 0) & (gt < 1)).float()[None, None], 31, stride=1, padding=15)[0, 0] > 0
    trimap = torch.where(unknown, 128, torch.where(gt >= 1, 255, 0))
    to_u8 = lambda t: (t * 255).round().to(torch.uint8).numpy()  # noqa: E731
    return to_u8(pred), to_u8(gt), trimap.to(torch.uint8).numpy()


def numpy_grad(pred, gt, trimap):
    hx = gaussgradient_kernel().numpy()
    amplitudes = []
    for a in (pred, gt):
        a = a.astype(np.float64)
        a = (a - a.min()) / max(a.max() - a.min(), 1e-12)
        gx = ndimage.convolve(a, hx, mode="nearest")
        gy = ndimage.convolve(a, hx.T, mode="nearest")
        amplitudes.append(np.sqrt(gx ** 2 + gy ** 2))
    return ((amplitudes[0] - amplitudes[1]) ** 2)[trimap == 128].sum() / 1000


def numpy_conn(pred, gt, trimap):
    pred, gt = pred / 255.0, gt / 255.0
    l_map = np.full(pred.shape, -1.0)
    for k in range(1, 11):
        labels, count = ndimage.label((pred >= k / 10) & (gt >= k / 10))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        sizes[0] = 0  # the background is not a component (the bug of a popular port)
        omega = labels == np.argmax(sizes) if count else np.zeros(pred.shape, bool)
        l_map[(l_map == -1) & ~omega] = (k - 1) / 10
    l_map[l_map == -1] = 1
    d_pred, d_gt = pred - l_map, gt - l_map
    phi_pred, phi_gt = 1 - d_pred * (d_pred >= 0.15), 1 - d_gt * (d_gt >= 0.15)
    return np.abs(phi_pred - phi_gt)[trimap == 128].sum() / 1000


def numpy_sad(pred, gt, trimap):
    return np.abs(pred / 255.0 - gt / 255.0)[trimap == 128].sum() / 1000


def numpy_mse(pred, gt, trimap):
    return ((pred / 255.0 - gt / 255.0) ** 2)[trimap == 128].mean()


def metric_cases(resolution: str, device, dtype=None):
    """sad, mse, grad, conn and all four on one portrait (batch 1). fastmatte takes uint8
    tensors already on `device`; the NumPy/SciPy side ("eager" in the tables) runs on the CPU."""
    height, width = RESOLUTIONS[resolution]
    arrays = portrait_mattes(height, width)
    tensors = [torch.from_numpy(a).to(device) for a in arrays]
    ours = {"sad": metrics.sad, "mse": metrics.mse, "grad": metrics.grad_error, "conn": metrics.conn_error}
    theirs = {"sad": numpy_sad, "mse": numpy_mse, "grad": numpy_grad, "conn": numpy_conn}
    min_bytes = 3 * height * width  # three uint8 images read once
    cases = [OpCase(f"metric {name}", lambda f=f: f(*tensors), lambda f=theirs[name]: f(*arrays),
                    min_bytes, 0) for name, f in ours.items()]
    cases.append(OpCase("metric sad+mse+grad+conn", lambda: [f(*tensors) for f in ours.values()],
                        lambda: [f(*arrays) for f in theirs.values()], min_bytes, 0))
    return cases
