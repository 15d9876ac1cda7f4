"""The DIM MATLAB evaluation code (compute_sad_loss.m, compute_mse_loss.m,
compute_gradient_loss.m with gaussgradient.m, compute_connectivity_error.m) written again in
NumPy from its definitions, as the tests' independent oracle: explicit tap loops instead of a
convolution routine, a breadth-first labelling in MATLAB's column-major scan order instead of a
union-find or scipy. Nothing here is shared with fastmatte. Inputs are 2-D arrays; uint8 means
0..255, float 0..1; a trimap counts its pixels equal to 128 (None: every pixel).
"""
import math
from collections import deque

import numpy as np


def to_unit(a, dtype):
    a = np.asarray(a)
    return a.astype(dtype) / dtype(255) if a.dtype == np.uint8 else a.astype(dtype)


def counted(trimap, shape):
    return np.ones(shape, bool) if trimap is None else np.asarray(trimap) == 128


def sad(pred, gt, trimap=None):
    diff = np.abs(to_unit(pred, np.float64) - to_unit(gt, np.float64))
    return diff[counted(trimap, diff.shape)].sum() / 1000


def mse(pred, gt, trimap=None):
    diff = to_unit(pred, np.float64) - to_unit(gt, np.float64)
    return (diff ** 2)[counted(trimap, diff.shape)].mean()


def mad(pred, gt, trimap=None):
    diff = np.abs(to_unit(pred, np.float64) - to_unit(gt, np.float64))
    return diff[counted(trimap, diff.shape)].mean()


def mat2gray(a):
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else a


def gaussgradient(image, sigma=1.4):
    """MATLAB's gaussgradient: imfilter(IM, hx, 'replicate', 'conv') and likewise with hy = hx'."""
    gauss = lambda x: math.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))  # noqa: E731
    dgauss = lambda x: -x * gauss(x) / sigma ** 2  # noqa: E731
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    size = 2 * half + 1
    hx = np.array([[gauss(i - half) * dgauss(j - half) for j in range(size)] for i in range(size)])
    hx /= math.sqrt((hx * hx).sum())
    hy = hx.T
    H, W = image.shape
    padded = np.pad(image, half, mode="edge")
    gx, gy = np.zeros((H, W)), np.zeros((H, W))
    for i in range(size):  # out(y, x) = sum h(i, j) * IM(y - (i - half), x - (j - half))
        for j in range(size):
            window = padded[2 * half - i:2 * half - i + H, 2 * half - j:2 * half - j + W]
            gx += hx[i, j] * window
            gy += hy[i, j] * window
    return gx, gy


def grad(pred, gt, trimap=None):
    amplitudes = []
    for a in (pred, gt):
        gx, gy = gaussgradient(mat2gray(to_unit(a, np.float64)))
        amplitudes.append(np.sqrt(gx ** 2 + gy ** 2))
    error = (amplitudes[0] - amplitudes[1]) ** 2
    return error[counted(trimap, error.shape)].sum() / 1000


def largest_component(mask):
    """bwconncomp(mask, 4) + the first of the largest: components are found scanning in
    column-major order, so equal sizes resolve to the one whose first pixel comes first."""
    H, W = mask.shape
    label = np.zeros((H, W), int)
    sizes = []
    for x in range(W):
        for y in range(H):
            if not mask[y, x] or label[y, x]:
                continue
            sizes.append(0)
            label[y, x] = len(sizes)
            queue = deque([(y, x)])
            while queue:
                cy, cx = queue.popleft()
                sizes[-1] += 1
                for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                    if 0 <= ny < H and 0 <= nx < W and mask[ny, nx] and not label[ny, nx]:
                        label[ny, nx] = len(sizes)
                        queue.append((ny, nx))
    if not sizes:
        return np.zeros((H, W), bool)
    best = 0
    for i, s in enumerate(sizes):
        if s > sizes[best]:
            best = i
    return label == best + 1


def conn(pred, gt, trimap=None, dtype=np.float32):
    """thresholds k/10 and theta 0.15 rounded to `dtype`, the math in `dtype`, the sum in double."""
    p, g = to_unit(pred, dtype), to_unit(gt, dtype)
    t = np.array([dtype(k) / dtype(10) for k in range(11)], dtype)
    leave = np.full(p.shape, -1)  # index of l in t; -1 while in every Omega so far
    for k in range(1, 11):
        omega = largest_component((p >= t[k]) & (g >= t[k]))
        leave[(leave == -1) & ~omega] = k - 1
    leave[leave == -1] = 10
    l_map = t[leave]
    theta = dtype(0.15)
    d_p, d_g = p - l_map, g - l_map
    phi_p = dtype(1) - d_p * (d_p >= theta).astype(dtype)
    phi_g = dtype(1) - d_g * (d_g >= theta).astype(dtype)
    return np.abs(phi_p - phi_g)[counted(trimap, p.shape)].sum(dtype=np.float64) / 1000
