"""Softmax focal loss with soft (probability) targets and per-class weights: cross entropy scaled by
(1 - p_t)^gamma, so confidently right pixels count little and the hard ones dominate."""
import torch

from fastmatte.losses._common import working
from fastmatte.ops._checks import check_tensor, fail


def focal_loss(logits, target, class_weights=None, gamma=2.0):
    """sum_{n,c} w_c (1 - p_t)^gamma (-y log p) / (N sum_c w_c + 1e-8), with p = softmax(logits) over
    the classes, y = target, p_t = p y + (1 - p)(1 - y), taken per pixel n and class c, and N the
    number of pixels (B times the spatial size). Every class term counts, not only the true
    class's: with a soft target each class with y > 0 adds its cross entropy, and a class with
    y = 0 still adds 0 (its -y log p is 0).

    logits: float [B, C, ...]. target: float [B, C, ...] of class probabilities (one-hot, or the
    area-downsampled one-hot of a finer map), same shape. class_weights: None (all 1) or a float
    tensor [C] of weights w_c >= 0. gamma: the focusing exponent (0 gives the weighted cross
    entropy). fp16/bf16 are upcast to float32 (float64 stays float64). Returns a 0-d tensor.
    """
    op = "losses.focal_loss"
    check_tensor(op, "logits", logits, layout="[B, C, ...]")
    if logits.dim() < 2:
        fail(op, f"logits must be [B, C, ...], got {list(logits.shape)}")
    C = logits.shape[1]
    named = {"logits": (logits, logits.shape), "target": (target, logits.shape)}
    if class_weights is not None:
        named["class_weights"] = (class_weights, (C,))
    logits, target, *given = working(op, named)
    if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or not gamma >= 0:
        fail(op, f"gamma must be a number >= 0, got {gamma!r}")
    log_p = torch.log_softmax(logits, dim=1)
    p = log_p.exp()
    p_t = p * target + (1 - p) * (1 - target)
    per_class = -target * log_p * (1 - p_t) ** gamma
    weights = given[0] if given else logits.new_ones(C)
    weights = weights.reshape(1, C, *[1] * (logits.dim() - 2))
    pixels = per_class.numel() // C
    return (per_class * weights).sum() / (pixels * weights.sum() + 1e-8)
