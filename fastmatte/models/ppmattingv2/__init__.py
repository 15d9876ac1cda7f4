"""PP-MattingV2 (PaddleSeg), as released: the model and its heads (model.py), the double pyramid
pool module (dpp.py), the MLFF decoder level (mlff.py) and the conversion of the released
checkpoint (convert.py); the conv units are fastmatte.models.paddleseg_layers."""
from fastmatte.models.ppmattingv2.convert import convert_official
from fastmatte.models.ppmattingv2.model import PPMattingV2

__all__ = ["PPMattingV2", "convert_official"]
