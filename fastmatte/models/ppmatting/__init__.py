"""PP-Matting (Chen et al., 2022), PaddleSeg's release: the model (model.py), its semantic context
branch (scb.py), its high-resolution detail branch (hrdb.py) and the conversion of the released
checkpoints (convert.py); the conv units are fastmatte.models.paddleseg_layers."""
from fastmatte.models.ppmatting.convert import convert_official
from fastmatte.models.ppmatting.model import MAX_SHORT, PPMatting

__all__ = ["MAX_SHORT", "PPMatting", "convert_official"]
