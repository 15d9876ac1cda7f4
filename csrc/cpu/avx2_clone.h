// Hot CPU loops compiled twice, for the baseline ISA and for AVX2 + FMA, the one to run chosen at
// run time: the extension is built without -march, so that one wheel runs on every x86-64 CPU.
// A kernel puts its loops in a `run(...) const` member marked FM_INLINE (so that they are
// compiled inside each clone) and calls run_with_best_isa(body, args...).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FM_HAS_AVX2_CLONE 1
#define FM_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define FM_HAS_AVX2_CLONE 0
#define FM_TARGET_AVX2
#endif
#define FM_INLINE inline __attribute__((always_inline))

namespace fastmatte {

inline bool cpu_has_avx2() {
#if FM_HAS_AVX2_CLONE
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2;
#else
  return false;
#endif
}

template <typename Body, typename... Args>
void run_baseline(const Body& body, Args... args) {
  body.run(args...);
}

#if FM_HAS_AVX2_CLONE
template <typename Body, typename... Args>
FM_TARGET_AVX2 void run_avx2(const Body& body, Args... args) {
  body.run(args...);
}
#endif

// body.run(args...) in the AVX2 + FMA clone where the CPU has both, else in the baseline one.
template <typename Body, typename... Args>
void run_with_best_isa(const Body& body, Args... args) {
#if FM_HAS_AVX2_CLONE
  if (cpu_has_avx2()) return run_avx2(body, args...);
#endif
  run_baseline(body, args...);
}

}  // namespace fastmatte
