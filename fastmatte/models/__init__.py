"""The model zoo: every model loads its authors' released checkpoints (registry.py, weights.py),
each in its own module or package, over shared backbones (backbones/)."""
from fastmatte.models import cra
from fastmatte.models.backbones import load_backbone_weights
from fastmatte.models.cra import CRAMatting
from fastmatte.models.registry import (MODELS, Conversion, ModelEntry, build_model, default_weights,
                                       load_model, read_weights)
from fastmatte.models.weights import WeightsError, load_weights, read_state_dict

MODELS["cra"] = ModelEntry(
    build=CRAMatting, convert_official=cra.convert_official,
    summary="CRA (Zhong & Zharkov, WACV 2024): Swin-T at 1/16, cross-region attention tile refiner",
    configurations={"paper": {}, "tiny": cra.TINY},
    formats=("safetensors", "PyTorch state dict (.pth/.pt, trainer files, DataParallel)"))

__all__ = ["CRAMatting", "Conversion", "MODELS", "ModelEntry", "WeightsError", "build_model",
           "default_weights", "load_backbone_weights", "load_model", "load_weights", "read_state_dict",
           "read_weights"]
