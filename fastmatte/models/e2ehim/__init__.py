"""E2E-HIM (aipixel), as released: the model (model.py) over its Swin-T (swin.py), the instance
queries (query_decoder.py), the per-instance kernels (mask_decoder.py) and conv units (blocks.py),
and the conversion of the released swintiny.ckpt (convert.py)."""
from fastmatte.models.e2ehim.convert import convert_official
from fastmatte.models.e2ehim.model import E2EHIM

__all__ = ["E2EHIM", "convert_official"]
