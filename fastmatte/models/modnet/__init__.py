"""MODNet (Ke et al., AAAI 2022), both official releases: the model (model.py) and its blocks
(blocks.py), the official inference recipes (recipe.py), the conversion of the released
checkpoints (convert.py), and SOC, the self-supervised adaptation to unlabeled images (soc.py;
the supervised objective is fastmatte.losses.modnet_loss)."""
from fastmatte.models.modnet.convert import convert_official
from fastmatte.models.modnet.model import MODNet
from fastmatte.models.modnet.recipe import VARIANTS, paddleseg_sizes, zhkkke_size
from fastmatte.models.modnet.soc import backup_copy, freeze_norm, soc_step

__all__ = ["MODNet", "VARIANTS", "backup_copy", "convert_official", "freeze_norm", "paddleseg_sizes",
           "soc_step", "zhkkke_size"]
