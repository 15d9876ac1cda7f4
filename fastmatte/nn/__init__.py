"""nn.Modules over the fastmatte operators."""
from fastmatte.nn.cross_region_attention import CrossRegionAttention
from fastmatte.nn.gated_conv import GatedConv2d

__all__ = ["CrossRegionAttention", "GatedConv2d"]
