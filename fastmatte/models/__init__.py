"""Model definitions over the fastmatte operators, and their backbones."""
from fastmatte.models.weights import WeightsError, load_weights, read_state_dict

__all__ = ["WeightsError", "load_weights", "read_state_dict"]
