"""fastmatte.ops.gather_tiles: crop the selected tiles of image + upsampled coarse maps."""
import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import (INT32_MAX, check_int, check_output_size, check_selection, check_tensor,
                                   fail)

BACKENDS = OpBackends("gather_tiles", triton=True)


def gather_tiles(image: torch.Tensor, coarse: torch.Tensor, tiles: torch.Tensor,
                 count: torch.Tensor, tile: int = 8, halo: int = 0, *, backend=None) -> torch.Tensor:
    """Crop, at every selected tile, a window of the image and of the upsampled coarse maps.

    image:  [B, C, H, W] float (fp32, fp64, fp16 or bf16); H and W multiples of `tile`.
    coarse: [B, Cc, H/tile, W/tile], same dtype and device as image (e.g. the coarse alpha).
    tiles:  [capacity, 3] int32 rows (b, ty, tx), and count: [1] int32, as made by
            fastmatte.ops.select_tiles; rows past count are ignored (they may hold -1).
    tile:   tile side in full-resolution pixels (>= 1); halo: extra border pixels, in
            [0, max(H, W)].

    Returns patches [capacity, C + Cc, tile + 2*halo, tile + 2*halo] in image's dtype: row r is

        replicate_pad(cat([image, F.interpolate(coarse, size=(H, W), mode="bilinear",
                                                align_corners=False)], 1), halo)
            [b, :, ty*tile : ty*tile + tile + 2*halo, tx*tile : tx*tile + tile + 2*halo]

    i.e. the tile plus `halo` pixels of context on each side, border pixels repeated outside
    the image; rows r >= count are zeros. The full-resolution upsampled and concatenated
    tensors are never built, and count is read on the device (no host sync). Half types are
    interpolated in fp32. Differentiable in image and coarse; the CUDA backward adds with
    atomics (not deterministic), the CPU one is deterministic. Selection values are validated
    on the CPU only; on the GPU out-of-grid rows are clamped into the image.
    Non-contiguous inputs are copied.

    Refused before anything is allocated (fastmatte.ops._checks): tile outside [1, 2**31 - 1],
    halo outside [0, max(H, W)] (a wider halo only repeats border pixels), and patches of more
    than 2**40 bytes (1 TiB).
    """
    tile, halo = _check_inputs(image, coarse, tiles, count, tile, halo)
    choice = BACKENDS.resolve(image.device, backend)
    if choice == "torch":
        return reference.gather_tiles(image, coarse, tiles, count, tile, halo)
    if choice == "triton":
        run = torch.ops.fastmatte.gather_tiles_triton
    else:  # "cpu" or "cuda": the C++ op dispatches on the device
        run = torch.ops.fastmatte.gather_tiles
    return run(image.contiguous(), coarse.contiguous(), tiles.contiguous(), count, tile, halo)


def _check_inputs(image, coarse, tiles, count, tile, halo):
    """Every argument of gather_tiles; returns (tile, halo) as Python ints."""
    op = "gather_tiles"
    check_tensor(op, "image", image, rank=4, layout="[B, C, H, W]", floating=True)
    check_tensor(op, "coarse", coarse, rank=4, layout="[B, Cc, h, w]", dtype=image.dtype,
                 device=image.device)
    check_selection(op, tiles, count, image.device)
    B, C, H, W = image.shape
    tile = check_int(op, "tile", tile, 1, INT32_MAX)
    halo = check_int(op, "halo", halo, 0, max(H, W), bound="max(H, W)")
    if H % tile or W % tile:
        fail(op, f"image height and width must be multiples of tile={tile}, got {H} x {W}")
    if coarse.shape[0] != B or coarse.shape[2] != H // tile or coarse.shape[3] != W // tile:
        fail(op, f"coarse must be [B={B}, Cc, H/tile={H // tile}, W/tile={W // tile}], "
                 f"got {list(coarse.shape)}")
    size = tile + 2 * halo
    check_output_size(op, "patches", (tiles.shape[0], C + coarse.shape[1], size, size), image.dtype)
    return tile, halo


@torch.library.custom_op("fastmatte::gather_tiles_triton", mutates_args=())
def _gather_tiles_triton(image: torch.Tensor, coarse: torch.Tensor, tiles: torch.Tensor,
                         count: torch.Tensor, tile: int = 8, halo: int = 0) -> torch.Tensor:
    _check_inputs(image, coarse, tiles, count, tile, halo)  # called directly too
    # Imported here: TRITON_INTERPRET must be set before the kernel's triton.jit runs.
    from fastmatte.kernels.gather_tiles import gather_tiles_forward

    return gather_tiles_forward(image, coarse, tiles, count, tile, halo)


def _gather_tiles_fake(image, coarse, tiles, count, tile=8, halo=0):
    size = tile + 2 * halo
    return image.new_empty((tiles.shape[0], image.shape[1] + coarse.shape[1], size, size))


def _setup_context(ctx, inputs, output):
    image, coarse, tiles, count, tile, halo = inputs
    ctx.save_for_backward(tiles, count)
    ctx.sizes = (image.shape, coarse.shape, tile, halo)


def _backward(ctx, grad_patches):
    tiles, count = ctx.saved_tensors
    image_size, coarse_size, tile, halo = ctx.sizes
    grad_image, grad_coarse = torch.ops.fastmatte.gather_tiles_backward(
        grad_patches.contiguous(), tiles, count, image_size, coarse_size, tile, halo)
    return grad_image, grad_coarse, None, None, None, None


torch.library.register_fake("fastmatte::gather_tiles_triton", _gather_tiles_fake)
torch.library.register_autograd("fastmatte::gather_tiles_triton", _backward,
                                setup_context=_setup_context)

if HAS_C:
    torch.library.register_fake("fastmatte::gather_tiles", _gather_tiles_fake)
    torch.library.register_autograd("fastmatte::gather_tiles", _backward, setup_context=_setup_context)

    @torch.library.register_fake("fastmatte::gather_tiles_backward")
    def _gather_tiles_backward_fake(grad_patches, tiles, count, image_size, coarse_size, tile, halo):
        return grad_patches.new_empty(image_size), grad_patches.new_empty(coarse_size)
