"""RVM's memory layout on the CPU: the low-resolution network runs channels-last (see RVM.forward).
Some tensors would silently bring it back to NCHW, where torch.cat falls back to NCHW whenever one
input does not look channels-last: a broadcast zero state, or a one-channel map (both NCHW- and
NHWC-contiguous); the layers after such a cat then run in NCHW, about twice as slow."""
import torch


def in_layout_of(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t channels-last when like is channels-last (or a channel slice of such a tensor), else t."""
    if like.stride(1) == 1 and like.shape[1] > 1:
        return t.contiguous(memory_format=torch.channels_last)
    return t
