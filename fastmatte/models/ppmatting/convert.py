"""PP-Matting's released checkpoints (PaddleSeg .pdparams) in fastmatte's names."""
from fastmatte.models.backbones.hrnet import paddle_hrnet_names
from fastmatte.models.registry import Conversion
from fastmatte.models.weights import WeightsError

PADDLE_MARK = "backbone.conv_layer1_1._conv.weight"  # PaddleSeg's Matting HRNet stem
HEAD_MARKS = ("scb.psp_module.conv_bn_relu2._conv.weight", "hrdb.detail_conv.weight")
OWN_MARK = "backbone.stem1.conv.weight"
WIDTH_KEY = "hrdb.res_list.0.short._conv.weight"  # [64, 64 + width, 1, 1]: the backbone's width
WIDTHS = {18: "hrnet_w18", 48: "hrnet_w48"}


def convert_official(state_dict: dict) -> Conversion:
    """PP-Matting weights in fastmatte's names, and the backbone they are for, from one of:

    - PaddleSeg's ppmatting-hrnet_w18-human_512 / -human_1024 / -hrnet_w48-distinctions .pdparams
      (read by fastmatte.models.read_state_dict: BatchNorm's _mean/_variance already renamed):
      backbone.* mapped by fastmatte.models.backbones.paddle_hrnet_names; the scb.* and hrdb.*
      keys are fastmatte's names already (the heads keep PaddleSeg's module names).
    - fastmatte's own PPMatting state dict: passed through.
    The backbone ("hrnet_w18" / "hrnet_w48") is read from the HRDB input width (64 + the HRNet's
    first branch width). Anything else (PP-MattingV2's STDC file, MODNet's) passes through
    unchanged, so that load_model names the file and the model it fits.
    """
    keys = set(state_dict)
    if not all(mark in keys for mark in HEAD_MARKS) or not keys & {PADDLE_MARK, OWN_MARK}:
        return Conversion(dict(state_dict), "not a PP-Matting (HRNet) layout")
    config = {}
    width = state_dict.get(WIDTH_KEY)
    if width is not None and width.dim() == 4 and width.shape[1] - 64 in WIDTHS:
        config = {"backbone": WIDTHS[width.shape[1] - 64]}
    if OWN_MARK in keys:
        return Conversion(dict(state_dict), "fastmatte PPMatting state dict", config=config)
    try:
        backbone = paddle_hrnet_names(state_dict, "backbone.")
    except KeyError as error:
        raise WeightsError(f"a PaddleSeg PP-Matting file with a backbone tensor HRNet has not: "
                           f"{error}") from None
    out = {"backbone." + k: v for k, v in backbone.items()}
    out.update((k, v) for k, v in state_dict.items() if not k.startswith("backbone."))
    return Conversion(out, "PaddleSeg PP-Matting (.pdparams)", config=config)
