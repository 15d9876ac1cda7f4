"""What every metric accepts, turned into one form: [B, H, W] float mattes in the working
precision, the pixels to count, and how to give the values back.

Accepted: NumPy arrays or torch tensors (CPU or CUDA; NumPy arrays join the device of a tensor
argument); uint8 mattes mean 0..255, float mattes 0..1 (used as given, not clamped); layouts
[H, W], [B, H, W] or [B, 1, H, W]. The working precision is float64 if pred or gt is float64,
else float32 (uint8 becomes v / 255 correctly rounded, as MATLAB's single(v) / 255).

A trimap, in the same layouts, is uint8 (0 background, 128 unknown, 255 foreground: DIM counts
the pixels equal to 128), float 0..1 read as round(255 * t) (so both 0.5 and 128/255 mean
unknown), or bool (True marks the pixels to count, with no known regions).
"""
import warnings
from typing import NamedTuple

import numpy as np
import torch

from fastmatte.ops._checks import fail


class MetricInputs(NamedTuple):
    pred: torch.Tensor  # [B, H, W] float32 or float64, contiguous
    gt: torch.Tensor  # same
    region: "torch.Tensor | None"  # [B, H, W] bool, the pixels counted; None: every pixel
    batched: bool  # pred came with a batch dimension: give one value per image
    as_numpy: bool  # no argument was a tensor: give NumPy values

    def counts(self) -> torch.Tensor:
        """[B] float64 number of counted pixels per image."""
        if self.region is None:
            B, H, W = self.pred.shape
            return torch.full((B,), float(H * W), dtype=torch.float64, device=self.pred.device)
        return self.region.sum((1, 2), dtype=torch.float64)

    def masked_sum(self, error: torch.Tensor) -> torch.Tensor:
        """[B] float64 sum of a [B, H, W] error map over the counted pixels."""
        if self.region is not None:
            error = torch.where(self.region, error, 0)
        # Row sums in the working precision (pairwise, so accurate to a few ulps), then float64:
        # far faster than converting every pixel to float64.
        return error.sum(2).sum(1, dtype=torch.float64)

    def finish(self, values: torch.Tensor):
        """[B] float64 values -> a float (NumPy float64) or 0-d tensor without a batch
        dimension, else a [B] NumPy array or tensor."""
        if not self.batched:
            values = values[0]
        return values.cpu().numpy()[()] if self.as_numpy else values


def as_tensor(op, name, x):
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "buif" or x.dtype.itemsize > 8:
            fail(op, f"{name} must be uint8, float or (for a trimap) bool, got NumPy {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"fastmatte.{op}: {name} must be a NumPy array or a torch tensor, "
                    f"got {type(x).__name__}")


def as_bhw(op, name, t):
    if t.dim() == 2:
        return t[None]
    if t.dim() == 3:
        return t
    if t.dim() == 4 and t.shape[1] == 1:
        return t[:, 0]
    fail(op, f"{name} must be [H, W], [B, H, W] or [B, 1, H, W], got {list(t.shape)}")


def as_matte(op, name, t, dtype):
    if t.dtype == torch.uint8:
        return t.to(dtype).div_(255)
    if not t.is_floating_point():
        fail(op, f"{name} must be uint8 (0..255) or floating point (0..1), got {t.dtype}")
    return t.to(dtype)


def _trimap_codes(op, t):
    """uint8 codes of a uint8 or float trimap; None for a bool one."""
    if t.dtype == torch.bool:
        return None
    if t.dtype == torch.uint8:
        return t
    if not t.is_floating_point():
        fail(op, f"trimap must be uint8 (0/128/255), float (0..1) or bool, got {t.dtype}")
    # NaN reads as 0 (background) rather than an undefined integer conversion.
    return torch.floor(t.float().nan_to_num(0.0) * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def metric_inputs(op, pred, gt, trimap=None, force_known=False) -> MetricInputs:
    """Checks and converts the arguments of `op` (named in errors, e.g. "metrics.sad")."""
    raw = {"pred": pred, "gt": gt} if trimap is None else {"pred": pred, "gt": gt, "trimap": trimap}
    tensors = {name: as_tensor(op, name, x) for name, x in raw.items()}
    devices = {name: t.device for name, t in tensors.items() if isinstance(raw[name], torch.Tensor)}
    if len(set(devices.values())) > 1:
        fail(op, "the tensor arguments are on different devices: "
                 + ", ".join(f"{name} on {device}" for name, device in devices.items()))
    device = next(iter(devices.values()), torch.device("cpu"))
    batched = tensors["pred"].dim() != 2
    shaped = {name: as_bhw(op, name, t.to(device)) for name, t in tensors.items()}
    for name in shaped:
        if shaped[name].shape != shaped["pred"].shape:
            fail(op, f"{name} must have pred's size {list(tensors['pred'].shape)} (as [B, H, W]), "
                     f"got {list(tensors[name].shape)}")
    dtype = torch.float64 if torch.float64 in (shaped["pred"].dtype, shaped["gt"].dtype) else torch.float32
    p = as_matte(op, "pred", shaped["pred"], dtype)
    g = as_matte(op, "gt", shaped["gt"], dtype)
    region = None
    if trimap is not None:
        codes = _trimap_codes(op, shaped["trimap"])
        region = shaped["trimap"] if codes is None else codes == 128
        if force_known:
            if codes is None:
                fail(op, "force_known=True needs a 0/128/255 trimap, not a bool mask")
            p = torch.where(codes == 0, 0.0, torch.where(codes == 255, 1.0, p)).to(dtype)
    elif force_known:
        fail(op, "force_known=True needs a trimap")
    return MetricInputs(p.contiguous(), g.contiguous(), None if region is None else region.contiguous(),
                        batched, not devices)


def warn_if_empty(op, inputs: MetricInputs, counts: torch.Tensor):
    """Warns when an image has no pixel to count (its mean is NaN). Only where that costs no
    host synchronization (CPU data) and outside torch.compile."""
    if counts.device.type != "cpu" or torch.compiler.is_compiling():
        return
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        which = "the image" if not inputs.batched else f"image(s) {empty}"
        warnings.warn(f"fastmatte.{op}: {which} has no pixel to count (an empty unknown "
                      "region of the trimap); the value is NaN", RuntimeWarning, stacklevel=3)
