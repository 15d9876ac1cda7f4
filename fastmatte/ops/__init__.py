"""The public operators. Each takes backend=None | "cpu" | "cuda" | "triton" | "torch"."""
from fastmatte.ops.select_tiles import TileSelection, select_tiles

__all__ = ["TileSelection", "select_tiles"]
