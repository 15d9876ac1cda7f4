"""MODNet (Ke et al., AAAI 2022), both official releases: the model (model.py) and its blocks
(blocks.py), the official inference recipes (recipe.py), and the conversion of the released
checkpoints (convert.py)."""
from fastmatte.models.modnet.convert import convert_official
from fastmatte.models.modnet.model import MODNet
from fastmatte.models.modnet.recipe import VARIANTS, paddleseg_sizes, zhkkke_size

__all__ = ["MODNet", "VARIANTS", "convert_official", "paddleseg_sizes", "zhkkke_size"]
