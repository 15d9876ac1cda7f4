// GCC/Clang vector types of a chosen width, and unaligned loads and stores of them, for CPU
// kernels vectorized by hand: an operation on a vector is one SIMD instruction per register of
// the ISA the code is compiled for (16 bytes: one SSE2 or NEON register; 32 bytes: one AVX
// register, or two SSE2 / NEON registers).
#pragma once
#include <cstdint>
#include <cstring>

namespace fastmatte {

template <typename T, int Bytes>
struct Simd {
  typedef T vec __attribute__((vector_size(Bytes)));
};

// 32-bit integer lanes as wide as a float vector of the same width (for bit manipulation).
template <int Bytes>
struct SimdInt32 {
  typedef int32_t vec __attribute__((vector_size(Bytes)));
};

// The vector helpers are always inlined, so GCC's warning that 32-byte vectors are passed
// differently without AVX does not apply. It is reported where templates are instantiated, at
// the end of the including file, so it is turned off for that whole file.
#pragma GCC diagnostic ignored "-Wpsabi"

// Unaligned load of a Bytes-wide vector of T (a kernel names its width once: see vload there).
template <int Bytes, typename T>
inline __attribute__((always_inline)) typename Simd<T, Bytes>::vec load_vec(const T* p) {
  typename Simd<T, Bytes>::vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Unaligned store of a vector to T elements.
template <typename T, typename V>
inline __attribute__((always_inline)) void vstore(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(v));
}

}  // namespace fastmatte
