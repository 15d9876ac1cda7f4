// trimap_fusion on the CPU: one task per output row. Each row's classes come from the low-res
// semantic scores, resampled the way ATen's own CPU F.interpolate evaluates them (same taps, same
// weights, same multiply-add order, same rounding to semantic's dtype), so the argmax is the
// reference's; the row of alpha (or of the detail gradient) is then written once.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "argmax.h"
#include "checks.h"
#include "resample.h"

// The fused-multiply-add rows are compiled for AVX2 + FMA, which every CPU that ATen runs its
// AVX2 or AVX512 kernels on has; elsewhere std::fma is what the compiler makes of it.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FM_TARGET_FMA __attribute__((target("avx2,fma")))
#else
#define FM_TARGET_FMA
#endif

namespace fastmatte {
namespace {

constexpr int64_t kClasses = 3;

struct FusionSizes {
  int64_t B, h, w, H, W;
};

// semantic [B, 3, h, w] and the full-resolution tensor (detail, or grad_alpha in the backward)
// [B, 1, H, W]; their dtypes may differ.
FusionSizes check_fusion_inputs(const at::Tensor& semantic, const at::Tensor& full,
                                const char* full_name, int64_t unknown_class, const char* op) {
  check_rank(semantic, op, "semantic", 4, "[B, 3, h, w]");
  check_float_dtype(semantic, op, "semantic");
  check_contiguous(semantic, op, "semantic");
  TORCH_CHECK(semantic.size(1) == kClasses && semantic.size(2) > 0 && semantic.size(3) > 0,
              "fastmatte.", op, ": semantic must be [B, 3, h, w] (fg, unknown, bg scores) with "
              "h, w >= 1, got ", semantic.sizes());
  check_rank(full, op, full_name, 4, "[B, 1, H, W]");
  check_float_dtype(full, op, full_name);
  check_contiguous(full, op, full_name);
  check_same_device(full, semantic, op, full_name, "semantic");
  const int64_t B = semantic.size(0);
  TORCH_CHECK(full.size(0) == B && full.size(1) == 1 && full.size(2) > 0 && full.size(3) > 0,
              "fastmatte.", op, ": ", full_name, " must be [B=", B,
              ", 1, H, W] (semantic's batch) with H, W >= 1, got ", full.sizes());
  check_int_range(unknown_class, 0, kClasses - 1, op, "unknown_class");
  return {B, semantic.size(2), semantic.size(3), full.size(2), full.size(3)};
}

// How ATen (torch 2.13) evaluates F.interpolate(bilinear) of a 3-channel NCHW tensor on the CPU:
// its separable kernel, or, for outputs with H + W <= 128 and whenever torch runs on one thread,
// its channels-last kernel, which sums four weighted taps; and whether its kernels fuse
// multiply-adds (the AVX2 / AVX512 builds on x86-64 do; elsewhere compilers contract too).
struct AtenBilinear {
  bool four_tap, fused;
};

AtenBilinear aten_bilinear(int64_t H, int64_t W) {
  static const bool fused = [] {
#if defined(__x86_64__) || defined(_M_X64)
    const std::string capability = at::get_cpu_capability();
    return capability == "AVX2" || capability == "AVX512";
#else
    return true;
#endif
  }();
  return {H + W <= 128 || at::get_num_threads() == 1, fused};
}

// One axis's taps and weights as ATen keeps them: the separable kernel stores the weights in
// semantic's dtype (lambda0 = 1 - lambda1 rounded there too), the four-tap kernel in opmath.
template <typename scalar_t>
struct AxisWeights {
  using opmath_t = at::opmath_type<scalar_t>;
  std::vector<int64_t> i0, i1;
  std::vector<opmath_t> w0, w1;

