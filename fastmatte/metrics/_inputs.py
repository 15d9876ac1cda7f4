"""What every metric accepts, checked and turned into one form: [B, H, W] mattes as the metric
ops take them (uint8 kept as it is), the trimap's codes, and how to give the values back.

Accepted: NumPy arrays or torch tensors (CPU or CUDA; NumPy arrays join the device of a tensor
argument); uint8 mattes mean 0..255, float mattes 0..1; layouts [H, W], [B, H, W] or
[B, 1, H, W] (the metrics refuse a 3-D array whose last dimension is 1, 3 or 4 as a
channels-last image), with at least one pixel. The working precision is float64 if pred or gt
is float64, else float32 (uint8 becomes v / 255 correctly rounded, as MATLAB's single(v) / 255).

A trimap, in the same layouts, is uint8 (0 background, 128 unknown, 255 foreground: DIM counts
the pixels equal to 128), float 0..1 read as round(255 * t) (so both 0.5 and 128/255 mean
unknown), or bool (True marks the pixels to count, with no known regions).

Value checks (see ``checks_values``): float mattes must lie in [0, 1] (NaN allowed) and a
trimap must hold only 0, 128 and 255, unless snapped to them first.
"""
import warnings
from typing import NamedTuple

import numpy as np
import torch

from fastmatte.ops._checks import fail

TRIMAP_CODES = (0, 128, 255)


class MetricInputError(ValueError):
    """An argument whose values the DIM convention cannot read: a trimap value other than 0,
    128, 255 (kind "trimap values"), float values that look like 0..255 data (kind "0..255
    floats") or otherwise outside 0..1 (kind "out of range"). `argument` ("pred", "gt" or
    "trimap") and `found` (what was found, without the fix) let `fastmatte eval` name the
    file and give its own option as the fix."""

    def __init__(self, op, argument, kind, found, fix):
        super().__init__(f"fastmatte.{op}: {argument} {found}; {fix}")
        self.argument, self.kind, self.found = argument, kind, found


class MetricInputs(NamedTuple):
    pred: torch.Tensor  # [B, H, W] contiguous: uint8 if pred and gt both are, else float32/float64
    gt: torch.Tensor  # same dtype
    trimap: "torch.Tensor | None"  # [B, H, W] contiguous uint8 codes (128 counted) or bool (True
    # counted); None: every pixel
    batched: bool  # pred came with a batch dimension: give one value per image
    as_numpy: bool  # no argument was a tensor: give NumPy values

    def mattes(self):
        """(pred, gt) [B, H, W] in the working precision (uint8 as float32 v / 255)."""
        dtype = torch.float32 if self.pred.dtype == torch.uint8 else self.pred.dtype
        return as_matte(self.pred, dtype), as_matte(self.gt, dtype)

    def region(self) -> "torch.Tensor | None":
        """[B, H, W] bool, the pixels counted (trimap == 128); None: every pixel."""
        if self.trimap is None or self.trimap.dtype == torch.bool:
            return self.trimap
        return self.trimap == 128

    def finish(self, values: torch.Tensor):
        """[B] float64 values -> a float (NumPy float64) or 0-d tensor without a batch
        dimension, else a [B] NumPy array or tensor."""
        if not self.batched:
            values = values[0]
        return values.cpu().numpy()[()] if self.as_numpy else values


def counts(pred: torch.Tensor, region) -> torch.Tensor:
    """[B] float64 number of counted pixels per image of pred [B, H, W] (region: see MetricInputs)."""
    if region is None:
        B, H, W = pred.shape
        return torch.full((B,), float(H * W), dtype=torch.float64, device=pred.device)
    return region.sum((1, 2), dtype=torch.float64)


def masked_sum(error: torch.Tensor, region) -> torch.Tensor:
    """[B] float64 sum of a [B, H, W] error map over the counted pixels."""
    if region is not None:
        error = torch.where(region, error, 0)
    # Row sums in the working precision (pairwise, so accurate to a few ulps), then float64:
    # far faster than converting every pixel to float64.
    return error.sum(2).sum(1, dtype=torch.float64)


