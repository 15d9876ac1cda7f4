// scatter_tiles on the CPU. Forward: one pass over the output rows, each pixel written once from
// either its refined patch or the upsampled coarse alpha, then clamped. Backward: gathers only
// (no scatter-add), so it is deterministic and needs no atomics or per-thread copies.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "scatter_tiles.h"

namespace fastmatte {
namespace {

// tile_map and tiles must describe one selection: a tile whose map entry r is below count must
// be row r's tile, so that the gradient gathered through tiles[r] is the forward's adjoint.
// Entries >= count (or negative) select nothing and are not checked.
void check_tile_map_cpu(const at::Tensor& tiles, const at::Tensor& count,
                        const at::Tensor& tile_map, const char* op) {
  const int64_t n = count.item<int32_t>();
  const int64_t h = tile_map.size(1), w = tile_map.size(2);
  const int32_t* map = tile_map.data_ptr<int32_t>();
  const int32_t* t = tiles.data_ptr<int32_t>();
  for (int64_t i = 0; i < tile_map.numel(); ++i) {
    const int32_t r = map[i];
    if (!is_selected(r, n)) continue;
    const int64_t b = i / (h * w), ty = i / w % h, tx = i % w;
    TORCH_CHECK(t[3 * r] == b && t[3 * r + 1] == ty && t[3 * r + 2] == tx, "fastmatte.", op,
                ": tile_map[", b, ", ", ty, ", ", tx, "] = ", r, " but tiles row ", r, " is (",
                t[3 * r], ", ", t[3 * r + 1], ", ", t[3 * r + 2],
                "); tiles and tile_map must come from the same selection");
  }
}

ScatterSizes check_cpu_inputs(const at::Tensor& coarse, const at::Tensor& refined,
                              const at::Tensor& tiles, const at::Tensor& count,
                              const at::Tensor& tile_map, c10::string_view mode, const char* op) {
  const ScatterSizes s = check_scatter_inputs(coarse, refined, tiles, count, tile_map, mode, op);
  check_selection_values_cpu(tiles, count, s.B, s.h, s.w, op);
  check_tile_map_cpu(tiles, count, tile_map, op);
  return s;
}

// The taps of every output coordinate of one axis, computed once per call.
template <typename opmath_t>
std::vector<BilinearTap<opmath_t>> axis_taps(bool bilinear, int64_t in_size, int64_t out_size) {
  std::vector<BilinearTap<opmath_t>> taps(out_size);
  for (int64_t d = 0; d < out_size; ++d) taps[d] = axis_tap<opmath_t>(bilinear, d, in_size, out_size);
  return taps;
}

at::Tensor scatter_tiles_cpu(const at::Tensor& coarse, const at::Tensor& refined,
                             const at::Tensor& tiles, const at::Tensor& count,
                             const at::Tensor& tile_map, c10::string_view mode) {
  const ScatterSizes s = check_cpu_inputs(coarse, refined, tiles, count, tile_map, mode,
                                          "scatter_tiles");
  const int64_t C = s.C, h = s.h, w = s.w, t = s.t, H = h * t, W = w * t;
  const int64_t n = count.item<int32_t>();
  const bool bilinear = mode == "bilinear";
  at::Tensor alpha = at::empty({s.B, C, H, W}, coarse.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, coarse.scalar_type(), "scatter_tiles_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto row_taps = axis_taps<opmath_t>(bilinear, h, H);
    const auto col_taps = axis_taps<opmath_t>(bilinear, w, W);
    const scalar_t* coarse_data = coarse.data_ptr<scalar_t>();
    const scalar_t* refined_data = refined.data_ptr<scalar_t>();
    const int32_t* map = tile_map.data_ptr<int32_t>();
    scalar_t* out_data = alpha.data_ptr<scalar_t>();
    // One task per output row (b, c, y).
    at::parallel_for(0, s.B * C * H, std::max<int64_t>(1, 16384 / std::max<int64_t>(W, 1)),
                     [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t y = row % H, bc = row / H, b = bc / C, c = bc % C;
        const int64_t ty = y / t, dy = y % t;
        const scalar_t* plane = coarse_data + bc * h * w;
        const int32_t* map_row = map + (b * h + ty) * w;
        scalar_t* out = out_data + row * W;
        for (int64_t tx = 0; tx < w; ++tx) {
          const int32_t r = map_row[tx];
          if (is_selected(r, n)) {
            const scalar_t* patch_row = refined_data + ((r * C + c) * t + dy) * t;
            for (int64_t dx = 0; dx < t; ++dx)
              out[tx * t + dx] = clamp01(static_cast<opmath_t>(patch_row[dx]));
          } else {
            for (int64_t x = tx * t; x < (tx + 1) * t; ++x)
              out[x] = clamp01(upsampled_at(bilinear, plane, w, row_taps[y], col_taps[x]));
          }
        }
      }
    });
  });
  return alpha;
}

