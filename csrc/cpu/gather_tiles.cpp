// gather_tiles on the CPU. Forward: one task per (row, channel) patch plane; coarse channels are
// upsampled on the fly at the pixels a window touches. Backward: one task per (batch, channel)
// gradient plane, adding the rows of that batch in row order, so the result is deterministic.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "gather_tiles.h"

namespace fastmatte {
namespace {

// Enough pixels per parallel task to amortize scheduling.
int64_t grain_for(int64_t pixels_per_task) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, pixels_per_task));
}

template <typename scalar_t>
void forward_kernel(const scalar_t* image, const scalar_t* coarse, const int32_t* tiles,
                    int64_t count, int64_t capacity, const GatherGeometry& g, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t channels = g.image_channels + g.coarse_channels, area = g.size * g.size;
  at::parallel_for(0, capacity * channels, grain_for(area), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> xs(g.size);
    std::vector<BilinearTap<acc_t>> x_taps(g.size);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t r = job / channels, c = job % channels;
      scalar_t* dst = out + job * area;
      if (r >= count) {
        std::fill(dst, dst + area, scalar_t(0));
        continue;
      }
      const int64_t b = tiles[3 * r], ty = tiles[3 * r + 1], tx = tiles[3 * r + 2];
      for (int64_t p = 0; p < g.size; ++p) xs[p] = window_pixel(tx, p, g, g.width);
      if (c < g.image_channels) {
        const scalar_t* plane = image + (b * g.image_channels + c) * g.height * g.width;
        for (int64_t py = 0; py < g.size; ++py) {
          const scalar_t* row = plane + window_pixel(ty, py, g, g.height) * g.width;
          for (int64_t px = 0; px < g.size; ++px) dst[py * g.size + px] = row[xs[px]];
        }
      } else {
        const scalar_t* plane =
            coarse + (b * g.coarse_channels + c - g.image_channels) * g.grid_h * g.grid_w;
        for (int64_t p = 0; p < g.size; ++p)
          x_taps[p] = bilinear_tap<acc_t>(xs[p], g.grid_w, g.width);
        for (int64_t py = 0; py < g.size; ++py) {
          const BilinearTap<acc_t> y_tap =
              bilinear_tap<acc_t>(window_pixel(ty, py, g, g.height), g.grid_h, g.height);
          for (int64_t px = 0; px < g.size; ++px)
            dst[py * g.size + px] =
                static_cast<scalar_t>(bilinear_at<acc_t>(plane, g.grid_w, y_tap, x_taps[px]));
        }
      }
    }
  });
}

// grad_image / grad_coarse are acc_t buffers (fp32 for half types), zero-initialised.
template <typename scalar_t, typename acc_t>
void backward_kernel(const scalar_t* grad, const int32_t* tiles, int64_t count,
                     const GatherGeometry& g, acc_t* grad_image, acc_t* grad_coarse) {
  const int64_t channels = g.image_channels + g.coarse_channels, area = g.size * g.size;
  at::parallel_for(0, g.batch * channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> xs(g.size);
    std::vector<BilinearTap<acc_t>> x_taps(g.size);
    for (int64_t plane_index = begin; plane_index < end; ++plane_index) {
      const int64_t b = plane_index / channels, c = plane_index % channels;
      const bool is_image = c < g.image_channels;
      acc_t* dst = is_image
          ? grad_image + (b * g.image_channels + c) * g.height * g.width
          : grad_coarse + (b * g.coarse_channels + c - g.image_channels) * g.grid_h * g.grid_w;
      for (int64_t r = 0; r < count; ++r) {
        if (tiles[3 * r] != b) continue;
        const int64_t ty = tiles[3 * r + 1], tx = tiles[3 * r + 2];
        const scalar_t* src = grad + (r * channels + c) * area;
        for (int64_t p = 0; p < g.size; ++p) xs[p] = window_pixel(tx, p, g, g.width);
        if (is_image) {
          for (int64_t py = 0; py < g.size; ++py) {
            acc_t* row = dst + window_pixel(ty, py, g, g.height) * g.width;
            for (int64_t px = 0; px < g.size; ++px)
              row[xs[px]] += static_cast<acc_t>(src[py * g.size + px]);
          }
          continue;
        }
        // The adjoint of bilinear upsampling: each pixel's gradient goes to its 4 taps.
        for (int64_t p = 0; p < g.size; ++p)
          x_taps[p] = bilinear_tap<acc_t>(xs[p], g.grid_w, g.width);
        for (int64_t py = 0; py < g.size; ++py) {
          const BilinearTap<acc_t> y =
              bilinear_tap<acc_t>(window_pixel(ty, py, g, g.height), g.grid_h, g.height);
          const acc_t ly = y.lambda1;
          acc_t* top = dst + y.i0 * g.grid_w;
          acc_t* bottom = dst + y.i1 * g.grid_w;
          for (int64_t px = 0; px < g.size; ++px) {
            const BilinearTap<acc_t>& x = x_taps[px];
            const acc_t lx = x.lambda1, v = static_cast<acc_t>(src[py * g.size + px]);
            top[x.i0] += (acc_t(1) - ly) * (acc_t(1) - lx) * v;
            top[x.i1] += (acc_t(1) - ly) * lx * v;
            bottom[x.i0] += ly * (acc_t(1) - lx) * v;
            bottom[x.i1] += ly * lx * v;
          }
        }
      }
    }
  });
}

at::Tensor gather_tiles_cpu(const at::Tensor& image, const at::Tensor& coarse,
                            const at::Tensor& tiles, const at::Tensor& count, int64_t tile,
                            int64_t halo) {
  const GatherGeometry g = check_gather_forward(image, coarse, tiles, count, tile, halo);
  check_selection_values_cpu(tiles, count, g.batch, g.grid_h, g.grid_w, "gather_tiles");
  const int64_t capacity = tiles.size(0), n = count.item<int32_t>();
  at::Tensor out = at::empty({capacity, g.image_channels + g.coarse_channels, g.size, g.size},
                             image.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "gather_tiles_cpu", [&] {
    forward_kernel(image.data_ptr<scalar_t>(), coarse.data_ptr<scalar_t>(),
                   tiles.data_ptr<int32_t>(), n, capacity, g, out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gather_tiles_backward_cpu(
    const at::Tensor& grad_patches, const at::Tensor& tiles, const at::Tensor& count,
    at::IntArrayRef image_size, at::IntArrayRef coarse_size, int64_t tile, int64_t halo) {
  const GatherGeometry g =
      check_gather_backward(grad_patches, tiles, count, image_size, coarse_size, tile, halo);
  check_selection_values_cpu(tiles, count, g.batch, g.grid_h, g.grid_w, "gather_tiles_backward");
  const int64_t n = count.item<int32_t>();
  const auto dtype = grad_patches.scalar_type();
  const auto acc_options = grad_patches.options().dtype(at::toOpMathType(dtype));
  at::Tensor grad_image = at::zeros(image_size, acc_options);
  at::Tensor grad_coarse = at::zeros(coarse_size, acc_options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gather_tiles_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    backward_kernel(grad_patches.data_ptr<scalar_t>(), tiles.data_ptr<int32_t>(), n, g,
                    grad_image.data_ptr<acc_t>(), grad_coarse.data_ptr<acc_t>());
  });
  return {grad_image.to(dtype), grad_coarse.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) {
  m.impl("gather_tiles", &gather_tiles_cpu);
  m.impl("gather_tiles_backward", &gather_tiles_backward_cpu);
}

}  // namespace fastmatte
