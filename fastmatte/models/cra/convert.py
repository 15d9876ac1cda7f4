"""The authors' CRA checkpoints (their Trainer's {"mat_model", "discriminator", "global_step"}
files, already unwrapped to "mat_model" by fastmatte.models.read_state_dict) in fastmatte's names."""
import torch

from fastmatte.models.registry import Conversion
from fastmatte.models.weights import WeightsError

SWIN = "lowres_model.encoder.model.swin."
DECODER = "lowres_model.decoder.up_blocks."
FIXED = ("lowres_model.encoder.mean", "lowres_model.encoder.std")  # ImageNet's, fastmatte's constants
# fastmatte's CRAMatting before it became the authors' model (paper-derived, other layers).
PREVIOUS_PARTS = ("backbone.", "refiner.")
PREVIOUS_CONFIG = ("window_size", "downsample", "k", "search_range", "token_dim", "attention_heads",
                   "head_dim", "decoder_width", "refiner_channels")


def convert_official(state_dict: dict) -> Conversion:
    """CRAMatting weights from the authors' mat_model state dict, or fastmatte's own (passed through).

    Renames lowres_model.encoder.model.swin.* to encoder.*, joins the split q/k/v projections
    (attn.qkv.{q,k,v}_{weight,bias}) into Swin's qkv and the patch merging's LayerNorm chunks
    (norm.weights.{0..3}, norm.biases.{0..3}) into one, maps lowres_model.decoder.up_blocks.{i}.0.conv
    to decoder.convs.{i-1}; drops what the authors' loader ignores or fastmatte derives: the
    attn_mask buffers (of the training size), relative_position_index tables and the encoder's
    mean/std. Raises WeightsError for a file of fastmatte's earlier, paper-derived CRAMatting.
    """
    check_not_previous(state_dict)
    if not any(k.startswith(SWIN) for k in state_dict):
        return Conversion(dict(state_dict), "fastmatte CRAMatting names")
    out, dropped = {}, []
    for name, tensor in state_dict.items():
        if "attn_mask" in name or name.endswith("relative_position_index") or name in FIXED:
            dropped.append(name)
        elif name.startswith(SWIN):
            _swin(name[len(SWIN):], tensor, state_dict, out)
        elif name.startswith(DECODER):
            block, rest = name[len(DECODER):].split(".", 1)
            out[f"decoder.convs.{int(block) - 1}.{rest.removeprefix('0.conv.')}"] = tensor
        else:
            out[name] = tensor
    return Conversion(out, "yataoz/lightweight_portrait_matting (Trainer mat_model)", tuple(dropped))


def _swin(name, tensor, state, out):
    prefix = "encoder."
    if ".attn.qkv." in name:
        head, part = name.rsplit(".", 1)  # e.g. layers.0.blocks.1.attn.qkv, q_weight
        kind = part[2:]
        if part.startswith("q_"):
            out[f"{prefix}{head}.{kind}"] = torch.cat([state[f"{SWIN}{head}.{p}_{kind}"] for p in "qkv"])
    elif ".downsample.norm." in name:
        head, kind, index = name.rsplit(".", 2)  # layers.0.downsample.norm, weights, 0
        if index == "0":
            chunks = [state[f"{SWIN}{head}.{kind}.{i}"] for i in range(4)]
            out[f"{prefix}{head}.{ {'weights': 'weight', 'biases': 'bias'}[kind]}"] = torch.cat(chunks)
    else:
        out[prefix + name] = tensor


def check_not_previous(state_dict: dict, config=None):
    """WeightsError if the tensors (or a fastmatte file's configuration) are those of fastmatte's
    CRAMatting before it became the authors' model: they fit no layer of today's."""
    old_names = [k for k in state_dict if k.startswith(PREVIOUS_PARTS)]
    old_config = [k for k in (config or {}) if k in PREVIOUS_CONFIG]
    if old_names or old_config:
        what = old_names[:2] or old_config[:2]
        raise WeightsError(f"these are weights of fastmatte's earlier, paper-derived CRAMatting "
                           f"({', '.join(what)}); CRAMatting is now the authors' CRA, a different "
                           f"network, and they cannot be converted: load the authors' checkpoint, or "
                           f"train the model again")
