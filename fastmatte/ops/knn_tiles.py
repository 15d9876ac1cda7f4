"""fastmatte.ops.knn_tiles: each selected tile's k nearest selected tiles of the same image."""
import warnings

import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import INT32_MAX, check_int, check_output_size, check_selection, check_tensor

BACKENDS = OpBackends("knn_tiles")

_warned_exhaustive_cuda = False


def knn_tiles(tiles: torch.Tensor, count: torch.Tensor, k: int, tile_map=None, *,
              backend=None) -> torch.Tensor:
    """The k nearest other valid tiles of each valid tile, in the same image.

    tiles:    [capacity, 3] int32 rows (b, ty, tx), and count: [1] int32, as made by
              fastmatte.ops.select_tiles; rows r < count are the valid ones.
    k:        neighbours per tile, in [0, 2**31 - 1] (at most 32 on CUDA), and nbr of at most
              2**40 bytes (1 TiB): larger is refused before anything is allocated.
    tile_map: optional [B, h, w] int32 map of each tile's row (select_tiles' `tile_map`; a cell
              names a row only if it lies in [0, count)). Pass it: on CUDA it turns an
              exhaustive O(count^2) scan into a local search in growing rings on the tile grid.

    Returns nbr [capacity, k] int32: for each row i < count, the rows j < count, j != i, with
    tiles[j, 0] == tiles[i, 0], nearest first by squared Euclidean distance on (ty, tx), ties
    by lower row; -1 where the image has fewer than k other tiles, and on every row >= count.
    Equal to fastmatte.reference.knn_tiles (which ignores tile_map) on every backend.

    On the CPU the selection is validated (coordinates >= 0 and below 32768, on tile_map's grid
    and consistent with it); on the GPU it is not (no host sync), and count is read on the
    device. CUDA without tile_map runs the exhaustive scan and warns once. Integer output: no
    gradient. Non-contiguous inputs are copied.
    """
    op = "knn_tiles"
    check_tensor(op, "tiles", tiles)  # a tensor, so that its device can be read
    check_selection(op, tiles, count, tiles.device)
    k = check_int(op, "k", k, 0, INT32_MAX)
    check_output_size(op, "nbr", (tiles.shape[0], k), torch.int32)
    if tile_map is not None:
        check_tensor(op, "tile_map", tile_map, rank=3, layout="[B, h, w]", dtype=torch.int32,
                     device=tiles.device)
    choice = BACKENDS.resolve(tiles.device, backend)
    if choice == "torch":
        return reference.knn_tiles(tiles, count, k)
    # warnings.warn cannot be traced (fullgraph=True would fail), so only eager calls warn.
    if choice == "cuda" and tile_map is None and not torch.compiler.is_compiling():
        _warn_exhaustive_cuda()
    if tile_map is not None:
        tile_map = tile_map.contiguous()
    return torch.ops.fastmatte.knn_tiles(tiles.contiguous(), count, k, tile_map)


def _warn_exhaustive_cuda():
    global _warned_exhaustive_cuda
    if not _warned_exhaustive_cuda:
        _warned_exhaustive_cuda = True
        warnings.warn("fastmatte.knn_tiles: no tile_map on CUDA, so every tile scans all tiles "
                      "(O(count^2)); pass select_tiles' tile_map for the grid search",
                      RuntimeWarning, stacklevel=3)


if HAS_C:

    @torch.library.register_fake("fastmatte::knn_tiles")
    def _knn_tiles_fake(tiles, count, k, tile_map=None):
        return tiles.new_empty((tiles.shape[0], k), dtype=torch.int32)
