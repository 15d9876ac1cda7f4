"""What the per-image metric ops (gradient_error, connectivity_error) share: pred and gt
[B, H, W] float32/float64 and mask [B, H, W] bool or None in, one float64 value per image
out; backends "cpu" (fastmatte._C), "triton" (a Python-defined op fastmatte::<name>_triton
launching fastmatte.kernels.<name>) and "torch" (the reference). Not differentiable."""
import importlib

import torch

from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import check_metric_inputs


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
        torch.library.custom_op(f"fastmatte::{name}_triton", triton_op, mutates_args=()).register_fake(_per_image_fake)
        if HAS_C:
            torch.library.register_fake(f"fastmatte::{name}", _per_image_fake)

    def __call__(self, pred, gt, mask, backend):
        check_metric_inputs(self.name, pred, gt, mask)
        args = (pred.contiguous(), gt.contiguous(), None if mask is None else mask.contiguous())
        choice = self.backends.resolve(pred.device, backend)
        if choice == "torch":
            return self.reference(*args)
        return getattr(torch.ops.fastmatte, self.name + ("_triton" if choice == "triton" else ""))(*args)
