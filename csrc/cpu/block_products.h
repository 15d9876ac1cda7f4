// Small dense products over a block of pixels, for CPU kernels that apply per-pixel 1x1
// convolutions: the block is a [channels, width] matrix, pixels contiguous along a row, and the
// weights a small row-major matrix. Vectors run along the pixels, a tile of the result stays in
// registers over the inner dimension, and each function is compiled for x86-64-v4 (AVX-512
// machines, 256-bit vectors, 32 registers), x86-64-v3 (AVX2 + FMA) and baseline x86-64, the
// best one picked at load time (target_clones): the build itself targets baseline x86-64.
// Everything has internal linkage: include this in one .cpp per op.
#pragma once
#include <cstdint>

#include "cpu/simd.h"

namespace fastmatte {
namespace {

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FM_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FM_ISA_CLONES
#endif
#define FM_ALWAYS_INLINE inline __attribute__((always_inline))

// 32 bytes of T: one AVX register, two SSE2 or NEON registers.
constexpr int kVecBytes = 32;
template <typename T> using Vec = typename Simd<T, kVecBytes>::vec;
template <typename T> constexpr int64_t kLanes = kVecBytes / sizeof(T);
template <typename T> FM_ALWAYS_INLINE Vec<T> vload(const T* p) { return load_vec<kVecBytes>(p); }

// Rows [r0, r0 + R) x columns [p, p + 2 vectors) of out = a [rows, depth] @ b [depth, width].
template <int R, typename T>
FM_ALWAYS_INLINE void matmul_tile(const T* a, int64_t depth, const T* b, int64_t ld, T* out,
                                  int64_t r0, int64_t p) {
  constexpr int64_t L = kLanes<T>;
  Vec<T> acc[R][2] = {};
  for (int64_t k = 0; k < depth; ++k) {
    const Vec<T> b0 = vload(b + k * ld + p), b1 = vload(b + k * ld + p + L);
    for (int r = 0; r < R; ++r) {
      const T w = a[(r0 + r) * depth + k];
      acc[r][0] += w * b0;
      acc[r][1] += w * b1;
    }
  }
  for (int r = 0; r < R; ++r) {
    vstore(out + (r0 + r) * ld + p, acc[r][0]);
    vstore(out + (r0 + r) * ld + p + L, acc[r][1]);
  }
}

template <typename T>
FM_ALWAYS_INLINE void matmul_impl(const T* a, int64_t rows, int64_t depth, const T* b,
                                  int64_t ld, int64_t width, T* out) {
  for (int64_t p = 0; p < width; p += 2 * kLanes<T>) {
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) matmul_tile<4>(a, depth, b, ld, out, r, p);
    if (r + 2 <= rows) matmul_tile<2>(a, depth, b, ld, out, r, p), r += 2;
    if (r < rows) matmul_tile<1>(a, depth, b, ld, out, r, p);
  }
}

// out [rows, width] = a [rows, depth] (dense, row-major) @ b [depth, width]; b and out have
// row stride ld; width is a multiple of 2 vectors (16 floats, 8 doubles).
FM_ISA_CLONES void matmul(const float* a, int64_t rows, int64_t depth, const float* b, int64_t ld,
                          int64_t width, float* out) {
  matmul_impl(a, rows, depth, b, ld, width, out);
}
FM_ISA_CLONES void matmul(const double* a, int64_t rows, int64_t depth, const double* b, int64_t ld,
                          int64_t width, double* out) {
  matmul_impl(a, rows, depth, b, ld, width, out);
}

// out[i * ldo + j] += sum over p < width of a[i][p] * b[j][p], for a RA x RB tile at (i0, j0).
template <int RA, int RB, typename T>
FM_ALWAYS_INLINE void dots_tile(const T* a, const T* b, int64_t ld, int64_t width, T* out,
                                int64_t ldo, int64_t i0, int64_t j0) {
  Vec<T> acc[RA][RB] = {};
  for (int64_t p = 0; p < width; p += kLanes<T>) {
    Vec<T> bv[RB];
    for (int j = 0; j < RB; ++j) bv[j] = vload(b + (j0 + j) * ld + p);
    for (int i = 0; i < RA; ++i) {
      const Vec<T> av = vload(a + (i0 + i) * ld + p);
      for (int j = 0; j < RB; ++j) acc[i][j] += av * bv[j];
    }
  }
  for (int i = 0; i < RA; ++i)
    for (int j = 0; j < RB; ++j) {
      T total = 0;
      for (int64_t l = 0; l < kLanes<T>; ++l) total += acc[i][j][l];
      out[(i0 + i) * ldo + j0 + j] += total;
    }
}

template <int RA, typename T>
FM_ALWAYS_INLINE void dots_rows(const T* a, const T* b, int64_t b_rows, int64_t ld, int64_t width,
                                T* out, int64_t ldo, int64_t i0) {
  int64_t j = 0;
  for (; j + 2 <= b_rows; j += 2) dots_tile<RA, 2>(a, b, ld, width, out, ldo, i0, j);
  if (j < b_rows) dots_tile<RA, 1>(a, b, ld, width, out, ldo, i0, j);
}

template <typename T>
FM_ALWAYS_INLINE void dots_impl(const T* a, int64_t a_rows, const T* b, int64_t b_rows,
                                int64_t ld, int64_t width, T* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + 4 <= a_rows; i += 4) dots_rows<4>(a, b, b_rows, ld, width, out, ldo, i);
  if (i + 2 <= a_rows) dots_rows<2>(a, b, b_rows, ld, width, out, ldo, i), i += 2;
  if (i < a_rows) dots_rows<1>(a, b, b_rows, ld, width, out, ldo, i);
}

// out [a_rows, ldo] += a [a_rows, width] @ b [b_rows, width]^T, both of row stride ld, each
// entry's sum over the width in a fixed order; width is a multiple of one vector. (Not every
// kernel that includes this file uses both products.)
[[maybe_unused]] FM_ISA_CLONES void add_dots(const float* a, int64_t a_rows, const float* b, int64_t b_rows,
                            int64_t ld, int64_t width, float* out, int64_t ldo) {
  dots_impl(a, a_rows, b, b_rows, ld, width, out, ldo);
}
[[maybe_unused]] FM_ISA_CLONES void add_dots(const double* a, int64_t a_rows, const double* b, int64_t b_rows,
                            int64_t ld, int64_t width, double* out, int64_t ldo) {
  dots_impl(a, a_rows, b, b_rows, ld, width, out, ldo);
}

}  // namespace
}  // namespace fastmatte