std::tuple<at::Tensor, at::Tensor> scatter_tiles_backward_cpu(
    const at::Tensor& grad_alpha, const at::Tensor& coarse, const at::Tensor& refined,
    const at::Tensor& tiles, const at::Tensor& count, const at::Tensor& tile_map,
    c10::string_view mode) {
  const char* op = "scatter_tiles_backward";
  const ScatterSizes s = check_cpu_inputs(coarse, refined, tiles, count, tile_map, mode, op);
  check_scatter_grad(grad_alpha, coarse, s, op);
  const int64_t C = s.C, h = s.h, w = s.w, t = s.t, H = h * t, W = w * t;
  const int64_t n = count.item<int32_t>();
  const bool bilinear = mode == "bilinear";
  at::Tensor grad_coarse = at::empty_like(coarse);
  at::Tensor grad_refined = at::zeros_like(refined);  // rows past count, and unused rows, stay 0
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, coarse.scalar_type(), "scatter_tiles_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* grad = grad_alpha.data_ptr<scalar_t>();
    const scalar_t* coarse_data = coarse.data_ptr<scalar_t>();
    const scalar_t* refined_data = refined.data_ptr<scalar_t>();
    const int32_t* map = tile_map.data_ptr<int32_t>();
    const int32_t* tile = tiles.data_ptr<int32_t>();

    // grad_refined: each selected row reads its own window of grad_alpha.
    scalar_t* grad_refined_data = grad_refined.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = tile[3 * r], ty = tile[3 * r + 1], tx = tile[3 * r + 2];
        if (map[(b * h + ty) * w + tx] != r) continue;  // row not pasted anywhere: grad 0
        for (int64_t c = 0; c < C; ++c) {
          for (int64_t dy = 0; dy < t; ++dy) {
            const int64_t i = ((r * C + c) * t + dy) * t;
            const scalar_t* g = grad + ((b * C + c) * H + ty * t + dy) * W + tx * t;
            for (int64_t dx = 0; dx < t; ++dx)
              if (inside01(static_cast<opmath_t>(refined_data[i + dx])))
                grad_refined_data[i + dx] = g[dx];
          }
        }
      }
    });

    // grad_coarse, one task per coarse row (b, c, i): first sum the output rows that read row i
    // into a full-width buffer (weight of row i times clamp mask times grad, at pixels that were
    // not replaced), then each coarse column j sums the buffer columns that read it. Output rows
    // outside [(i-1)t, (i+2)t) cannot read row i, nor columns outside [(j-1)t, (j+2)t) column j.
    const auto row_taps = axis_taps<opmath_t>(bilinear, h, H);
    const auto col_taps = axis_taps<opmath_t>(bilinear, w, W);
    scalar_t* grad_coarse_data = grad_coarse.data_ptr<scalar_t>();
    at::parallel_for(0, s.B * C * h, 1, [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> row_sum(W);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t i = task % h, bc = task / h, b = bc / C;
        const scalar_t* plane = coarse_data + bc * h * w;
        std::fill(row_sum.begin(), row_sum.end(), opmath_t(0));
        for (int64_t y = std::max<int64_t>(0, (i - 1) * t); y < std::min(H, (i + 2) * t); ++y) {
          opmath_t wy;
          if (!tap_weight(row_taps[y], i, &wy)) continue;
          const int32_t* map_row = map + (b * h + y / t) * w;
          const scalar_t* g = grad + (bc * H + y) * W;
          for (int64_t x = 0; x < W; ++x) {
            if (is_selected(map_row[x / t], n)) continue;
            if (!inside01(upsampled_at(bilinear, plane, w, row_taps[y], col_taps[x]))) continue;
            row_sum[x] += wy * static_cast<opmath_t>(g[x]);
          }
        }
        for (int64_t j = 0; j < w; ++j) {
          opmath_t sum = 0, wx;
          for (int64_t x = std::max<int64_t>(0, (j - 1) * t); x < std::min(W, (j + 2) * t); ++x)
            if (tap_weight(col_taps[x], j, &wx)) sum += wx * row_sum[x];
          grad_coarse_data[task * w + j] = static_cast<scalar_t>(sum);
        }
      }
    });
  });
  return {grad_coarse, grad_refined};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) {
  m.impl("scatter_tiles", &scatter_tiles_cpu);
  m.impl("scatter_tiles_backward", &scatter_tiles_backward_cpu);
}

}  // namespace fastmatte
