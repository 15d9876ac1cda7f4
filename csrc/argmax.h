// torch.argmax over a few classes, shared by the CPU kernels that classify trimaps.
#pragma once
#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <algorithm>
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

// argmax_class of three scores already in opmath, in arithmetic instead of branches or nested
// selects so that loops over a row of pixels vectorize. Same semantics: the first maximum wins,
// and the first NaN wins over everything.
template <typename T>
C10_ALWAYS_INLINE uint8_t argmax3(T v0, T v1, T v2) {
  const int32_t take1 = v1 > v0, take2 = v2 > std::max(v0, v1);
  const int32_t ordered = take1 + take2 * (2 - take1);
  const int32_t nan0 = v0 != v0, nan1 = v1 != v1, nan2 = v2 != v2;
  return static_cast<uint8_t>((1 - nan0) * (nan1 + (1 - nan1) * (2 * nan2 + (1 - nan2) * ordered)));
}

}  // namespace fastmatte
