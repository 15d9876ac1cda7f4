"""Model weights from local files: PyTorch checkpoints (read with weights_only=True, so a file
can hold tensors but no code) or safetensors. Nothing is ever downloaded."""
from pathlib import Path

import torch

STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")  # where trainers nest the weights


class WeightsError(ValueError):
    """A weights file that is missing, unreadable, or does not fit the model."""


def read_state_dict(path) -> dict:
    """The tensors stored in `path` (.safetensors, or anything torch.save wrote), on the CPU.

    A checkpoint that nests its weights under "state_dict", "model" or "model_state_dict" (as
    training scripts do) is unwrapped. Raises WeightsError naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise many types for a bad file
        raise WeightsError(f"{path}: not a weights file this version can read ({error})") from error
    while isinstance(state, dict) and len(state) and not any(torch.is_tensor(v) for v in state.values()):
        nested = next((state[k] for k in STATE_DICT_KEYS if isinstance(state.get(k), dict)), None)
        if nested is None:
            break
        state = nested
    is_state_dict = isinstance(state, dict) and all(isinstance(k, str) and torch.is_tensor(v)
                                                    for k, v in state.items())
    if not is_state_dict:
        raise WeightsError(f"{path}: expected a mapping of names to tensors (a state dict)")
    return state


def load_weights(module: torch.nn.Module, path, strict: bool = True) -> torch.nn.Module:
    """Load the state dict in `path` into `module` (in place) and return the module.

    strict: every parameter and buffer of the module must be in the file with the same shape,
    and the file may hold nothing else. A mismatch raises WeightsError listing the names.
    """
    state = read_state_dict(path)
    own = module.state_dict()
    wrong_shape = [f"{k} {tuple(v.shape)} (model {tuple(own[k].shape)})" for k, v in state.items()
                   if k in own and v.shape != own[k].shape]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = wrong_shape + (missing + unexpected if strict else [])
    if problems:
        raise WeightsError(f"{path} does not fit {type(module).__name__}: "
                           + _listing("wrong shape", wrong_shape)
                           + _listing("missing", missing if strict else [])
                           + _listing("unexpected", unexpected if strict else []))
    module.load_state_dict(state, strict=strict)
    return module


def _listing(what, names, shown=8) -> str:
    if not names:
        return ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{what}: {', '.join(names[:shown])}{more}. "