def as_tensor(op, name, x):
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "buif" or x.dtype.itemsize > 8:
            fail(op, f"{name} must be uint8, float or (for a trimap) bool, got NumPy {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"fastmatte.{op}: {name} must be a NumPy array or a torch tensor, "
                    f"got {type(x).__name__}")


def refuse_channels_last(op, name, t):
    """A 3-D argument whose last dimension is 1, 3 or 4 is taken for an [H, W, C] image (a
    colour image where a matte is expected), not for a batch of images that narrow."""
    if t.dim() == 3 and t.shape[2] in (1, 3, 4):
        fail(op, f"{name} is {list(t.shape)}: an image with {t.shape[2]} channel(s) last where a matte is "
                 f"expected; pass one channel as [H, W] (a gray matte saved as RGB: {name}[..., 0]), "
                 f"or a batch of images {t.shape[2]} pixel(s) wide as [B, 1, H, W]")


def as_bhw(op, name, t):
    """t as [B, H, W] (a view)."""
    if t.dim() == 2:
        return t[None]
    if t.dim() == 3:
        return t
    if t.dim() == 4 and t.shape[1] == 1:
        return t[:, 0]
    fail(op, f"{name} must be [H, W], [B, H, W] or [B, 1, H, W], got {list(t.shape)}")


def as_matte(t, dtype):
    """A checked uint8 or float matte in the float dtype (uint8: v / 255 in float32 first)."""
    if t.dtype == torch.uint8:
        return t.to(torch.float32).div_(255).to(dtype)
    return t.to(dtype)


def check_matte_dtype(op, name, t):
    if t.dtype != torch.uint8 and not t.is_floating_point():
        fail(op, f"{name} must be uint8 (0..255) or floating point (0..1), got {t.dtype}")


def checks_values(check, device: torch.device) -> bool:
    """Whether the metrics check their arguments' values. check=None (the default): where that
    costs no host synchronization, i.e. for NumPy arrays and CPU tensors outside torch.compile;
    True: always (one host synchronization per call for CUDA tensors); False: never."""
    if check is None:
        return device.type == "cpu" and not torch.compiler.is_compiling()
    return bool(check)


def may_leave_unit_range(t: torch.Tensor) -> torch.Tensor:
    """0-d bool tensor, False when a float tensor surely lies in [0, 1]: its minimum and
    maximum, in one fast pass (a NaN propagates into them: range_error then looks past it)."""
    if t.numel() == 0:
        return torch.zeros((), dtype=torch.bool, device=t.device)
    lo, hi = torch.aminmax(t)
    return (lo < 0) | (hi > 1) | lo.isnan()


def range_error(op, name, t) -> "MetricInputError | None":
    """The error for a float tensor holding a value outside [0, 1] (NaN does not count), or
    None if it holds none."""
    finite = t[~t.isnan()]
    if finite.numel() == 0:
        return None
    lo, hi = (float(v) for v in torch.aminmax(finite))
    if 0 <= lo and hi <= 1:
        return None
    found = f"holds float values from {lo:.6g} to {hi:.6g}, outside 0..1"
    if lo >= 0 and hi <= 255 and hi > 1.5:
        return MetricInputError(op, name, "0..255 floats", found + ": it looks like 0..255 data",
                                "divide it by 255 or pass it as uint8")
    return MetricInputError(op, name, "out of range", found, "float mattes are 0..1: clip it to [0, 1]")


def check_unit_range(op, name, t):
    """Raises range_error's error if a float tensor holds a value outside [0, 1] (NaN does not
    count); a host synchronization."""
    error = range_error(op, name, t) if bool(may_leave_unit_range(t)) else None
    if error is not None:
        raise error


