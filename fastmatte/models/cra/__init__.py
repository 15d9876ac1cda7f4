"""CRAMatting, the authors' CRA (Zhong & Zharkov, WACV 2024): the model (model.py), its Swin
encoder (encoder.py), decoder (decoder.py), region head (roi_head.py), its inference resize
(skimage_resize.py) and the conversion of the authors' checkpoints (convert.py)."""
from fastmatte.models.cra.convert import check_not_previous, convert_official
from fastmatte.models.cra.model import TINY, CRAMatting

__all__ = ["CRAMatting", "TINY", "check_not_previous", "convert_official"]
