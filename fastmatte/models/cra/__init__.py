"""CRAMatting (Zhong & Zharkov, WACV 2024): the two-stage model (model.py), its coarse decoder
(decoder.py) and tile refiner (refiner.py), and the conversion of its checkpoints."""
from fastmatte.models.cra.model import TINY, CRAMatting
from fastmatte.models.registry import Conversion


def convert_official(state_dict: dict) -> Conversion:
    """CRAMatting weights in fastmatte's names, from a checkpoint's state dict.

    Today CRAMatting is the paper's model as fastmatte built it, and the weights it takes are
    its own (a torch.save of its state_dict, possibly inside a trainer file; the reader has
    already unwrapped containers and `module.` prefixes). Those pass through as they are, and
    the strict load names whatever does not fit.
    """
    return Conversion(dict(state_dict), layout="fastmatte CRAMatting state dict")


__all__ = ["CRAMatting", "TINY", "convert_official"]
