"""ImageNet Swin weights (microsoft/Swin-Transformer checkpoints such as
swin_tiny_patch4_window7_224.pth, or a model that stores them under "backbone.") into a
SwinTransformer backbone, including one with a larger patch than the checkpoint's."""
import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.weights import WeightsError, _listing, read_state_dict

PATCH_KERNEL = "patch_embed.proj.weight"
OUT_NORMS = ("norm0.", "norm1.", "norm2.", "norm3.")  # backbone-only: classification checkpoints lack them


class BackboneLoadReport(NamedTuple):
    """What load_backbone_weights did, in the backbone's names: `loaded` (tensors replaced),
    `missing` (backbone tensors the checkpoint lacked; they keep their values), `ignored`
    (checkpoint names not used) and `resampled` (loaded names resized to fit)."""
    loaded: list
    missing: list
    ignored: list
    resampled: list


def load_backbone_weights(backbone: nn.Module, path_or_state_dict, strict: bool = True) -> BackboneLoadReport:
    """Load Swin weights into `backbone` (a fastmatte SwinTransformer) in place.

    path_or_state_dict: a .pth/.pt/.safetensors file (read without running code, see
    fastmatte.models.read_state_dict; the official files nest the weights under "model") or a
    dict of names to tensors. If any name starts with "backbone.", that prefix is stripped and
    the other names are ignored. Always ignored: the classifier (head.*) and its final norm
    (norm.*), and the buffers *.attn_mask and *.relative_position_index, which the backbone
    computes itself for every input size.

    A patch-embedding kernel of another size (ImageNet's 4x4 into CRAMatting's 16x16) is
    resampled as CRA's authors do it: each k x k kernel is resized to p x p by nearest-neighbour
    interpolation and multiplied by (k / p)**2. Where p is a multiple of k (4 -> 16), a patch of
    constant colour then gives the same token as a constant patch did in the checkpoint's model.
    The bias is unchanged.

    strict: raise WeightsError, listing the names, when a backbone tensor other than the out
    norms norm0..norm3 (never in classification checkpoints) is missing or when the checkpoint
    holds a name that is neither a backbone tensor nor one of the ignored ones. Shape mismatches
    (other than the patch kernel's size) and a file with no backbone tensor at all always raise.
    Returns a BackboneLoadReport.
    """
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"load_backbone_weights: backbone must be a SwinTransformer module, "
                        f"got {type(backbone).__name__}")
    source = path_or_state_dict
    if isinstance(source, (str, os.PathLike)):
        state = read_state_dict(source)
    elif isinstance(source, dict) and all(isinstance(k, str) and torch.is_tensor(v)
                                          for k, v in source.items()):
        state = source
    else:
        raise WeightsError(f"load_backbone_weights: path_or_state_dict must be a file path or a dict of "
                           f"names to tensors, got {type(source).__name__}")
    ignored = []
    if any(name.startswith("backbone.") for name in state):
        ignored = [name for name in state if not name.startswith("backbone.")]
        state = {name[len("backbone."):]: v for name, v in state.items() if name.startswith("backbone.")}

    own = backbone.state_dict()
    wanted, unknown, resampled, wrong = {}, [], [], []
    for name, tensor in state.items():
        if name not in own:
            (ignored if _ignored_name(name) else unknown).append(name)
        elif name == PATCH_KERNEL and tensor.shape[2:] != own[name].shape[2:]:
            wanted[name] = _resample_patch_kernel(tensor, own[name].shape, source)
            resampled.append(name)
        elif tensor.shape != own[name].shape:
            wrong.append(f"{name} {tuple(tensor.shape)} (backbone {tuple(own[name].shape)})")
        else:
            wanted[name] = tensor
    missing = [name for name in own if name not in wanted]
    required = [name for name in missing if not name.startswith(OUT_NORMS)] if strict else []
    unexpected = unknown if strict else []
    if wrong or required or unexpected or not wanted:
        empty = "" if wanted else "no Swin backbone tensor in it. "
        raise WeightsError(f"{_label(source)} does not fit the Swin backbone: {empty}"
                           + _listing("wrong shape", wrong) + _listing("missing", required)
                           + _listing("unexpected", unexpected))
    backbone.load_state_dict(wanted, strict=False)
    return BackboneLoadReport(list(wanted), missing, ignored + unknown, resampled)


def _ignored_name(name: str) -> bool:
    return name.startswith(("head.", "norm.")) or name.endswith((".attn_mask", ".relative_position_index"))


def _resample_patch_kernel(weight, shape, source):
    """[out, in, k, k] -> `shape` [out, in, p, p]: nearest resize times (k / p)**2 (see the loader)."""
    if weight.ndim != 4 or tuple(weight.shape[:2]) != tuple(shape[:2]) or weight.shape[2] != weight.shape[3]:
        raise WeightsError(f"{_label(source)}: {PATCH_KERNEL} is {tuple(weight.shape)}; the backbone needs "
                           f"{tuple(shape[:2])} + a square kernel (embed_dim and in_chans must match)")
    old, size = weight.shape[2], shape[2]
    resized = F.interpolate(weight.double(), size=(size, size), mode="nearest") * (old / size) ** 2
    return resized.to(weight.dtype)


def _label(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "the state dict"