  AxisWeights(int64_t in_size, int64_t out_size, AtenBilinear how)
      : i0(out_size), i1(out_size), w0(out_size), w1(out_size) {
    for (int64_t d = 0; d < out_size; ++d) {
      const auto tap = how.fused ? aten_cpu_bilinear_tap<true, opmath_t>(d, in_size, out_size)
                                 : aten_cpu_bilinear_tap<false, opmath_t>(d, in_size, out_size);
      i0[d] = tap.i0;
      i1[d] = tap.i1;
      if (how.four_tap) {
        w1[d] = tap.lambda1;
        w0[d] = opmath_t(1) - tap.lambda1;
      } else {
        const scalar_t lambda1 = static_cast<scalar_t>(tap.lambda1);
        w1[d] = static_cast<opmath_t>(lambda1);
        w0[d] = static_cast<opmath_t>(static_cast<scalar_t>(static_cast<scalar_t>(1) - lambda1));
      }
    }
  }
};

// One thread's memory between output rows of the separable path: two source rows resampled to
// width W (3 classes each) and which (plane * h + source row) each holds, and the output row's
// scores rounded to semantic's dtype. A few rows, never the full-resolution tensor.
template <typename scalar_t>
struct RowScratch {
  using opmath_t = at::opmath_type<scalar_t>;
  std::vector<opmath_t> wide[2];
  int64_t key[2] = {-1, -1};
  std::vector<scalar_t> scores;

  explicit RowScratch(int64_t W)
      : wide{std::vector<opmath_t>(kClasses * W), std::vector<opmath_t>(kClasses * W)},
        scores(kClasses * W) {}
};

// The argmax class of every pixel of one output row, from semantic [planes, 3, h, w].
template <typename scalar_t>
class SemanticClasses {
  using opmath_t = at::opmath_type<scalar_t>;

 public:
  SemanticClasses(const at::Tensor& semantic, const FusionSizes& s)
      : data_(semantic.data_ptr<scalar_t>()), h_(s.h), w_(s.w), H_(s.H), W_(s.W),
        identity_(s.h == s.H && s.w == s.W), how_(aten_bilinear(s.H, s.W)),
        ys_(s.h, s.H, how_), xs_(s.w, s.W, how_) {}

  // classes[x] for output row `row` = plane * H + y.
  void row(int64_t row, uint8_t* classes, RowScratch<scalar_t>& scratch) const {
    const int64_t plane = row / H_, y = row % H_;
    how_.fused ? row_fused(plane, y, classes, scratch) : row_unfused(plane, y, classes, scratch);
  }

 private:
  FM_TARGET_FMA void row_fused(int64_t plane, int64_t y, uint8_t* classes,
                               RowScratch<scalar_t>& scratch) const {
    any_row<true>(plane, y, classes, scratch);
  }

  void row_unfused(int64_t plane, int64_t y, uint8_t* classes, RowScratch<scalar_t>& scratch) const {
    any_row<false>(plane, y, classes, scratch);
  }

  template <bool kFused>
  C10_ALWAYS_INLINE void any_row(int64_t plane, int64_t y, uint8_t* classes,
                                 RowScratch<scalar_t>& scratch) const {
    if (identity_) {  // no resize at all, as the reference skips F.interpolate
      const scalar_t* s0 = data_ + (plane * kClasses * h_ + y) * w_;
      classes_of(s0, s0 + h_ * w_, s0 + 2 * h_ * w_, classes);
    } else if (how_.four_tap) {
      four_tap_row<kFused>(plane, y, classes, scratch.scores.data());
    } else {
      separable_row<kFused>(plane, y, classes, scratch);
    }
  }

  const scalar_t* source_row(int64_t plane, int64_t c, int64_t i) const {
    return data_ + ((plane * kClasses + c) * h_ + i) * w_;
  }