def trimap_codes(op, t):
    """The uint8 codes of a uint8 or float trimap (float t reads as round(255 t), NaN as 0);
    a bool trimap as it is."""
    if t.dtype in (torch.bool, torch.uint8):
        return t
    if not t.is_floating_point():
        fail(op, f"trimap must be uint8 (0/128/255), float (0..1) or bool, got {t.dtype}")
    return torch.floor(t.float().nan_to_num(0.0) * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def trimap_values_error(op, histogram: torch.Tensor, from_float: bool) -> MetricInputError:
    """The error for a trimap with values other than 0, 128, 255, from its codes' histogram
    [256]: the values found and how many pixels hold each, most frequent first."""
    histogram = histogram.cpu().clone()
    histogram[list(TRIMAP_CODES)] = 0
    values = histogram.nonzero().flatten().tolist()
    values.sort(key=lambda v: -int(histogram[v]))
    listed = ", ".join(f"{v} ({int(histogram[v])} pixel{'s' if histogram[v] > 1 else ''})"
                       for v in values[:6])
    more = f" and {len(values) - 6} other values" if len(values) > 6 else ""
    read = " (read as round(255 * t))" if from_float else ""
    return MetricInputError(op, "trimap", "trimap values",
                            f"holds values other than 0, 128, 255{read}: {listed}{more}",
                            "pass snap_trimap=True to snap every value to the nearest of them "
                            "(e.g. for a JPEG trimap), or fix the trimap")


def snapped(codes: torch.Tensor):
    """(uint8 codes snapped to the nearest of 0, 128, 255, 0-d int64 tensor: how many pixels
    changed): 0..63 -> 0, 64..191 -> 128 (64 is as far from 0 as from 128: unknown wins),
    192..255 -> 255."""
    out = torch.where(codes < 64, 0, torch.where(codes < 192, 128, 255)).to(torch.uint8)
    return out, (out != codes).sum()


def snap_trimap(trimap):
    """A trimap with every value snapped to the nearest of 0, 128 and 255, for trimaps stored
    with other values near them (a JPEG trimap, an unknown region saved as 127): 0..63 -> 0,
    64..191 -> 128, 192..255 -> 255 (a float trimap is read as round(255 * t) first).

    Args:
        trimap: NumPy array or torch tensor, uint8 (0..255) or float (0..1), any shape.

    Returns:
        (snapped trimap, uint8, same container and device; how many pixels changed, an int:
        for a CUDA tensor that count costs a host synchronization).
    """
    op = "metrics.snap_trimap"
    t = as_tensor(op, "trimap", trimap)
    if t.dtype == torch.bool:
        fail(op, "trimap must be uint8 or float, got a bool mask (nothing to snap)")
    if t.is_floating_point():
        check_unit_range(op, "trimap", t)
    out, changed = snapped(trimap_codes(op, t))
    return (out.numpy() if isinstance(trimap, np.ndarray) else out), int(changed)


def metric_inputs(op, pred, gt, trimap=None, force_known=False, snap_trimap=False,
                  check=None) -> MetricInputs:
    """Checks and converts the arguments of `op` (named in errors, e.g. "metrics.sad"); see
    the module docstring and ``fastmatte.metrics`` for what is accepted."""
    raw = {"pred": pred, "gt": gt} if trimap is None else {"pred": pred, "gt": gt, "trimap": trimap}
    tensors = {name: as_tensor(op, name, x) for name, x in raw.items()}
    devices = {name: t.device for name, t in tensors.items() if isinstance(raw[name], torch.Tensor)}
    if len(set(devices.values())) > 1:
        fail(op, "the tensor arguments are on different devices: "
                 + ", ".join(f"{name} on {device}" for name, device in devices.items()))
    device = next(iter(devices.values()), torch.device("cpu"))
    batched = tensors["pred"].dim() != 2
    for name, t in tensors.items():
        refuse_channels_last(op, name, t)
    shaped = {name: as_bhw(op, name, t.to(device)) for name, t in tensors.items()}
    for name in shaped:
        if shaped[name].shape != shaped["pred"].shape:
            fail(op, f"{name} must have pred's size {list(tensors['pred'].shape)} (as [B, H, W]), "
                     f"got {list(tensors[name].shape)}")
    if shaped["pred"].shape[1] * shaped["pred"].shape[2] == 0:
        fail(op, f"pred has no pixels (size {list(tensors['pred'].shape)}): there is nothing to compare")
    p, g = shaped["pred"], shaped["gt"]
    check_matte_dtype(op, "pred", p)
    check_matte_dtype(op, "gt", g)
    codes = None if trimap is None else trimap_codes(op, shaped["trimap"])
    changed = None  # with snap_trimap: how many pixels the snap changed
    if snap_trimap and codes is not None:
        if codes.dtype == torch.bool:
            fail(op, "snap_trimap=True needs a 0..255 or 0..1 trimap, not a bool mask")
        codes, changed = snapped(codes)
    if checks_values(check, device):
        changed = _check_values(op, p, g, shaped.get("trimap"), codes, changed)
        if changed:
            warnings.warn(f"fastmatte.{op}: snapped {changed} trimap pixels to the nearest of 0, 128, 255",
                          RuntimeWarning, stacklevel=3)
    if force_known:
        if codes is None:
            fail(op, "force_known=True needs a trimap")
        if codes.dtype == torch.bool:
            fail(op, "force_known=True needs a 0/128/255 trimap, not a bool mask")
        one = 255 if p.dtype == torch.uint8 else 1.0
        p = torch.where(codes == 0, 0, torch.where(codes == 255, one, p)).to(p.dtype)
    if not p.dtype == g.dtype == torch.uint8:  # the ops take one dtype: uint8, or the working float
        dtype = torch.float64 if torch.float64 in (p.dtype, g.dtype) else torch.float32
        p, g = as_matte(p, dtype), as_matte(g, dtype)
    return MetricInputs(p.contiguous(), g.contiguous(), None if codes is None else codes.contiguous(),
                        batched, not devices)


def _check_values(op, pred, gt, trimap, codes, changed=None) -> int:
    """Raises MetricInputError for the first that fails of: pred, gt and trimap when float
    (values outside [0, 1]), and the trimap's uint8 codes (a value other than 0, 128, 255),
    unless they were snapped: then returns `changed` (the 0-d tensor of snapped) as an int.
    One pass over each (a min/max, a histogram) and one host synchronization for all of it."""
    named = (("pred", pred), ("gt", gt), ("trimap", trimap))
    tests = [(may_leave_unit_range(t), lambda name=name, t=t: range_error(op, name, t))
             for name, t in named if t is not None and t.is_floating_point()]
    if changed is None and codes is not None and codes.dtype == torch.uint8:
        histogram = torch.bincount(codes.flatten(), minlength=256)
        valid = histogram[0] + histogram[128] + histogram[255]
        from_float = trimap.is_floating_point()
        tests.append((valid < codes.numel(), lambda: trimap_values_error(op, histogram, from_float)))
    found = [test.to(torch.int64) for test, _ in tests] + ([] if changed is None else [changed])
    if not found:
        return 0
    found = torch.stack(found).tolist()
    for suspect, (_, error_of) in zip(found, tests):
        error = error_of() if suspect else None
        if error is not None:
            raise error
    return 0 if changed is None else found[-1]


def warn_if_empty(op, batched: bool, counts: torch.Tensor):
    """Warns when an image has no pixel to count (its mean is NaN). Only where that costs no
    host synchronization (CPU data) and outside torch.compile."""
    if counts.device.type != "cpu" or torch.compiler.is_compiling():
        return
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        which = "the image" if not batched else f"image(s) {empty}"
        warnings.warn(f"fastmatte.{op}: {which} has no pixel to count (a trimap without unknown "
                      "pixels); the value is NaN", RuntimeWarning, stacklevel=3)
