"""The public operators. Each takes backend=None | "cpu" | "cuda" | "triton" | "torch"."""
from fastmatte.ops.area_resize import area_resize
from fastmatte.ops.connectivity_error import connectivity_error
from fastmatte.ops.gather_tiles import gather_tiles
from fastmatte.ops.gated_conv import gated_conv
from fastmatte.ops.gradient_error import gradient_error
from fastmatte.ops.guided_upsample import guided_upsample
from fastmatte.ops.group_attention import group_attention
from fastmatte.ops.ibnorm import ibnorm
from fastmatte.ops.knn_attention import knn_attention
from fastmatte.ops.knn_tiles import knn_tiles
from fastmatte.ops.resize_concat import resize_concat
from fastmatte.ops.scatter_tiles import scatter_tiles
from fastmatte.ops.select_tiles import TileSelection, select_tiles
from fastmatte.ops.trimap_fusion import trimap_fusion
from fastmatte.ops.window_attention import window_attention

__all__ = ["TileSelection", "area_resize", "connectivity_error", "gated_conv", "gather_tiles",
           "gradient_error", "group_attention", "guided_upsample", "ibnorm", "knn_attention", "knn_tiles",
           "resize_concat", "scatter_tiles", "select_tiles", "trimap_fusion", "window_attention"]
