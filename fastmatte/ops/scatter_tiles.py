"""fastmatte.ops.scatter_tiles: paste refined tiles into the upsampled coarse alpha."""
import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import FLOAT_DTYPES, check_output_size, check_selection, check_tensor, fail

BACKENDS = OpBackends("scatter_tiles", triton=True)
MODES = ("bilinear", "nearest")


def scatter_tiles(coarse_alpha: torch.Tensor, refined: torch.Tensor, tiles: torch.Tensor,
                  count: torch.Tensor, tile_map: torch.Tensor, mode: str = "bilinear", *,
                  backend=None) -> torch.Tensor:
    """The coarse alpha upsampled x t, with every selected tile replaced by its refined patch.

    Args:
        coarse_alpha: [B, C, h, w] on the tile grid (C = 1 for alpha; more channels, e.g.
            alpha + foreground, work the same way). float32, float64, float16 or bfloat16.
        refined: [capacity, C, t, t] refined patches, row r for tile ``tiles[r]``; same dtype
            and device as coarse_alpha. The tile size t comes from its last two dims.
        tiles, count, tile_map: a selection as made by ``select_tiles`` on the same grid:
            tiles [capacity, 3] int32 rows (b, ty, tx), count [1] int32, tile_map [B, h, w]
            int32 (each tile's row, or -1).
        mode: "bilinear" (F.interpolate with align_corners=False) or "nearest".
        backend: None (fastest here), "cpu", "cuda", "triton" or "torch" (the reference).

    Returns:
        alpha [B, C, h*t, w*t], coarse_alpha's dtype: F.interpolate(coarse_alpha, size=(h*t,
        w*t), mode=mode) where tile (b, ty, tx)'s t x t window is ``refined[r]`` for
        ``r = tile_map[b, ty, tx]`` with 0 <= r < count, then clamped to [0, 1] (torch.clamp:
        NaN passes through). Half types compute in float32. Each output pixel is written once;
        no full-resolution intermediate is built.

    Rows of refined at or past count are never read: tile_map entries pointing there select
    nothing. A tile_map entry below count must be that row's tile in ``tiles`` (the CPU kernels
    check this; the GPU ones cannot without a host sync, and a mismatch gives wrong gradients).
    An alpha of more than 2**40 bytes (1 TiB) is refused before anything is allocated.

    Differentiable in coarse_alpha and refined: the gradient flows through the clamp (mask 1
    inside [0, 1], bounds included) to the refined row that wrote a pixel, or through the
    upsampling to the coarse pixels it read. Refined rows past count get zero gradient. The
    backward gathers instead of scattering, so it is deterministic on every device.
    """
    _check_inputs(coarse_alpha, refined, tiles, count, tile_map, mode)
    choice = BACKENDS.resolve(coarse_alpha.device, backend)
    if choice == "torch":
        return reference.scatter_tiles(coarse_alpha, refined, tiles, count, tile_map, mode)
    args = (coarse_alpha.contiguous(), refined.contiguous(), tiles.contiguous(), count,
            tile_map.contiguous(), mode)
    if choice == "triton":
        return torch.ops.fastmatte.scatter_tiles_triton(*args)
    return torch.ops.fastmatte.scatter_tiles(*args)


def _check_inputs(coarse_alpha, refined, tiles, count, tile_map, mode):
    op = "scatter_tiles"
    check_tensor(op, "coarse_alpha", coarse_alpha, rank=4, layout="[B, C, h, w]", floating=True)
    if coarse_alpha.dtype not in FLOAT_DTYPES:
        fail(op, f"coarse_alpha must be float32, float64, float16 or bfloat16, got {coarse_alpha.dtype}")
    device = coarse_alpha.device
    B, C, h, w = coarse_alpha.shape
    check_tensor(op, "refined", refined, rank=4, layout="[capacity, C, t, t]", device=device)
    if refined.dtype != coarse_alpha.dtype:
        fail(op, f"refined must have coarse_alpha's dtype {coarse_alpha.dtype}, got {refined.dtype}")
    if refined.shape[1] != C or refined.shape[2] != refined.shape[3] or refined.shape[2] == 0:
        fail(op, f"refined must be [capacity, C, t, t] with coarse_alpha's C = {C} and square "
                 f"t x t patches, got {list(refined.shape)}")
    check_selection(op, tiles, count, device)
    if tiles.shape[0] != refined.shape[0]:
        fail(op, f"tiles has {tiles.shape[0]} rows but refined has {refined.shape[0]}; both must "
                 "have the capacity rows")
    check_tensor(op, "tile_map", tile_map, rank=3, layout="[B, h, w]", dtype=torch.int32, device=device)
    if tuple(tile_map.shape) != (B, h, w):
        fail(op, f"tile_map must be [B, h, w] = {[B, h, w]} (coarse_alpha's grid), got {list(tile_map.shape)}")
    if mode not in MODES:
        fail(op, f'mode must be "bilinear" or "nearest", got {mode!r}')
    t = refined.shape[2]
    check_output_size(op, "alpha", (B, C, h * t, w * t), coarse_alpha.dtype)


@torch.library.custom_op("fastmatte::scatter_tiles_triton", mutates_args=())
def _scatter_tiles_triton(coarse_alpha: torch.Tensor, refined: torch.Tensor, tiles: torch.Tensor,
                          count: torch.Tensor, tile_map: torch.Tensor,
                          mode: str = "bilinear") -> torch.Tensor:
    """fastmatte::scatter_tiles with the Triton forward (same arguments and semantics)."""
    _check_inputs(coarse_alpha, refined, tiles, count, tile_map, mode)  # called directly too
    from fastmatte.kernels.scatter_tiles import scatter_tiles_forward  # after TRITON_INTERPRET

    return scatter_tiles_forward(coarse_alpha, refined, count, tile_map, mode == "bilinear")


def _scatter_tiles_fake(coarse_alpha, refined, tiles, count, tile_map, mode="bilinear"):
    B, C, h, w = coarse_alpha.shape
    t = refined.shape[-1]
    return coarse_alpha.new_empty((B, C, h * t, w * t))


_scatter_tiles_triton.register_fake(_scatter_tiles_fake)


def _setup_context(ctx, inputs, output):
    coarse_alpha, refined, tiles, count, tile_map, mode = inputs
    ctx.save_for_backward(coarse_alpha, refined, tiles, count, tile_map)
    ctx.mode = mode


def _backward(ctx, grad_alpha):
    grad_coarse, grad_refined = torch.ops.fastmatte.scatter_tiles_backward(
        grad_alpha.contiguous(), *ctx.saved_tensors, ctx.mode)
    return grad_coarse, grad_refined, None, None, None, None


if HAS_C:
    torch.library.register_fake("fastmatte::scatter_tiles", _scatter_tiles_fake)

    @torch.library.register_fake("fastmatte::scatter_tiles_backward")
    def _scatter_tiles_backward_fake(grad_alpha, coarse_alpha, refined, tiles, count, tile_map, mode):
        return coarse_alpha.new_empty(coarse_alpha.shape), refined.new_empty(refined.shape)

    for _name in ("fastmatte::scatter_tiles", "fastmatte::scatter_tiles_triton"):
        torch.library.register_autograd(_name, _backward, setup_context=_setup_context)
