"""Triton forward kernel of gather_tiles: one program per tile row, a 2-D block over the
(tile + 2*halo)^2 window, a loop over channels. Coarse channels are bilinearly upsampled in the
kernel with PyTorch's fp32 source-index formula (blended in fp32, fp64 for fp64 inputs), so
the full-resolution tensor never exists."""
import torch
import triton
import triton.language as tl

from fastmatte.kernels.resample import bilinear_sample, bilinear_tap


@triton.jit
def _gather_tiles_forward_kernel(
    image, coarse, tiles, count, out,
    B, C, Cc, H, W, h, w, scale_y, scale_x, tile, halo, size,
    BLOCK: tl.constexpr, ACC: tl.constexpr,
):
    r = tl.program_id(0)
    valid = r < tl.load(count)  # read on the device: no host sync
    # Selection values are not validated on the GPU (that needs a host sync); clamping b, like
    # replicate padding clamps y and x, keeps a bad row inside the tensors' memory.
    b = tl.minimum(tl.maximum(tl.load(tiles + 3 * r), 0), B - 1).to(tl.int64)
    ty = tl.load(tiles + 3 * r + 1)
    tx = tl.load(tiles + 3 * r + 2)

    py = tl.arange(0, BLOCK)[:, None]
    px = tl.arange(0, BLOCK)[None, :]
    inside = (py < size) & (px < size)
    y = tl.minimum(tl.maximum(ty * tile - halo + py, 0), H - 1)  # replicate padding
    x = tl.minimum(tl.maximum(tx * tile - halo + px, 0), W - 1)
    load_mask = inside & valid

    out_row = out + r.to(tl.int64) * (C + Cc) * size * size + py * size + px
    pixel = y * W + x
    for c in range(C):
        v = tl.load(image + (b * C + c) * H * W + pixel, mask=load_mask, other=0.0)
        tl.store(out_row + c * size * size, v, mask=inside)

    # Taps in fp32 (the scale arrives as fp32), blended in ACC.
    y0, y1, ly = bilinear_tap(y, scale_y, h, tl.float32)
    x0, x1, lx = bilinear_tap(x, scale_x, w, tl.float32)
    ly = ly.to(ACC)
    lx = lx.to(ACC)
    for c in range(Cc):
        plane = coarse + (b * Cc + c) * h * w
        v = bilinear_sample(plane, y0, y1, ly, x0, x1, lx, w, load_mask, ACC)
        tl.store(out_row + (C + c) * size * size, v.to(out.dtype.element_ty), mask=inside)


def gather_tiles_forward(image: torch.Tensor, coarse: torch.Tensor, tiles: torch.Tensor,
                         count: torch.Tensor, tile: int, halo: int) -> torch.Tensor:
    """Launch on contiguous, already-checked inputs; see fastmatte.ops.gather_tiles."""
    B, C, H, W = image.shape
    Cc, h, w = coarse.shape[1:]
    size = tile + 2 * halo
    capacity = tiles.shape[0]
    out = image.new_empty((capacity, C + Cc, size, size))
    if capacity == 0:
        return out
    block = triton.next_power_of_2(size)
    # PyTorch's scale in fp32: in_size / out_size. Python divides in double, and rounding that
    # to fp32 (when Triton passes it) equals the fp32 quotient (53 >= 2*24 + 2 bits).
    _gather_tiles_forward_kernel[(capacity,)](
        image, coarse, tiles, count, out,
        B, C, Cc, H, W, h, w, h / max(H, 1), w / max(W, 1), tile, halo, size,
        BLOCK=block, ACC=tl.float64 if image.dtype == torch.float64 else tl.float32,
        num_warps=1 if block <= 8 else (2 if block <= 16 else 4),
    )
    return out
