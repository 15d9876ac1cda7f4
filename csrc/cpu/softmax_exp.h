// e^x of softmax arguments x = score - max <= 0, on a whole vector (simd.h's types, any width)
// of float or double, for the CPU attention kernels.
#pragma once
#include <cmath>
#include <cstring>
#include <type_traits>

#include "cpu/simd.h"

namespace fastmatte {

// float: Cephes' expf (within 1e-7 relative). x < -87 (e^x < 2e-38, nothing next to the max
// term's 1), -inf included, gives 0; the clamp before keeps 2^n a normal float. NaN stays NaN.
// double: std::exp lane by lane.
template <typename V>
inline __attribute__((always_inline)) V softmax_exp(const V& x) {
  using T = std::remove_cv_t<std::remove_reference_t<decltype(x[0])>>;
  if constexpr (std::is_same_v<T, double>) {
    V e;
    for (int l = 0; l < int(sizeof(V) / sizeof(double)); ++l) e[l] = std::exp(x[l]);
    return e;
  } else {
    const V c = x < -87.0f ? V{} - 87.0f : x;
    const V n = (c * 1.44269504089f + 12582912.0f) - 12582912.0f;  // round(c / ln 2)
    const V r = c - n * 0.693359375f + n * 2.12194440e-4f;         // c - n ln 2, in two parts
    V p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    typedef int32_t Bits __attribute__((vector_size(sizeof(V))));
    const Bits exponent = (__builtin_convertvector(n, Bits) + 127) << 23;
    V two_n;
    std::memcpy(&two_n, &exponent, sizeof(two_n));
    return x < -87.0f ? V{} : p * two_n;
  }
}

}  // namespace fastmatte
