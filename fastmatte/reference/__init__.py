"""Plain eager-PyTorch implementations of every operator: the oracle of the tests and the
"eager PyTorch" side of every benchmark. Written the obvious way, not the fast way."""
from fastmatte.reference.scatter_tiles import scatter_tiles
from fastmatte.reference.select_tiles import select_tiles

__all__ = ["scatter_tiles", "select_tiles"]
