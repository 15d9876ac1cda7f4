"""PP-MattingV2's released checkpoint: PaddleSeg's ppmattingv2-stdc1-human_512.pdparams, whose names
fastmatte's model keeps as they are."""
from fastmatte.models.registry import Conversion

MARK = "dpp.conv_mid._conv.weight"
PPMATTING_PARTS = ("scb.", "hrdb.")  # PP-Matting's semantic and detail branches


def convert_official(state_dict: dict) -> Conversion:
    """PP-MattingV2 weights from PaddleSeg's ppmattingv2-stdc1-human_512.pdparams (read by
    fastmatte.models.read_state_dict: BatchNorm's _mean / _variance already running_mean /
    running_var) or from fastmatte's own PP-MattingV2 state dict: the same names, passed through;
    nothing is dropped (the training-only matting_head_mlff8x is part of the model). BatchNorm's
    num_batches_tracked, which Paddle has not, keeps the model's value.
    Anything else passes through unchanged too, so that load_model names the file, what does not
    fit, and the zoo model it fits (a MODNet file, say); a PP-Matting file (PaddleSeg's other
    matting model, HRNet) is said to be one in the layout.
    """
    keys = set(state_dict)
    if MARK in keys:
        return Conversion(dict(state_dict), "PaddleSeg PP-MattingV2 (.pdparams names)")
    if all(any(k.startswith(part) for k in keys) for part in PPMATTING_PARTS):
        return Conversion(dict(state_dict), "PaddleSeg's PP-Matting (HRNet) layout, not PP-MattingV2's")
    return Conversion(dict(state_dict), "not PaddleSeg's PP-MattingV2 layout")
