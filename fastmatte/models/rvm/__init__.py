"""Robust Video Matting, MobileNetV3 (Lin et al., WACV 2022): the model (model.py), its decoder
(decoder.py) and deep guided filter refiner (refiner.py), its released weights (release.py), and
the conversion of its checkpoints."""
import functools

import torch

from fastmatte.models.registry import Conversion
from fastmatte.models.rvm.model import RVM, auto_downsample_ratio, state_shapes
from fastmatte.models.rvm.release import (RELEASE, Release, cache_dir, default_weights, folded_convs,
                                          official_name, read_release, release_bytes, release_convs,
                                          weights_path)
from fastmatte.models.weights import WeightsError

RELEASE_LAYOUT = "RVM's ONNX release rvm_mobilenetv3_fp32.onnx (BatchNorm folded into the convs)"
# The release graph's x2 Resize scales. They and its Clip bounds (0, 1) are initializers, but not weights.
SCALE_CONSTANT = (1.0, 1.0, 2.0, 2.0)


def convert_official(state_dict: dict) -> Conversion:
    """RVM weights in fastmatte's names, from one of:

    - fastmatte's own RVM state dict (a torch.save of RVM().state_dict(), or `fastmatte weights
      get rvm`'s safetensors): passed through as it is;
    - RVM's ONNX release (rvm_mobilenetv3_fp32.onnx): its initializers by name, exactly as
      stored, either in Conv order as fastmatte.models.rvm.read_release returns them (checked
      against the graph), or as fastmatte.models.read_state_dict reads the file (the release
      stores them in that same order). The 54 named tensors map by name (official_name); the
      108 anonymous ones are the weight and bias of each folded conv, taken in order
      (folded_convs()). Their numbers must increase along that order, as the release's
      exporter numbered them: a state dict in another order is refused, not mapped wrongly. The
      graph's 8 constants (four Resize scales [1, 1, 2, 2] and four Clip bounds), which a
      read_state_dict of the file includes, are dropped.

    Anything else passes through unchanged, so that load_model's strict load names the file and
    what does not fit. A state dict that looks like the release but is not whole, in order and
    of the release's shapes raises WeightsError saying what was expected.
    """
    names = _own_names()
    own = set(names)
    if len(own & set(state_dict)) * 2 >= len(own):
        return Conversion(dict(state_dict), layout="fastmatte RVM state dict")
    named = {official: name for name in names if (official := official_name(name))}
    anonymous = [key for key in state_dict if key.isdigit()]
    if not anonymous or not any(key in named and key not in own for key in state_dict):
        return Conversion(dict(state_dict), layout="neither fastmatte's RVM names nor RVM's ONNX release")
    return _convert_release(state_dict, named, anonymous)


def _convert_release(state_dict, named, anonymous):
    expected = (f"RVM's ONNX release has {len(named)} named conv tensors and the weight and bias of "
                f"{len(folded_convs())} folded convs under increasing numbers")
    missing = [key for key in named if key not in state_dict]
    other = [key for key in state_dict if key not in named and not key.isdigit()]
    if missing or other:
        listed = [f"{what} {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                  for what, keys in (("missing", missing), ("unknown", other)) if keys]
        raise WeightsError(f"the weights look like {RELEASE_LAYOUT} but are not whole: {'; '.join(listed)}; "
                           f"{expected}")
    numbers = [int(key) for key in anonymous]
    if numbers != sorted(set(numbers)):
        raise WeightsError(f"the weights look like {RELEASE_LAYOUT} but their numbered tensors are not in "
                           f"the order the graph uses them; {expected}. Read the file with "
                           f"fastmatte.models.rvm.read_release(path), which orders them by the graph")
    folded = folded_convs()
    constants = [key for key in anonymous if _is_graph_constant(state_dict[key])]
    pairs = [key for key in anonymous if key not in constants]
    if len(pairs) != 2 * len(folded):
        raise WeightsError(f"the weights look like {RELEASE_LAYOUT} but hold {len(pairs)} numbered conv "
                           f"tensors (besides {len(constants)} graph constants); {expected}")
    out = {own_name: state_dict[key] for key, own_name in named.items()}
    convs = dict(release_convs())
    for name, weight, bias in zip(folded, pairs[0::2], pairs[1::2]):
        for key, own in ((weight, convs[name].weight), (bias, convs[name].bias)):
            if tuple(state_dict[key].shape) != tuple(own.shape):
                raise WeightsError(f"the weights look like {RELEASE_LAYOUT} but {key!r}, which the order "
                                   f"makes {name}'s {'weight' if key == weight else 'bias'}, is "
                                   f"{list(state_dict[key].shape)}, expected {list(own.shape)}")
        out[f"{name}.weight"], out[f"{name}.bias"] = state_dict[weight], state_dict[bias]
    return Conversion(out, layout=RELEASE_LAYOUT, dropped=tuple(constants))


def _is_graph_constant(tensor) -> bool:
    """One of the release graph's non-weight initializers: a Resize scale or a Clip bound."""
    if tensor.numel() > len(SCALE_CONSTANT):
        return False
    values = tuple(tensor.flatten().tolist())
    return values == SCALE_CONSTANT or (tensor.dim() == 0 and values in ((0.0,), (1.0,)))


@functools.lru_cache(maxsize=1)
def _own_names() -> tuple:
    """RVM's state dict names, in order (built on the meta device: no memory, no initialization)."""
    with torch.device("meta"):
        return tuple(RVM().state_dict())


__all__ = ["RELEASE", "RVM", "Release", "auto_downsample_ratio", "cache_dir", "convert_official",
           "default_weights", "official_name", "read_release", "release_bytes", "state_shapes",
           "weights_path"]
