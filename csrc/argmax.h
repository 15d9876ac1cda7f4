// torch.argmax over a few classes, shared by the CPU kernels that classify trimaps.
#pragma once
#include <ATen/OpMathType.h>

#include <cmath>
#include <cstdint>

namespace fastmatte {

// torch.argmax semantics: the first maximum wins, and a NaN counts as the maximum.
// Compares in the input's own precision (double for double), as torch.argmax does.
template <typename scalar_t>
int64_t argmax_class(const scalar_t* v, int64_t classes, int64_t stride) {
  using opmath_t = at::opmath_type<scalar_t>;
  int64_t best = 0;
  opmath_t best_v = static_cast<opmath_t>(v[0]);
  for (int64_t k = 1; k < classes && !std::isnan(best_v); ++k) {
    const opmath_t x = static_cast<opmath_t>(v[k * stride]);
    if (std::isnan(x) || x > best_v) {
      best = k;
      best_v = x;
    }
  }
  return best;
}

}  // namespace fastmatte
