"""What every loss accepts: float tensors in a working precision, and a weighted mean over a mask."""
import torch

from fastmatte.ops._checks import check_tensor, fail


def working(op, named):
    """The tensors of `named` ({name: (tensor, shape)}) in the working precision: float64 if any is
    float64, else float32 (fp16/bf16 are upcast, so the loss and its gradient are accumulated in
    float32). Each must be floating point, on the first one's device, and of exactly its shape."""
    first = next(iter(named.values()))[0]
    for name, (t, shape) in named.items():
        check_tensor(op, name, t, floating=True, device=first.device)
        if tuple(t.shape) != tuple(shape):
            fail(op, f"{name} must be {_layout(shape)}, got {list(t.shape)}")
    tensors = [t for t, _ in named.values()]
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return [t.to(dtype) for t in tensors]


def _layout(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_mask(op, mask, shape, device):
    """A mask of per-pixel weights (bool, or float >= 0) that broadcasts to `shape`."""
    if mask is None:
        return
    check_tensor(op, "mask", mask, device=device)
    if mask.dtype != torch.bool and not mask.is_floating_point():
        fail(op, f"mask must be bool or floating point (weights >= 0), got {mask.dtype}")
    try:
        broadcast = torch.broadcast_shapes(mask.shape, shape)
    except RuntimeError:
        broadcast = None
    if broadcast != torch.Size(shape):
        fail(op, f"mask must broadcast to {list(shape)} (e.g. [B, 1, H, W]), got {list(mask.shape)}")


def weighted_mean(values, mask):
    """Mean of `values` weighted by `mask` (broadcast to values' shape); the plain mean without one.
    An all-zero mask gives 0 with a zero (not NaN) gradient: the weights are normalized before
    they meet the values (the total clamped to the smallest normal number), so no 1 / total
    factor can overflow in the backward pass."""
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype).expand_as(values)
    weights = weights / weights.sum().clamp_min(torch.finfo(values.dtype).tiny)
    return (values * weights).sum()
