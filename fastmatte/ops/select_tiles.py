"""fastmatte.ops.select_tiles: the uncertain tiles of a coarse trimap, at a fixed capacity."""
from typing import NamedTuple

import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import INT32_MAX, check_int, check_tensor

BACKENDS = OpBackends("select_tiles")


class TileSelection(NamedTuple):
    """Which tiles to refine. All int32, on the trimap's device.

    tiles:      [capacity, 3] rows (b, ty, tx) of the kept tiles in raster order; -1 past count.
    count:      [1] number of kept rows, min(candidates, capacity).
    tile_map:   [B, h, w] each tile's row in `tiles`, or -1.
    candidates: [1] number of tiles whose trimap argmax is the unknown class (kept or not).
    """

    tiles: torch.Tensor
    count: torch.Tensor
    tile_map: torch.Tensor
    candidates: torch.Tensor


def select_tiles(trimap: torch.Tensor, capacity: int, unknown_class: int = 1, *,
                 backend=None) -> TileSelection:
    """Select the tiles whose trimap argmax is `unknown_class` (first maximum wins).

    trimap: [B, classes, h, w] float logits or probabilities on the tile grid (one value per
    t x t tile of the full image); any float dtype; non-contiguous input is copied.
    capacity: fixed number of output rows. With more candidates than that, the `capacity`
    tiles of highest unknown-class score are kept (ties: raster order; a NaN score ranks
    highest, and a NaN logit wins the argmax, as in torch.argmax / torch.sort).
    Counts stay on the device, so the pipeline never synchronizes with the host.
    capacity must be in [0, 2**31 - 1] (rows are int32 indices: tiles then take at most
    24 GiB) and unknown_class in [0, classes - 1].
    """
    op = "select_tiles"
    check_tensor(op, "trimap", trimap, rank=4, layout="[B, classes, h, w]", floating=True)
    capacity = check_int(op, "capacity", capacity, 0, INT32_MAX)
    unknown_class = check_int(op, "unknown_class", unknown_class, 0, trimap.shape[1] - 1,
                              bound="classes - 1")
    if BACKENDS.resolve(trimap.device, backend) == "torch":
        return TileSelection(*reference.select_tiles(trimap, capacity, unknown_class))
    return TileSelection(*torch.ops.fastmatte.select_tiles(trimap.contiguous(), capacity, unknown_class))


if HAS_C:

    @torch.library.register_fake("fastmatte::select_tiles")
    def _select_tiles_fake(trimap, capacity, unknown_class=1):
        B, _, h, w = trimap.shape
        new = lambda *shape: trimap.new_empty(shape, dtype=torch.int32)  # noqa: E731
        return new(capacity, 3), new(1), new(B, h, w), new(1)