  // ATen's separable order: each source row resampled along x first, t = a*w0 + b*w1, then the
  // two rows blended, t0*w0 + t1*w1 (each a fused multiply-add in the fused builds).
  template <bool kFused>
  C10_ALWAYS_INLINE void separable_row(int64_t plane, int64_t y, uint8_t* classes,
                                       RowScratch<scalar_t>& scratch) const {
    const int top = wide_row<kFused>(plane, ys_.i0[y], -1, scratch);
    const int bottom = wide_row<kFused>(plane, ys_.i1[y], top, scratch);
    const opmath_t* t0 = scratch.wide[top].data();
    const opmath_t* t1 = scratch.wide[bottom].data();
    const opmath_t w0 = ys_.w0[y], w1 = ys_.w1[y];
    scalar_t* scores = scratch.scores.data();
    for (int64_t i = 0; i < kClasses * W_; ++i)
      scores[i] = static_cast<scalar_t>(multiply_add<kFused>(t0[i], w0, t1[i] * w1));
    classes_of(scores, scores + W_, scores + 2 * W_, classes);
  }

  // classes[x] = argmax over (s0[x], s1[x], s2[x]) for the row.
  C10_ALWAYS_INLINE void classes_of(const scalar_t* s0, const scalar_t* s1, const scalar_t* s2,
                                    uint8_t* classes) const {
    const int64_t W = W_;  // a local bound: uint8_t stores could alias the member
    for (int64_t x = 0; x < W; ++x)
      classes[x] = argmax3(static_cast<opmath_t>(s0[x]), static_cast<opmath_t>(s1[x]),
                           static_cast<opmath_t>(s2[x]));
  }

  // The slot of scratch holding source row i of `plane` resampled to width W, computing it into
  // the older slot (never `keep`) when it is not there yet.
  template <bool kFused>
  C10_ALWAYS_INLINE int wide_row(int64_t plane, int64_t i, int keep,
                                 RowScratch<scalar_t>& scratch) const {
    const int64_t key = plane * h_ + i;
    if (scratch.key[0] == key) return 0;
    if (scratch.key[1] == key) return 1;
    const int slot = keep >= 0 ? 1 - keep : (scratch.key[0] < scratch.key[1] ? 0 : 1);
    scratch.key[slot] = key;
    opmath_t* out = scratch.wide[slot].data();
    for (int64_t c = 0; c < kClasses; ++c, out += W_) {
      const scalar_t* src = source_row(plane, c, i);
      for (int64_t x = 0; x < W_; ++x)
        out[x] = multiply_add<kFused>(static_cast<opmath_t>(src[xs_.i0[x]]), xs_.w0[x],
                                      static_cast<opmath_t>(src[xs_.i1[x]]) * xs_.w1[x]);
    }
    return slot;
  }

  // ATen's channels-last order: ((a*w00 + b*w01) + c*w10) + d*w11 with opmath weights
  // w00 = wy0 * wx0 and so on. Its fused builds contract each step into a multiply-add; which
  // product of the first sum they fuse differs by dtype (measured: b*w01 for float16, a*w00 for
  // the others), so the first step follows that.
  template <bool kFused>
  C10_ALWAYS_INLINE void four_tap_row(int64_t plane, int64_t y, uint8_t* classes,
                                      scalar_t* scores) const {
    const int64_t y0 = ys_.i0[y], y1 = ys_.i1[y];
    const opmath_t wy0 = ys_.w0[y], wy1 = ys_.w1[y];
    for (int64_t x = 0; x < W_; ++x) {
      const int64_t x0 = xs_.i0[x], x1 = xs_.i1[x];
      const opmath_t w00 = wy0 * xs_.w0[x], w01 = wy0 * xs_.w1[x];
      const opmath_t w10 = wy1 * xs_.w0[x], w11 = wy1 * xs_.w1[x];
      for (int64_t c = 0; c < kClasses; ++c) {
        const scalar_t* r0 = source_row(plane, c, y0);
        const scalar_t* r1 = source_row(plane, c, y1);
        const opmath_t a = static_cast<opmath_t>(r0[x0]), b = static_cast<opmath_t>(r0[x1]);
        opmath_t v = std::is_same_v<scalar_t, at::Half> ? multiply_add<kFused>(b, w01, a * w00)
                                                         : multiply_add<kFused>(a, w00, b * w01);
        v = multiply_add<kFused>(static_cast<opmath_t>(r1[x0]), w10, v);
        v = multiply_add<kFused>(static_cast<opmath_t>(r1[x1]), w11, v);
        scores[c] = static_cast<scalar_t>(v);
      }
      classes[x] = argmax3(static_cast<opmath_t>(scores[0]), static_cast<opmath_t>(scores[1]),
                           static_cast<opmath_t>(scores[2]));
    }
  }

