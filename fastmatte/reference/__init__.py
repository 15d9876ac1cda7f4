"""Plain eager-PyTorch implementations of every operator: the oracle of the tests and the
"eager PyTorch" side of every benchmark. Written the obvious way, not the fast way."""
from fastmatte.reference.area_resize import area_resize
from fastmatte.reference.connectivity_error import connectivity_error
from fastmatte.reference.gather_tiles import gather_tiles
from fastmatte.reference.gated_conv import gated_conv
from fastmatte.reference.gradient_error import gradient_error
from fastmatte.reference.guided_upsample import guided_upsample
from fastmatte.reference.group_attention import group_attention
from fastmatte.reference.ibnorm import ibnorm
from fastmatte.reference.knn_attention import knn_attention
from fastmatte.reference.knn_tiles import knn_tiles
from fastmatte.reference.relative_position import relative_position_index
from fastmatte.reference.resize_concat import resize_concat
from fastmatte.reference.scatter_tiles import scatter_tiles
from fastmatte.reference.select_tiles import select_tiles
from fastmatte.reference.trimap_fusion import trimap_fusion
from fastmatte.reference.window_attention import window_attention

__all__ = ["area_resize", "connectivity_error", "gated_conv", "gather_tiles", "gradient_error",
           "group_attention", "guided_upsample", "ibnorm", "knn_attention", "knn_tiles",
           "relative_position_index", "resize_concat", "scatter_tiles", "select_tiles", "trimap_fusion",
           "window_attention"]
