// Source-index math of F.interpolate(mode="bilinear", align_corners=False) and
// mode="nearest", written once for the CPU and CUDA kernels so both match PyTorch exactly.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FM_HOST_DEVICE inline
#endif

namespace fastmatte {

// One output coordinate's two source taps and the weight of the second. opmath_t is the type
// PyTorch does this math in: float for float/half/bfloat16, double for double.
template <typename opmath_t = float>
struct BilinearTap {
  int64_t i0, i1;
  opmath_t lambda1;  // weight of i1; i0 gets 1 - lambda1
};

// dst in [0, out_size) sampling an axis of in_size; scale = in_size / out_size as PyTorch
// computes it (in opmath_t), source = max(scale * (dst + 0.5) - 0.5, 0).
template <typename opmath_t = float>
FM_HOST_DEVICE BilinearTap<opmath_t> bilinear_tap(int64_t dst, int64_t in_size, int64_t out_size) {
  const opmath_t scale = static_cast<opmath_t>(in_size) / static_cast<opmath_t>(out_size);
  opmath_t src = scale * (static_cast<opmath_t>(dst) + opmath_t(0.5)) - opmath_t(0.5);
  src = src < opmath_t(0) ? opmath_t(0) : src;
  const int64_t i0 = static_cast<int64_t>(src);
  const int64_t i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  return {i0, i1, src - static_cast<opmath_t>(i0)};
}

// Bilinear value of one output pixel from its row and column taps; plane is one [h, w] channel.
template <typename opmath_t, typename scalar_t>
FM_HOST_DEVICE opmath_t bilinear_at(const scalar_t* plane, int64_t w,
                                    const BilinearTap<opmath_t>& ty,
                                    const BilinearTap<opmath_t>& tx) {
  const scalar_t* row0 = plane + ty.i0 * w;
  const scalar_t* row1 = plane + ty.i1 * w;
  const opmath_t top = (opmath_t(1) - tx.lambda1) * static_cast<opmath_t>(row0[tx.i0]) +
                       tx.lambda1 * static_cast<opmath_t>(row0[tx.i1]);
  const opmath_t bottom = (opmath_t(1) - tx.lambda1) * static_cast<opmath_t>(row1[tx.i0]) +
                          tx.lambda1 * static_cast<opmath_t>(row1[tx.i1]);
  return (opmath_t(1) - ty.lambda1) * top + ty.lambda1 * bottom;
}

// Nearest always works in float, whatever the dtype (as PyTorch does).
FM_HOST_DEVICE int64_t nearest_index(int64_t dst, int64_t in_size, int64_t out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  const int64_t i = static_cast<int64_t>(floorf(static_cast<float>(dst) * scale));
  return i < in_size - 1 ? i : in_size - 1;
}

// torch.clamp(v, 0, 1): NaN passes through unchanged.
template <typename T>
FM_HOST_DEVICE T clamp01(T v) {
  return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
}

// The gradient mask of torch.clamp(v, 0, 1): 1 inside [0, 1] (bounds included), else 0.
template <typename T>
FM_HOST_DEVICE bool inside01(T v) {
  return v >= T(0) && v <= T(1);
}

// ---- ATen's CPU bilinear, bit for bit --------------------------------------------------------
// For kernels whose result depends on the exact rounding of F.interpolate's values (an argmax of
// upsampled scores). ATen's CPU resampling file is compiled once per CPU capability: the AVX2 and
// AVX512 builds contract `a * b + c` into fused multiply-adds, the DEFAULT build does not
// (measured against torch 2.13 on x86-64). `kFused` selects which of the two a kernel reproduces.
template <bool kFused, typename T>
inline T multiply_add(T a, T b, T c) {
  if constexpr (kFused) {
    return std::fma(a, b, c);
  } else {
    return a * b + c;
  }
}

// One output coordinate's taps as ATen's CPU compute_source_index_and_lambda makes them: equal
// sizes give the identity taps (i1 == i0, lambda1 = 0); otherwise the source index is
// max(scale * (dst + 0.5) - 0.5, 0) (one fused multiply-add in the fused builds), its floor is
// taken through floorf even for double, and lambda1 is clamped to [0, 1].
template <bool kFused, typename opmath_t>
inline BilinearTap<opmath_t> aten_cpu_bilinear_tap(int64_t dst, int64_t in_size, int64_t out_size) {
  if (in_size == out_size) return {dst, dst, opmath_t(0)};
  const opmath_t scale = static_cast<opmath_t>(in_size) / static_cast<opmath_t>(out_size);
  opmath_t src = multiply_add<kFused>(scale, static_cast<opmath_t>(dst) + opmath_t(0.5), opmath_t(-0.5));
  src = src < opmath_t(0) ? opmath_t(0) : src;
  const int64_t i0 = std::min<int64_t>(static_cast<int64_t>(floorf(src)), in_size - 1);
  const opmath_t lambda1 =
      std::min(std::max(src - static_cast<opmath_t>(i0), opmath_t(0)), opmath_t(1));
  return {i0, i0 + (i0 < in_size - 1 ? 1 : 0), lambda1};
}

}  // namespace fastmatte