  const scalar_t* data_;
  int64_t h_, w_, H_, W_;
  bool identity_;
  AtenBilinear how_;
  AxisWeights<scalar_t> ys_, xs_;
};

// Runs write(row, classes) on every output row (b, y) of the B x H x W result, rows split over
// the threads in contiguous ranges (so consecutive rows share their resampled source rows).
template <typename Write>
void for_each_class_row(const at::Tensor& semantic, const FusionSizes& s, const Write& write) {
  if (s.B == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, semantic.scalar_type(), "trimap_fusion_classes", [&] {
    const SemanticClasses<scalar_t> rows(semantic, s);
    at::parallel_for(0, s.B * s.H, std::max<int64_t>(1, 16384 / s.W), [&](int64_t begin, int64_t end) {
      RowScratch<scalar_t> scratch(s.W);
      std::vector<uint8_t> classes(s.W);
      for (int64_t row = begin; row < end; ++row) {
        rows.row(row, classes.data(), scratch);
        write(row, classes.data());
      }
    });
  });
}

at::Tensor trimap_fusion_cpu(const at::Tensor& semantic, const at::Tensor& detail,
                             int64_t fg_class, int64_t unknown_class) {
  const char* op = "trimap_fusion";
  const FusionSizes s = check_fusion_inputs(semantic, detail, "detail", unknown_class, op);
  check_int_range(fg_class, 0, kClasses - 1, op, "fg_class");
  TORCH_CHECK(fg_class != unknown_class, "fastmatte.", op,
              ": fg_class and unknown_class must differ, both are ", fg_class);
  at::Tensor alpha = at::empty_like(detail);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, detail.scalar_type(), "trimap_fusion_cpu", [&] {
    const scalar_t* d = detail.data_ptr<scalar_t>();
    scalar_t* a = alpha.data_ptr<scalar_t>();
    const scalar_t one(1), zero(0);
    const int64_t W = s.W;
    const uint8_t fg = fg_class, unknown = unknown_class;
    for_each_class_row(semantic, s, [&](int64_t row, const uint8_t* k) {
      const scalar_t* d_row = d + row * W;
      scalar_t* a_row = a + row * W;
      for (int64_t x = 0; x < W; ++x) {
        const scalar_t v = d_row[x];  // read unconditionally: the loop stays branch-free
        a_row[x] = k[x] == unknown ? v : (k[x] == fg ? one : zero);
      }
    });
  });
  return alpha;
}

at::Tensor trimap_fusion_backward_cpu(const at::Tensor& grad_alpha, const at::Tensor& semantic,
                                      int64_t unknown_class) {
  const FusionSizes s =
      check_fusion_inputs(semantic, grad_alpha, "grad_alpha", unknown_class, "trimap_fusion_backward");
  at::Tensor grad_detail = at::empty_like(grad_alpha);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_alpha.scalar_type(), "trimap_fusion_backward_cpu", [&] {
    const scalar_t* g = grad_alpha.data_ptr<scalar_t>();
    scalar_t* out = grad_detail.data_ptr<scalar_t>();
    const int64_t W = s.W;
    const uint8_t unknown = unknown_class;
    for_each_class_row(semantic, s, [&](int64_t row, const uint8_t* k) {
      const scalar_t* g_row = g + row * W;
      scalar_t* out_row = out + row * W;
      for (int64_t x = 0; x < W; ++x) {
        const scalar_t v = g_row[x];
        out_row[x] = k[x] == unknown ? v : scalar_t(0);
      }
    });
  });
  return grad_detail;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) {
  m.impl("trimap_fusion", &trimap_fusion_cpu);
  m.impl("trimap_fusion_backward", &trimap_fusion_backward_cpu);
}

}  // namespace fastmatte
