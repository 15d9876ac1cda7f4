"""MODNet's released checkpoints in fastmatte's names: ZHKKKe/MODNet's .ckpt files and PaddleSeg's
modnet-mobilenetv2.pdparams, told apart by their names."""
import functools
import re

from fastmatte.models.backbones.mobilenetv2 import SETTINGS
from fastmatte.models.registry import Conversion

ZHKKKE_BACKBONE = "backbone.model."  # ZHKKKe's backbone wrapper holds torchvision's layout in .model
ZHKKKE_ALIAS = "lr_branch.backbone.model."  # the same backbone registered again by the LR branch
ZHKKKE_MARK = "lr_branch.se_block.fc.0.weight"
PADDLE_MARK = "head.lr_branch.se_block.conv.0.weight"
PADDLE_TRAINING_ONLY = ("blurer.",)  # the loss's fixed Gaussian kernel, saved with the model
OWN_MARK = "backbone.features.0.0.weight"
PADDLE_PARTS = {"_expand_conv._conv": "0", "_expand_conv._batch_norm": "1",
                "_bottleneck_conv._conv": "3", "_bottleneck_conv._batch_norm": "4",
                "_linear_conv._conv": "6", "_linear_conv._batch_norm": "7"}


def convert_official(state_dict: dict) -> Conversion:
    """MODNet weights in fastmatte's names, and the variant they are for, from one of:

    - ZHKKKe/MODNet's released .ckpt (modnet_photographic_portrait_matting.ckpt,
      modnet_webcam_portrait_matting.ckpt): nn.DataParallel(MODNet).state_dict(), its "module."
      prefix already stripped by the reader. Its backbone appears twice, as backbone.model.* and
      as lr_branch.backbone.model.* (one module registered twice); either copy is taken (the
      first when both are there: they are one tensor), so a file with either or both loads.
      variant "zhkkke".
    - PaddleSeg's modnet-mobilenetv2.pdparams (read by fastmatte.models.read_state_dict: BatchNorm's
      _mean/_variance already renamed): backbone.convN... renamed to torchvision's layout, head.*
      unprefixed, the SE block's 1x1 convs reshaped to Linear weights, InstanceNorm's "scale"
      named "weight", and the loss's blurer kernel dropped (BatchNorm's num_batches_tracked, which
      Paddle has not, keeps the model's value). variant "paddleseg".
    - fastmatte's own MODNet state dict: passed through; the variant is "paddleseg" when its
      IBNorms have InstanceNorm weights.
    Anything else passes through unchanged, so that load_model names the file and what does not fit.
    """
    keys = set(state_dict)
    if OWN_MARK in keys:
        affine = "lr_branch.conv_lr16x.layers.1.inorm.weight" in keys
        return Conversion(dict(state_dict), "fastmatte MODNet state dict",
                          config={"variant": "paddleseg" if affine else "zhkkke"})
    if ZHKKKE_MARK in keys or any(k.startswith((ZHKKKE_BACKBONE, ZHKKKE_ALIAS)) for k in keys):
        return _convert_zhkkke(state_dict)
    if PADDLE_MARK in keys or any(k.startswith("head.") for k in keys):
        return _convert_paddleseg(state_dict)
    return Conversion(dict(state_dict), "neither ZHKKKe's nor PaddleSeg's MODNet layout")


def _convert_zhkkke(state_dict):
    out, aliases = {}, []
    for key, tensor in state_dict.items():
        if key.startswith(ZHKKKE_ALIAS):
            own = "backbone." + key[len(ZHKKKE_ALIAS):]
            aliases.append(key)
        elif key.startswith(ZHKKKE_BACKBONE):
            own = "backbone." + key[len(ZHKKKE_BACKBONE):]
        else:
            own = key
        out.setdefault(own, tensor)
    return Conversion(out, "ZHKKKe MODNet (DataParallel state dict)", tuple(aliases), {"variant": "zhkkke"})


def _convert_paddleseg(state_dict):
    out, dropped = {}, []
    for key, tensor in state_dict.items():
        if key.startswith(PADDLE_TRAINING_ONLY):
            dropped.append(key)
            continue
        own = _paddle_name(key)
        if own.startswith("lr_branch.se_block.fc.") and tensor.dim() == 4:
            tensor = tensor.flatten(1)  # a 1x1 conv's [out, in, 1, 1] is the Linear's [out, in]
        out[own] = tensor
    return Conversion(out, "PaddleSeg MODNet (.pdparams)", tuple(dropped), {"variant": "paddleseg"})


def _paddle_name(key):
    if key.startswith("head."):
        key = key[len("head."):].replace("se_block.conv.", "se_block.fc.")
        return re.sub(r"\.inorm\.scale$", ".inorm.weight", key)
    match = re.fullmatch(r"backbone\.(conv\d+)\.(?:(_first_block|conv\d+_\d+)\.(\w+\.\w+)|(\w+))\.(\w+)", key)
    if match is None:
        return key
    group, unit, part, layer, leaf = match.groups()
    if unit is None:  # the stem (conv1) or the head (conv9): a plain conv + BN
        index = {"conv1": 0, "conv9": _group_start(len(SETTINGS))}.get(group)
        if index is None:
            return key
        return f"backbone.features.{index}.{'0' if layer == '_conv' else '1'}.{leaf}"
    if part not in PADDLE_PARTS:
        return key
    number = int(group[4:])  # groups conv2 .. conv8 hold SETTINGS[0 .. 6]
    within = 0 if unit == "_first_block" else int(unit.split("_")[1]) - 1
    index = _group_start(number - 2) + within
    return f"backbone.features.{index}.conv.{PADDLE_PARTS[part]}.{leaf}"


@functools.lru_cache(maxsize=None)
def _group_start(group: int) -> int:
    return 1 + sum(count for _, _, count, _ in SETTINGS[:group])

