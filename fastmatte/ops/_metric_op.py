"""What the per-image metric ops (gradient_error, connectivity_error) share: pred and gt
[B, H, W] uint8 (0..255) or float32/float64 (0..1) and mask [B, H, W] (bool, or a uint8
trimap whose 128 pixels count) or None in, one float64 value per image out; backends "cpu"
(fastmatte._C), "triton" (a Python-defined op fastmatte::<name>_triton launching
fastmatte.kernels.<name>) and "torch" (the reference). Not differentiable."""
import importlib

import torch

from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import check_tensor, fail

MATTE_DTYPES = (torch.uint8, torch.float32, torch.float64)


def check_metric_inputs(op, pred, gt, mask):
    """pred and gt [B, H, W] uint8/float32/float64 of one dtype and device; mask [B, H, W]
    bool or uint8 (a trimap), or None. (The user-facing fastmatte.metrics functions convert
    NumPy, mixed dtypes, float trimaps and [B, 1, H, W] first.)"""
    check_tensor(op, "pred", pred, rank=3, layout="[B, H, W]")
    if pred.dtype not in MATTE_DTYPES:
        fail(op, f"pred must be uint8, float32 or float64, got {pred.dtype}")
    check_tensor(op, "gt", gt, dtype=pred.dtype, device=pred.device)
    if gt.shape != pred.shape:
        fail(op, f"gt must have pred's size {list(pred.shape)}, got {list(gt.shape)}")
    if pred.numel() >= 2 ** 31:
        fail(op, f"pred must have fewer than 2^31 pixels, got B*H*W = {pred.numel()}")
    if mask is not None:
        check_tensor(op, "mask", mask, device=pred.device)
        if mask.dtype not in (torch.bool, torch.uint8):
            fail(op, f"mask must be bool or a uint8 trimap, got {mask.dtype}")
        if mask.shape != pred.shape:
            fail(op, f"mask must have pred's size {list(pred.shape)}, got {list(mask.shape)}")


def _per_image_fake(pred, gt, mask=None):
    return pred.new_empty((pred.shape[0],), dtype=torch.float64)


class MetricOp:
    def __init__(self, name: str, reference):
        self.name = name
        self.reference = reference
        self.backends = OpBackends(name, triton=True)

        def triton_op(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            check_metric_inputs(name, pred, gt, mask)  # the op can be called directly
            out = torch.zeros(pred.shape[0], dtype=torch.float64, device=pred.device)
            if pred.numel() == 0:
                return out
            kernels = importlib.import_module(f"fastmatte.kernels.{name}")  # after TRITON_INTERPRET is set
            return getattr(kernels, f"{name}_forward")(pred, gt, mask, out)

        triton_op.__doc__ = f"fastmatte::{name} with the Triton kernels (same arguments and semantics)."
        custom = torch.library.custom_op(f"fastmatte::{name}_triton", triton_op, mutates_args=())
        custom.register_fake(_per_image_fake)
        if HAS_C:
            torch.library.register_fake(f"fastmatte::{name}", _per_image_fake)

    def __call__(self, pred, gt, mask, backend):
        check_metric_inputs(self.name, pred, gt, mask)
        args = (pred.contiguous(), gt.contiguous(), None if mask is None else mask.contiguous())
        choice = self.backends.resolve(pred.device, backend)
        if choice == "torch":
            return self.reference(*args)
        return getattr(torch.ops.fastmatte, self.name + ("_triton" if choice == "triton" else ""))(*args)
