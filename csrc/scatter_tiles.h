// What cpu/scatter_tiles.cpp and cuda/scatter_tiles.cu share: the input checks, and the per-pixel
// math. Forward and backward on both devices compute each pre-clamp value with the same code, so
// the backward's recomputed clamp mask is exactly the forward's.
#pragma once
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "checks.h"
#include "resample.h"

namespace fastmatte {

struct ScatterSizes {
  int64_t B, C, h, w, t, capacity;
};

// Every input of scatter_tiles (and of its backward, which takes the same ones).
inline ScatterSizes check_scatter_inputs(const at::Tensor& coarse, const at::Tensor& refined,
                                         const at::Tensor& tiles, const at::Tensor& count,
                                         const at::Tensor& tile_map, c10::string_view mode,
                                         const char* op) {
  check_rank(coarse, op, "coarse_alpha", 4, "[B, C, h, w]");
  check_floating(coarse, op, "coarse_alpha");
  check_contiguous(coarse, op, "coarse_alpha");
  check_rank(refined, op, "refined", 4, "[capacity, C, t, t]");
  TORCH_CHECK(refined.scalar_type() == coarse.scalar_type(), "fastmatte.", op,
              ": refined must have coarse_alpha's dtype ", coarse.scalar_type(), ", got ",
              refined.scalar_type());
  check_contiguous(refined, op, "refined");
  check_same_device(refined, coarse, op, "refined", "coarse_alpha");
  const int64_t B = coarse.size(0), C = coarse.size(1), h = coarse.size(2), w = coarse.size(3);
  TORCH_CHECK(refined.size(1) == C && refined.size(2) == refined.size(3) && refined.size(2) > 0,
              "fastmatte.", op, ": refined must be [capacity, C, t, t] with coarse_alpha's C = ", C,
              " and square t x t patches, got ", refined.sizes());
  check_selection(tiles, count, coarse, op, "coarse_alpha");
  TORCH_CHECK(tiles.size(0) == refined.size(0), "fastmatte.", op, ": tiles has ", tiles.size(0),
              " rows but refined has ", refined.size(0), "; both must have the capacity rows");
  check_rank(tile_map, op, "tile_map", 3, "[B, h, w]");
  check_dtype(tile_map, at::kInt, op, "tile_map");
  check_contiguous(tile_map, op, "tile_map");
  check_same_device(tile_map, coarse, op, "tile_map", "coarse_alpha");
  TORCH_CHECK(tile_map.size(0) == B && tile_map.size(1) == h && tile_map.size(2) == w,
              "fastmatte.", op, ": tile_map must be [B, h, w] = [", B, ", ", h, ", ", w,
              "] (coarse_alpha's grid), got ", tile_map.sizes());
  TORCH_CHECK(mode == "bilinear" || mode == "nearest", "fastmatte.", op,
              ": mode must be \"bilinear\" or \"nearest\", got \"", mode, "\"");
  const int64_t t = refined.size(2);
  check_output_size({B, C, h * t, w * t}, coarse.scalar_type(), op, "alpha");
  return {B, C, h, w, t, refined.size(0)};
}

// grad_alpha of the backward: the forward output's shape, dtype and device.
inline void check_scatter_grad(const at::Tensor& grad, const at::Tensor& coarse,
                               const ScatterSizes& s, const char* op) {
  check_rank(grad, op, "grad_alpha", 4, "[B, C, h*t, w*t]");
  TORCH_CHECK(grad.size(0) == s.B && grad.size(1) == s.C && grad.size(2) == s.h * s.t &&
                  grad.size(3) == s.w * s.t,
              "fastmatte.", op, ": grad_alpha must be [", s.B, ", ", s.C, ", ", s.h * s.t, ", ",
              s.w * s.t, "] (the output's shape), got ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == coarse.scalar_type(), "fastmatte.", op,
              ": grad_alpha must have coarse_alpha's dtype ", coarse.scalar_type(), ", got ",
              grad.scalar_type());
  check_contiguous(grad, op, "grad_alpha");
  check_same_device(grad, coarse, op, "grad_alpha", "coarse_alpha");
}

// Row r of refined replaces its tile when 0 <= r < count. `n` is min(count, capacity): on the GPU
// the count is never validated (that would need a host sync), so the kernels clip it.
FM_HOST_DEVICE bool is_selected(int32_t r, int64_t n) { return r >= 0 && r < n; }

// The source taps of output coordinate d on an axis; mode="nearest" is one tap of weight 1, so
// both modes share the gather loops of the backward.
template <typename opmath_t>
FM_HOST_DEVICE BilinearTap<opmath_t> axis_tap(bool bilinear, int64_t d, int64_t in_size,
                                              int64_t out_size) {
  if (bilinear) return bilinear_tap<opmath_t>(d, in_size, out_size);
  const int64_t i = nearest_index(d, in_size, out_size);
  return {i, i, opmath_t(0)};
}

// The upsampled coarse value of one output pixel. Nearest reads its one tap directly, as
// F.interpolate does.
template <typename opmath_t, typename scalar_t>
FM_HOST_DEVICE opmath_t upsampled_at(bool bilinear, const scalar_t* plane, int64_t w,
                                     const BilinearTap<opmath_t>& ty,
                                     const BilinearTap<opmath_t>& tx) {
  return bilinear ? bilinear_at(plane, w, ty, tx)
                  : static_cast<opmath_t>(plane[ty.i0 * w + tx.i0]);
}

// The weight output coordinate `tap` gives source index i, and whether it reads i at all. A tap
// with weight 0 still counts as reading i: PyTorch's upsample backward adds 0 * grad there too,
// so a non-finite grad spreads the same way.
template <typename opmath_t>
FM_HOST_DEVICE bool tap_weight(const BilinearTap<opmath_t>& tap, int64_t i, opmath_t* weight) {
  *weight = (tap.i0 == i ? opmath_t(1) - tap.lambda1 : opmath_t(0)) +
            (tap.i1 == i ? tap.lambda1 : opmath_t(0));
  return tap.i0 == i || tap.i1 == i;
}

}  // namespace fastmatte
