"""E2E-HIM's released checkpoint: swintiny.ckpt, a flat state dict (no wrapper, no prefix) whose
names fastmatte's model keeps."""
from fastmatte.models.registry import Conversion

MARK = "globalfc2.layers.2.weight"
UNUSED = ("conv1.", "conv2.")  # built by the authors' model but never used in its forward


def convert_official(state_dict: dict) -> Conversion:
    """E2E-HIM weights from the authors' swintiny.ckpt (torch.load of a flat name -> tensor dict,
    which eval_swintiny.py loads with strict=False) or from fastmatte's own E2EHIM state dict.
    Dropped, and reported: the Swin relative_position_index buffers (fixed index tables, computed
    by the model) and the unused conv1.* / conv2.*. Everything else passes through unchanged, so
    that load_model's strict load names any mismatch (which the official strict=False hides)."""
    dropped = tuple(k for k in state_dict if k.endswith("relative_position_index") or k.startswith(UNUSED))
    kept = {k: v for k, v in state_dict.items() if k not in set(dropped)}
    layout = "aipixel E2E-HIM swintiny.ckpt" if MARK in state_dict else "not E2E-HIM's layout"
    if MARK in state_dict and not dropped:
        layout = "fastmatte E2EHIM"
    return Conversion(kept, layout, dropped)
