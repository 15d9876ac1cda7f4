"""PP-MattingV2's released checkpoint in fastmatte's names: PaddleSeg's
ppmattingv2-stdc1-human_512.pdparams, whose names fastmatte keeps except PaddleSeg's ConvBN
sub-layers `_conv` / `_batch_norm`, here `conv` / `bn`."""
from fastmatte.models.registry import Conversion

PADDLE_MARK = "dpp.conv_mid._conv.weight"
OWN_MARK = "dpp.conv_mid.conv.weight"
PPMATTING_PARTS = ("scb.", "hrdb.")  # PP-Matting's semantic and detail branches


def convert_official(state_dict: dict) -> Conversion:
    """PP-MattingV2 weights in fastmatte's names, from one of:

    - PaddleSeg's ppmattingv2-stdc1-human_512.pdparams (read by fastmatte.models.read_state_dict:
      BatchNorm's _mean / _variance already running_mean / running_var): every "._conv." becomes
      ".conv." and every "._batch_norm." ".bn."; nothing is dropped (the training-only
      matting_head_mlff8x is part of the model). BatchNorm's num_batches_tracked, which Paddle has
      not, keeps the model's value.
    - fastmatte's own PP-MattingV2 state dict: passed through.
    Anything else passes through unchanged, so that load_model names the file, what does not fit,
    and the zoo model it fits (a MODNet file, say); a PP-Matting file (PaddleSeg's other matting
    model, HRNet) is said to be one in the layout.
    """
    keys = set(state_dict)
    if OWN_MARK in keys:
        return Conversion(dict(state_dict), "fastmatte PP-MattingV2 state dict")
    if PADDLE_MARK in keys:
        out = {_own_name(k): v for k, v in state_dict.items()}
        return Conversion(out, "PaddleSeg PP-MattingV2 (.pdparams)")
    if all(any(k.startswith(part) for k in keys) for part in PPMATTING_PARTS):
        return Conversion(dict(state_dict), "PaddleSeg's PP-Matting (HRNet) layout, not PP-MattingV2's")
    return Conversion(dict(state_dict), "not PaddleSeg's PP-MattingV2 layout")


def _own_name(key):
    return key.replace("._conv.", ".conv.").replace("._batch_norm.", ".bn.")
