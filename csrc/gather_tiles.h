// gather_tiles pieces shared by the CPU and CUDA kernels: input checks, the window geometry and
// the per-pixel sampling math, so both kernels read exactly the same pixels with the same weights.
#pragma once
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <algorithm>

#include "checks.h"
#include "resample.h"

namespace fastmatte {

struct GatherGeometry {
  int64_t batch, image_channels, coarse_channels;
  int64_t height, width;   // full resolution H x W
  int64_t grid_h, grid_w;  // tile grid h x w = H / tile x W / tile
  int64_t tile, halo, size;  // size = tile + 2 * halo, the patch side
};

// Row (or column) of the full-resolution image that window pixel `offset` of the tile at grid
// coordinate `tile_coord` reads: replicate padding is a clamp into [0, extent).
FM_HOST_DEVICE int64_t window_pixel(int64_t tile_coord, int64_t offset, const GatherGeometry& g,
                                    int64_t extent) {
  const int64_t v = tile_coord * g.tile - g.halo + offset;
  return v < 0 ? 0 : (v >= extent ? extent - 1 : v);
}

// image [B, C, H, W] and coarse [B, Cc, H/tile, W/tile] -> the geometry of every tile window.
// A halo wider than the image on both axes (> max(H, W)) would only repeat border pixels.
inline GatherGeometry gather_geometry(at::IntArrayRef image_size, at::IntArrayRef coarse_size,
                                      int64_t tile, int64_t halo, const char* op,
                                      const char* image_name, const char* coarse_name) {
  TORCH_CHECK(image_size.size() == 4, "fastmatte.", op, ": ", image_name,
              " must be 4-D [B, C, H, W], got ", image_size);
  TORCH_CHECK(coarse_size.size() == 4, "fastmatte.", op, ": ", coarse_name,
              " must be 4-D [B, Cc, h, w], got ", coarse_size);
  const int64_t H = image_size[2], W = image_size[3];
  check_int_range(tile, 1, kInt32Max, op, "tile");
  check_int_range(halo, 0, std::max(H, W), op, "halo", "max(H, W)");
  TORCH_CHECK(H % tile == 0 && W % tile == 0, "fastmatte.", op, ": ", image_name,
              " height and width must be multiples of tile=", tile, ", got ", H, " x ", W);
  TORCH_CHECK(coarse_size[0] == image_size[0] && coarse_size[2] == H / tile &&
                  coarse_size[3] == W / tile,
              "fastmatte.", op, ": ", coarse_name, " must be [B=", image_size[0],
              ", Cc, H/tile=", H / tile, ", W/tile=", W / tile, "], got ", coarse_size);
  return {image_size[0], image_size[1], coarse_size[1], H, W, H / tile, W / tile,
          tile, halo, tile + 2 * halo};
}

inline GatherGeometry check_gather_forward(const at::Tensor& image, const at::Tensor& coarse,
                                           const at::Tensor& tiles, const at::Tensor& count,
                                           int64_t tile, int64_t halo) {
  const char* op = "gather_tiles";
  check_rank(image, op, "image", 4, "[B, C, H, W]");
  check_rank(coarse, op, "coarse", 4, "[B, Cc, h, w]");
  check_floating(image, op, "image");
  check_dtype(coarse, image.scalar_type(), op, "coarse");
  check_same_device(coarse, image, op, "coarse", "image");
  check_contiguous(image, op, "image");
  check_contiguous(coarse, op, "coarse");
  check_selection(tiles, count, image, op, "image");
  const GatherGeometry g =
      gather_geometry(image.sizes(), coarse.sizes(), tile, halo, op, "image", "coarse");
  check_output_size({tiles.size(0), g.image_channels + g.coarse_channels, g.size, g.size},
                    image.scalar_type(), op, "patches");
  return g;
}

inline GatherGeometry check_gather_backward(const at::Tensor& grad_patches,
                                            const at::Tensor& tiles, const at::Tensor& count,
                                            at::IntArrayRef image_size,
                                            at::IntArrayRef coarse_size, int64_t tile,
                                            int64_t halo) {
  const char* op = "gather_tiles_backward";
  const GatherGeometry g =
      gather_geometry(image_size, coarse_size, tile, halo, op, "image_size", "coarse_size");
  const at::ScalarType acc = at::toOpMathType(grad_patches.scalar_type());  // the sums' buffers
  check_output_size(image_size, acc, op, "grad_image");
  check_output_size(coarse_size, acc, op, "grad_coarse");
  check_rank(grad_patches, op, "grad_patches", 4, "[capacity, C + Cc, size, size]");
  check_floating(grad_patches, op, "grad_patches");
  check_contiguous(grad_patches, op, "grad_patches");
  check_selection(tiles, count, grad_patches, op, "grad_patches");
  TORCH_CHECK(grad_patches.size(0) == tiles.size(0) &&
                  grad_patches.size(1) == g.image_channels + g.coarse_channels &&
                  grad_patches.size(2) == g.size && grad_patches.size(3) == g.size,
              "fastmatte.", op, ": grad_patches must be [capacity=", tiles.size(0),
              ", C + Cc=", g.image_channels + g.coarse_channels, ", ", g.size, ", ", g.size,
              "], got ", grad_patches.sizes());
  return g;
}

}  // namespace fastmatte
