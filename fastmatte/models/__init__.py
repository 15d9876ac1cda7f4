"""Model definitions over the fastmatte operators, and their backbones."""
from fastmatte.models.backbone_weights import load_backbone_weights
from fastmatte.models.cra import CRAMatting
from fastmatte.models.weights import WeightsError, load_weights, read_state_dict

MODELS = {"cra": CRAMatting}
"""Model names (as the command line takes them) to their classes."""


def build_model(name: str, **config):
    """A new model with random weights: MODELS[name](**config). Load weights with load_weights."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the models are {', '.join(MODELS)}")
    return MODELS[name](**config)


__all__ = ["CRAMatting", "MODELS", "WeightsError", "build_model", "load_backbone_weights", "load_weights",
           "read_state_dict"]
