"""nn.Modules over the fastmatte operators."""
from fastmatte.nn.cross_region_attention import CrossRegionAttention

__all__ = ["CrossRegionAttention"]
