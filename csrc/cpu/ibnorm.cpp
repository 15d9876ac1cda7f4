// ibnorm on the CPU: MODNet's IBNorm in inference (BatchNorm folded to an affine map on channels
// [0, K), InstanceNorm on [K, C)) and its ReLU, in two passes over x.
//
// Pass 1 takes the mean and variance of every instance channel of every sample. The values are cut
// into blocks that stay in L1; a block's mean is its sum over its size and its M2 the sum of squared
// deviations from that mean (a second read, from L1), both in the math type (float32; float64 for
// float64), and the blocks are merged in double with Chan et al.'s pairwise update. A large mean
// relative to the spread costs no precision: nothing subtracts two large numbers. Blocks and the
// tasks that own them depend on the shapes only, and the tasks' partial moments are merged in index
// order, so every thread count gives the same bits.
// The statistics are those of x - m, m = the channel's first value in the sample, so that a large
// mean is a small number `dev` in them.
// Pass 2 writes y = max((x - m) * a + d, 0) with per-(sample, channel) coefficients: m = 0,
// a = scale, d = shift for the BatchNorm channels; m = that first value, a = w * rstd,
// d = bias - dev * a for the instance channels. Keeping m apart from d (rather than the shorter
// x * a + (bias - mean * a)) keeps y exact to the math type's precision when the mean is large:
// x - m is exact for x near m, where x * a - mean * a would cancel two large terms.
//
// NCHW: tasks are fixed segments of one (sample, channel) plane; only the instance planes are read
// by pass 1. Channels-last: tasks are fixed runs of pixels of one sample (so batch 1 with few
// channels still splits into many tasks), their per-channel partial moments merged afterwards. The
// pixels are taken in small groups whose values fill whole vectors; both passes walk the groups in
// memory order with the vector accumulators or the coefficients (tiled over the group) in
// registers, and pass 1 skips the cache lines that hold only BatchNorm channels.
// Any other layout is computed in a contiguous copy and copied into empty_like(x).
// The loops are compiled for the baseline ISA and again for AVX2 + FMA, picked at run time.
// The backward is ATen arithmetic: see below.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/avx2_clone.h"
#include "cpu/simd.h"


namespace fastmatte {
namespace {

constexpr int64_t kLanes = 32;        // independent accumulators of a reduction (vectorized)
constexpr int64_t kBlock = 2048;      // elements of a plane a block's two reads share in L1
constexpr int64_t kPixelBlock = 8192;  // values (pixels x C) of a channels-last block
constexpr int64_t kTask = 16384;      // elements per parallel task

struct Shape {
  int64_t B, C, K, Ci, HW;
};

Shape check_inputs(const at::Tensor& x, const at::Tensor& bn_scale, const at::Tensor& bn_shift,
                   const at::Tensor& in_weight, const at::Tensor& in_bias, double eps, const char* op) {
  check_rank(x, op, "x", 4, "[B, C, H, W]");
  check_float_dtype(x, op, "x");
  TORCH_CHECK(x.size(2) > 0 && x.size(3) > 0, "fastmatte.", op,
              ": x must be [B, C, H, W] with H, W >= 1, got ", x.sizes());
  const int64_t C = x.size(1);
  const auto check_vector = [&](const at::Tensor& t, const char* name, const char* layout) {
    check_rank(t, op, name, 1, layout);
    check_dtype(t, x.scalar_type(), op, name);
    check_same_device(t, x, op, name, "x");
  };
  check_vector(bn_scale, "bn_scale", "[K]");
  check_vector(bn_shift, "bn_shift", "[K]");
  check_vector(in_weight, "in_weight", "[C - K]");
  check_vector(in_bias, "in_bias", "[C - K]");
  const int64_t K = bn_scale.size(0);
  TORCH_CHECK(K <= C, "fastmatte.", op, ": bn_scale must be [K] with K <= C = ", C,
              " (x's channels), got ", bn_scale.sizes());
  TORCH_CHECK(bn_shift.size(0) == K, "fastmatte.", op, ": bn_shift must have bn_scale's shape [",
              K, "], got ", bn_shift.sizes());
  const auto check_instance = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.size(0) == C - K, "fastmatte.", op, ": ", name, " must be [C - K = ", C - K,
                "] (x's ", C, " channels less bn_scale's ", K, "), got ", t.sizes());
  };
  check_instance(in_weight, "in_weight");
  check_instance(in_bias, "in_bias");
  TORCH_CHECK(std::isfinite(eps) && eps > 0, "fastmatte.", op,
              ": eps must be a positive finite number, got ", eps);
  return {x.size(0), C, K, C - K, x.size(2) * x.size(3)};
}

// Mean and M2 (sum of squared deviations) of a run of values, merged block by block in double.
struct Moments {
  double n = 0, mean = 0, m2 = 0;

  FM_INLINE void add(double count, double block_mean, double block_m2) {
    const double total = n + count;
    const double delta = block_mean - mean;
    mean += delta * (count / total);
    m2 += block_m2 + delta * delta * (n * count / total);
    n = total;
  }
  FM_INLINE void add(const Moments& other) {
    if (other.n > 0) add(other.n, other.mean, other.m2);
  }
};

// sum(x[i] - shift) and sum((x[i] - shift - mean)^2) over n contiguous values, in kLanes
// independent lanes that the compiler turns into vector registers (a plain running sum would not
// vectorize: float addition is not associative), then the lanes in a fixed order.
template <typename acc_t, typename scalar_t>
FM_INLINE acc_t block_sum(const scalar_t* __restrict x, int64_t n, acc_t shift) {
  acc_t lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] += static_cast<acc_t>(x[i + j]) - shift;
  acc_t total = 0;
  for (; i < n; ++i) total += static_cast<acc_t>(x[i]) - shift;
  for (int64_t j = 0; j < kLanes; ++j) total += lanes[j];
  return total;
}

template <typename acc_t, typename scalar_t>
FM_INLINE acc_t block_m2(const scalar_t* __restrict x, int64_t n, acc_t shift, acc_t mean) {
  acc_t lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) {
      const acc_t d = (static_cast<acc_t>(x[i + j]) - shift) - mean;
      lanes[j] += d * d;
    }
  acc_t total = 0;
  for (; i < n; ++i) {
    const acc_t d = (static_cast<acc_t>(x[i]) - shift) - mean;
    total += d * d;
  }
  for (int64_t j = 0; j < kLanes; ++j) total += lanes[j];
  return total;
}

// torch.relu: max(v, 0), a NaN passes through (NaN < 0 is false); for scalars and vectors.
template <bool Relu, typename T>
FM_INLINE T activate(T v) {
  if constexpr (Relu) return v < 0 ? T{} : v;
  return v;
}

// Pass 1, NCHW: task t is segment t % segments of instance plane t / segments. The moments are
// those of x - shift, shift = the plane's first value (see coefficients()).
template <typename scalar_t>
struct PlaneMoments {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  Shape s;
  int64_t segments;
  Moments* out;  // one per task

  FM_INLINE void run(int64_t begin, int64_t end) const {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t plane = t / segments, b = plane / s.Ci, c = s.K + plane % s.Ci;
      const scalar_t* p = x + (b * s.C + c) * s.HW;
      const int64_t start = (t % segments) * kTask, stop = std::min(s.HW, start + kTask);
      const acc_t shift = static_cast<acc_t>(p[0]);
      Moments m;
      for (int64_t i = start; i < stop; i += kBlock) {
        const int64_t n = std::min(kBlock, stop - i);
        const acc_t mean = block_sum<acc_t>(p + i, n, shift) / static_cast<acc_t>(n);
        m.add(static_cast<double>(n), mean, block_m2<acc_t>(p + i, n, shift, mean));
      }
      out[t] = m;
    }
  }
};

// Vectors of 32 bytes (one AVX register, two SSE2 ones) of the math type. A channels-last group of
// pixels is at least kGroupVecs of them (the apply pass holds that many vectors of each of its 3
// coefficients in registers when it is exactly that); a column sum keeps up to kMaxStripVecs
// accumulators in registers.
constexpr int kVecBytes = 32;
constexpr int kGroupVecs = 4;
constexpr int kMaxStripVecs = 8;
template <typename T> using Vec = typename Simd<T, kVecBytes>::vec;
template <typename T> constexpr int64_t kVecLanes = kVecBytes / sizeof(T);

// A vector of acc_t from kVecLanes<acc_t> values of scalar_t (converted from the half types).
template <typename acc_t, typename scalar_t>
FM_INLINE Vec<acc_t> load_as(const scalar_t* p) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    return load_vec<kVecBytes>(p);
  } else {
    acc_t wide[kVecLanes<acc_t>];
    for (int64_t i = 0; i < kVecLanes<acc_t>; ++i) wide[i] = static_cast<acc_t>(p[i]);
    return load_vec<kVecBytes>(wide);
  }
}

template <typename acc_t, typename scalar_t>
FM_INLINE void store_as(scalar_t* p, const Vec<acc_t>& v) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    vstore(p, v);
  } else {
    for (int64_t i = 0; i < kVecLanes<acc_t>; ++i) p[i] = static_cast<scalar_t>(v[i]);
  }
}

// Scratch rows of a thread, padded so that no two threads' rows share a cache line.
template <typename T>
struct Scratch {
  static constexpr int64_t kPad = 64 / sizeof(T);
  std::vector<T> data;
  Scratch(int64_t rows, int64_t width) : data(rows * (width + kPad) + kPad) {}
  T* row(int64_t i, int64_t width) { return data.data() + kPad + i * (width + kPad); }
};

// Pass 1, channels-last: task t is run t % runs (`run_pixels` pixels) of sample t / runs. The
// pixels are taken in groups of R, a group being `width` = R * C values, a whole number of vectors;
// a block of `block` pixels (in L1) is then a [groups, width] matrix whose columns are summed into
// `width` lanes, in memory order with the accumulators in registers (several strips of up to
// kMaxStripVecs vectors when the width is larger). Folding the lanes gives each channel's sum, and
// so the block's means; the squared deviations from them are added and folded the same way. The
// moments are those of x - shift, shift = the sample's first pixel (see coefficients()); the
// shifts and the block's means are rows tiled over the group.
template <typename scalar_t>
struct PixelMoments {
  using acc_t = at::opmath_type<scalar_t>;
  static constexpr int64_t L = kVecLanes<acc_t>;
  using Strips = std::vector<std::pair<int64_t, int64_t>>;  // (first column, vectors)
  const scalar_t* x;
  Shape s;
  int64_t R, block, run_pixels, runs;
  Moments* out;  // Ci per task

  // lanes[j0, j0 + V vectors) = the column sums of x - shift (Square: of (x - shift - mean)^2) over
  // `groups` rows of the block; `ahead`: the distance to prefetch at (0: none).
  template <int V, bool Square>
  FM_INLINE void strip(const scalar_t* block, int64_t groups, int64_t j0, const acc_t* shift,
                       const acc_t* mean, acc_t* lanes, int64_t ahead) const {
    const int64_t width = R * s.C;
    Vec<acc_t> acc[V] = {};
    for (int64_t g = 0; g < groups; ++g) {
      const scalar_t* src = block + g * width + j0;
      if (ahead > 0)
        for (int64_t k = 0; k < V * L * int64_t(sizeof(scalar_t)); k += 64)
          __builtin_prefetch(reinterpret_cast<const char*>(src + ahead) + k);
      for (int k = 0; k < V; ++k) {
        const Vec<acc_t> v = load_as<acc_t>(src + k * L) - load_vec<kVecBytes>(shift + j0 + k * L);
        if constexpr (Square) {
          const Vec<acc_t> d = v - load_vec<kVecBytes>(mean + j0 + k * L);
          acc[k] += d * d;
        } else {
          acc[k] += v;
        }
      }
    }
    for (int k = 0; k < V; ++k) vstore(lanes + j0 + k * L, acc[k]);
  }

  // The strips that cover the group's 64-byte spans (cache lines, if the group starts on one)
  // holding an instance channel: runs of their vectors, cut to kMaxStripVecs. The other spans
  // (BatchNorm channels only) are not read: with C = 32 or 64 and K = C / 2 in float32 that halves
  // the memory read.
  Strips strips() const {
    Strips out;
    const int64_t width = R * s.C, span = std::max<int64_t>(L, 64 / sizeof(scalar_t));
    for (int64_t v = 0; v < width / L; ++v) {
      bool instance = false;
      const int64_t first = v * L / span * span;
      for (int64_t j = first; j < std::min(width, first + span); ++j) instance |= j % s.C >= s.K;
      if (!instance) continue;
      if (!out.empty() && out.back().first + out.back().second * L == v * L &&
          out.back().second < kMaxStripVecs) {
        ++out.back().second;
      } else {
        out.emplace_back(v * L, 1);
      }
    }
    return out;
  }

  // The lanes of the pixels [p0, p1), then per instance channel the sum of its R lanes into `folded`.
  template <bool Square>
  FM_INLINE void add_block(const Strips& strips, const scalar_t* base, int64_t p0, int64_t p1,
                           const acc_t* __restrict shift, const acc_t* __restrict mean,
                           acc_t* __restrict lanes, acc_t* __restrict folded) const {
    const int64_t width = R * s.C, groups = (p1 - p0) / R;
    const scalar_t* block = base + p0 * s.C;
    // Several strips walk the block's columns: meanwhile the next block (if whole) is fetched.
    const int64_t ahead = !Square && strips.size() > 1 && p1 + (p1 - p0) <= s.HW ? (p1 - p0) * s.C : 0;
    for (const auto& [j0, vectors] : strips) {
      switch (vectors) {
        case 1: strip<1, Square>(block, groups, j0, shift, mean, lanes, ahead); break;
        case 2: strip<2, Square>(block, groups, j0, shift, mean, lanes, ahead); break;
        case 3: strip<3, Square>(block, groups, j0, shift, mean, lanes, ahead); break;
        case 4: strip<4, Square>(block, groups, j0, shift, mean, lanes, ahead); break;
        case 5: strip<5, Square>(block, groups, j0, shift, mean, lanes, ahead); break;
        case 6: strip<6, Square>(block, groups, j0, shift, mean, lanes, ahead); break;
        case 7: strip<7, Square>(block, groups, j0, shift, mean, lanes, ahead); break;
        default: strip<8, Square>(block, groups, j0, shift, mean, lanes, ahead); break;
      }
    }
    const scalar_t* __restrict tail = block + groups * width;  // a last group of fewer pixels
    const int64_t n = (p1 - p0 - groups * R) * s.C;
    for (int64_t j = 0; j < n; ++j) {
      const acc_t v = static_cast<acc_t>(tail[j]) - shift[j];
      if constexpr (Square) {
        lanes[j] += (v - mean[j]) * (v - mean[j]);
      } else {
        lanes[j] += v;
      }
    }
    std::fill(folded, folded + s.Ci, acc_t(0));
    for (int64_t r = 0; r < R; ++r) {
      const acc_t* __restrict lane = lanes + r * s.C + s.K;
      for (int64_t c = 0; c < s.Ci; ++c) folded[c] += lane[c];
    }
  }

  FM_INLINE void run(int64_t begin, int64_t end) const {
    const int64_t width = R * s.C;
    Scratch<acc_t> scratch(5, width);
    acc_t* __restrict lanes = scratch.row(0, width);
    acc_t* __restrict shift = scratch.row(1, width);  // the sample's first pixel, tiled R times
    acc_t* __restrict mean = scratch.row(2, width);   // the block's means, tiled R times (0 on BN)
    acc_t* __restrict folded = scratch.row(3, width);
    acc_t* __restrict block_mean = scratch.row(4, width);
    const Strips columns = strips();
    int64_t shift_sample = -1;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / runs, start = (t % runs) * run_pixels;
      const int64_t stop = std::min(s.HW, start + run_pixels);
      const scalar_t* base = x + b * s.HW * s.C;
      if (b != shift_sample) {
        for (int64_t j = 0; j < width; ++j) shift[j] = static_cast<acc_t>(base[j % s.C]);
        shift_sample = b;
      }
      Moments* m = out + t * s.Ci;
      for (int64_t c = 0; c < s.Ci; ++c) m[c] = Moments();
      for (int64_t p0 = start; p0 < stop; p0 += block) {
        const int64_t p1 = std::min(stop, p0 + block);
        const acc_t count = static_cast<acc_t>(p1 - p0);
        add_block<false>(columns, base, p0, p1, shift, mean, lanes, block_mean);
        for (int64_t c = 0; c < s.Ci; ++c) block_mean[c] /= count;
        for (int64_t r = 0; r < R; ++r) {
          acc_t* __restrict row = mean + r * s.C + s.K;
          for (int64_t c = 0; c < s.Ci; ++c) row[c] = block_mean[c];
        }
        add_block<true>(columns, base, p0, p1, shift, mean, lanes, folded);
        for (int64_t c = 0; c < s.Ci; ++c) m[c].add(static_cast<double>(count), block_mean[c], folded[c]);
      }
    }
  }
};

// Pass 2, NCHW: task t is segment t % segments of plane t / segments (all C channels).
template <typename scalar_t, bool Relu>
struct PlaneApply {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  scalar_t* y;
  const acc_t* coef;  // (m, a, d) per (sample, channel)
  int64_t HW, segments;

  FM_INLINE void run(int64_t begin, int64_t end) const {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t plane = t / segments, start = (t % segments) * kTask;
      const int64_t n = std::min(HW, start + kTask) - start;
      const acc_t m = coef[3 * plane], a = coef[3 * plane + 1], d = coef[3 * plane + 2];
      const scalar_t* __restrict src = x + plane * HW + start;
      scalar_t* __restrict dst = y + plane * HW + start;
      for (int64_t i = 0; i < n; ++i)
        dst[i] = static_cast<scalar_t>(activate<Relu>((static_cast<acc_t>(src[i]) - m) * a + d));
    }
  }
};

// Pass 2, channels-last: task t is run t % runs of sample t / runs; a run is a whole number of
// groups of R pixels, each processed as one flat array of R * C values against the sample's
// coefficient rows tiled R times (m, a and d rows of R * C, in the thread's own scratch).
template <typename scalar_t, bool Relu>
struct PixelApply {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* x;
  scalar_t* y;
  const acc_t* coef;  // (m, a, d) per (sample, channel)
  int64_t C, HW, R, run_pixels, runs;

  FM_INLINE void run(int64_t begin, int64_t end) const {
    const int64_t width = R * C;
    Scratch<acc_t> scratch(3, width);
    acc_t* __restrict m = scratch.row(0, width);
    acc_t* __restrict a = scratch.row(1, width);
    acc_t* __restrict d = scratch.row(2, width);
    int64_t tiled_sample = -1;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / runs, start = (t % runs) * run_pixels;
      const int64_t stop = std::min(HW, start + run_pixels);
      if (b != tiled_sample) {
        for (int64_t i = 0; i < width; ++i) {
          const acc_t* k = coef + 3 * (b * C + i % C);
          m[i] = k[0], a[i] = k[1], d[i] = k[2];
        }
        tiled_sample = b;
      }
      const scalar_t* src = x + (b * HW + start) * C;
      scalar_t* dst = y + (b * HW + start) * C;
      int64_t done = 0;  // pixels
      if (width == kGroupVecs * kVecLanes<acc_t>) {  // the coefficients stay in registers
        constexpr int64_t L = kVecLanes<acc_t>;
        Vec<acc_t> mv[kGroupVecs], av[kGroupVecs], dv[kGroupVecs];
        for (int k = 0; k < kGroupVecs; ++k) {
          mv[k] = load_vec<kVecBytes>(m + k * L);
          av[k] = load_vec<kVecBytes>(a + k * L);
          dv[k] = load_vec<kVecBytes>(d + k * L);
        }
        for (; done + R <= stop - start; done += R) {
          for (int k = 0; k < kGroupVecs; ++k) {
            const Vec<acc_t> v = (load_as<acc_t>(src + done * C + k * L) - mv[k]) * av[k] + dv[k];
            store_as<acc_t>(dst + done * C + k * L, activate<Relu>(v));
          }
        }
      }
      for (int64_t p = done; p < stop - start; p += R) {
        const int64_t n = std::min(R, stop - start - p) * C;
        const scalar_t* __restrict from = src + p * C;
        scalar_t* __restrict to = dst + p * C;
        for (int64_t i = 0; i < n; ++i)
          to[i] = static_cast<scalar_t>(activate<Relu>((static_cast<acc_t>(from[i]) - m[i]) * a[i] + d[i]));
      }
    }
  }
};

// body.run over [0, tasks) on ATen's threads, in the AVX2 clone where the CPU has it.
template <typename Body>
void parallel_run(int64_t tasks, const Body& body) {
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
run_with_best_isa(body, begin, end);
  });
}

// (m, a, d) per (sample, channel). The instance channels' moments (Ci per sample) are those of
// x - shift, shift = the channel's first value in the sample: its mean is a small number `dev`
// when the values are large and close together, and y = (x - shift) * a + (bias - dev * a) with
// x - shift exact for x near the shift (no large term cancels anywhere). `shift` points at the
// sample's first value of channel K, channels `channel_stride` apart, samples `sample_stride`.
template <typename acc_t, typename scalar_t>
std::vector<acc_t> coefficients(const Shape& s, const at::Tensor& bn_scale, const at::Tensor& bn_shift,
                                const at::Tensor& in_weight, const at::Tensor& in_bias,
                                const std::vector<Moments>& moments, const scalar_t* shift,
                                int64_t channel_stride, int64_t sample_stride, double eps) {
  const auto doubles = [](const at::Tensor& t) { return t.to(at::kDouble).contiguous(); };
  const at::Tensor scale = doubles(bn_scale), offset = doubles(bn_shift);
  const at::Tensor weight = doubles(in_weight), bias = doubles(in_bias);
  const double *sc = scale.data_ptr<double>(), *of = offset.data_ptr<double>();
  const double *w = weight.data_ptr<double>(), *bi = bias.data_ptr<double>();
  std::vector<acc_t> coef(3 * s.B * s.C);
  for (int64_t b = 0; b < s.B; ++b) {
    acc_t* row = coef.data() + 3 * b * s.C;
    for (int64_t c = 0; c < s.K; ++c) {
      row[3 * c] = 0;
      row[3 * c + 1] = static_cast<acc_t>(sc[c]);
      row[3 * c + 2] = static_cast<acc_t>(of[c]);
    }
    for (int64_t c = 0; c < s.Ci; ++c) {
      const Moments& mo = moments[b * s.Ci + c];
      const double a = w[c] / std::sqrt(mo.m2 / static_cast<double>(s.HW) + eps);
      row[3 * (s.K + c)] = static_cast<acc_t>(shift[b * sample_stride + c * channel_stride]);
      row[3 * (s.K + c) + 1] = static_cast<acc_t>(a);
      row[3 * (s.K + c) + 2] = static_cast<acc_t>(bi[c] - mo.mean * a);
    }
  }
  return coef;
}

template <typename scalar_t, bool Relu>
void ibnorm_nchw(const scalar_t* x, scalar_t* y, const Shape& s, const at::Tensor& bn_scale,
                 const at::Tensor& bn_shift, const at::Tensor& in_weight, const at::Tensor& in_bias,
                 double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t segments = (s.HW + kTask - 1) / kTask;
  std::vector<Moments> partial(s.B * s.Ci * segments);
  parallel_run(static_cast<int64_t>(partial.size()),
               PlaneMoments<scalar_t>{x, s, segments, partial.data()});
  std::vector<Moments> moments(s.B * s.Ci);
  for (size_t i = 0; i < moments.size(); ++i)
    for (int64_t k = 0; k < segments; ++k) moments[i].add(partial[i * segments + k]);
  const std::vector<acc_t> coef = coefficients<acc_t>(s, bn_scale, bn_shift, in_weight, in_bias, moments,
                                                      x + s.K * s.HW, s.HW, s.C * s.HW, eps);
  parallel_run(s.B * s.C * segments, PlaneApply<scalar_t, Relu>{x, y, coef.data(), s.HW, segments});
}

template <typename scalar_t, bool Relu>
void ibnorm_channels_last(const scalar_t* x, scalar_t* y, const Shape& s, const at::Tensor& bn_scale,
                          const at::Tensor& bn_shift, const at::Tensor& in_weight,
                          const at::Tensor& in_bias, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  // Groups of R pixels: the fewest that make whole vectors, at least kGroupVecs of them (short
  // rows keep the passes in memory order: C = 16 and 32 in float32 give one strip of 4 vectors,
  // 64 one of 8). Blocks of whole groups, ~kPixelBlock values; runs of whole blocks, ~kTask values.
  const int64_t lanes = kVecLanes<acc_t>, pixel_vecs = std::lcm(s.C, lanes) / lanes;
  const int64_t R = std::lcm(s.C, lanes) / s.C * ((kGroupVecs + pixel_vecs - 1) / pixel_vecs);
  const int64_t width = R * s.C;
  // Pass 1.
  const int64_t block = R * std::max<int64_t>(1, kPixelBlock / width);
  const int64_t stats_run = block * std::max<int64_t>(1, kTask / (block * s.C));
  const int64_t stats_runs = (s.HW + stats_run - 1) / stats_run;
  std::vector<Moments> moments(s.B * s.Ci);
  if (s.Ci > 0) {
    std::vector<Moments> partial(s.B * stats_runs * s.Ci);
    parallel_run(s.B * stats_runs,
                 PixelMoments<scalar_t>{x, s, R, block, stats_run, stats_runs, partial.data()});
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t r = 0; r < stats_runs; ++r)
        for (int64_t c = 0; c < s.Ci; ++c)
          moments[b * s.Ci + c].add(partial[(b * stats_runs + r) * s.Ci + c]);
  }
  const std::vector<acc_t> coef = coefficients<acc_t>(s, bn_scale, bn_shift, in_weight, in_bias, moments,
                                                      x + s.K, 1, s.HW * s.C, eps);
  // Pass 2.
  const int64_t apply_run = R * std::max<int64_t>(1, kTask / width);
  const int64_t apply_runs = (s.HW + apply_run - 1) / apply_run;
  parallel_run(s.B * apply_runs,
               PixelApply<scalar_t, Relu>{x, y, coef.data(), s.C, s.HW, R, apply_run, apply_runs});
}

at::Tensor ibnorm_cpu(const at::Tensor& x_in, const at::Tensor& bn_scale, const at::Tensor& bn_shift,
                      const at::Tensor& in_weight, const at::Tensor& in_bias, double eps, bool relu) {
  const char* op = "ibnorm";
  const Shape s = check_inputs(x_in, bn_scale, bn_shift, in_weight, in_bias, eps, op);
  at::Tensor out = at::empty_like(x_in);  // x's strides when x is dense, as the fake kernel
  if (s.B == 0 || s.C == 0) return out;
  // The layout the kernels run in: out's own where it is NCHW or channels-last, else NCHW (then
  // through a contiguous buffer). A tensor that is both (C = 1 or H = W = 1) is laid out the same
  // either way.
  const bool nhwc = !out.is_contiguous() && out.is_contiguous(at::MemoryFormat::ChannelsLast);
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor x = x_in.contiguous(format);
  at::Tensor y = out.is_contiguous(format) ? out : at::empty_like(x, format);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ibnorm", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    const auto run = [&](auto relu_tag) {
      constexpr bool Relu = decltype(relu_tag)::value;
      if (nhwc) {
        ibnorm_channels_last<scalar_t, Relu>(xp, yp, s, bn_scale, bn_shift, in_weight, in_bias, eps);
      } else {
        ibnorm_nchw<scalar_t, Relu>(xp, yp, s, bn_scale, bn_shift, in_weight, in_bias, eps);
      }
    };
    if (relu) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  });
  if (!y.is_same(out)) out.copy_(y);
  return out;
}

// The backward, in ATen arithmetic (math type: float32, float64 for float64), recomputing the
// statistics. Written as the forward is, y = (x - M) * A + D with per-(sample, channel) M, A, D
// (BatchNorm channels: 0, scale, shift; instance channels: the mean, weight * rstd, bias), and g
// the incoming gradient where the pre-activation is > 0 (all of it without relu):
//   BatchNorm channels: grad_x = g * scale, grad_scale = sum g * x, grad_shift = sum g;
//   instance channels: grad_weight = sum g * xhat, grad_bias = sum g (xhat = (x - mean) * rstd), and
//   the standard instance-norm backward A * (g - mean(g) - xhat * mean(g * xhat)) (means over
//   H x W), which is grad_x = g * A + E + F * (x - mean) with per-(sample, channel) E, F;
// sums over the batch and H x W. Every pass runs over whole tensors (no per-half slices, which
// are strided in channels-last), ~10 of them; the mean is taken relative to the first pixel, so a
// large one loses no precision.
// grad_x has empty_like(x)'s layout, the parameter gradients are contiguous [K] and [C - K].
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ibnorm_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& bn_scale, const at::Tensor& bn_shift,
    const at::Tensor& in_weight, const at::Tensor& in_bias, double eps, bool relu) {
  const char* op = "ibnorm_backward";
  const Shape s = check_inputs(x, bn_scale, bn_shift, in_weight, in_bias, eps, op);
  check_rank(grad, op, "grad", 4, "[B, C, H, W]");
  TORCH_CHECK(grad.sizes() == x.sizes(), "fastmatte.", op, ": grad must have x's shape ", x.sizes(),
              ", got ", grad.sizes());
  check_dtype(grad, x.scalar_type(), op, "grad");
  check_same_device(grad, x, op, "grad", "x");
  const auto dtype = x.scalar_type();
  const auto compute = at::toOpMathType(dtype);
  const std::vector<int64_t> plane{2, 3};
  const double hw = static_cast<double>(s.HW);
  const at::Tensor xf = x.to(compute);
  at::Tensor g = grad.to(compute);

  // [1, C, 1, 1]: which channels are instance ones; the affine parameters of every channel.
  const at::Tensor instance =
      at::arange(s.C, x.options().dtype(at::kLong)).ge(s.K).view({1, s.C, 1, 1});
  const auto per_channel = [&](const at::Tensor& bn, const at::Tensor& in) {
    return at::cat({bn.to(compute), in.to(compute)}).view({1, s.C, 1, 1});
  };
  const at::Tensor weight = per_channel(bn_scale, in_weight), bias = per_channel(bn_shift, in_bias);
  const at::Tensor zero = at::zeros({}, xf.options());

  // Three full-size buffers (fresh ones cost the kernel's page zeroing), the rest in place:
  // `centered` = x - M: the first pixel, then the mean of what is left (0 on the BatchNorm channels);
  // `work`: squares, then the pre-activation, then g; `product` (grad_x itself unless x is a half
  // type): g * (x - M), then grad_x.
  const at::Tensor shift = at::where(instance, xf.narrow(2, 0, 1).narrow(3, 0, 1), zero);
  at::Tensor centered = xf - shift;
  centered.sub_(at::where(instance, centered.mean(plane, true), zero));
  at::Tensor work = centered * centered;
  const at::Tensor rstd =
      at::where(instance, at::rsqrt(work.sum(plane, true) / hw + eps), at::ones({}, xf.options()));
  const at::Tensor A = weight * rstd;
  if (relu) {
    at::addcmul_out(work, bias, centered, A);
    at::threshold_backward_out(work, g, work, 0);
    g = work;
  }
  const at::Tensor sum_g = g.sum(plane, true);  // [B, C, 1, 1]
  at::Tensor grad_x = at::empty_like(x);
  const bool in_place = dtype == compute;  // grad_x can hold the math type's values
  at::Tensor product = in_place ? grad_x : at::empty_like(xf);
  at::mul_out(product, g, centered);
  const at::Tensor sum_gx = product.sum(plane, true);
  const at::Tensor E = at::where(instance, -A * sum_g / hw, zero);
  const at::Tensor F = at::where(instance, -A * rstd * rstd * sum_gx / hw, zero);
  at::addcmul_out(product, E, g, A);
  product.addcmul_(F, centered);
  if (!in_place) grad_x.copy_(product);

  const at::Tensor grad_weight = (sum_gx * rstd).sum({0, 2, 3}), grad_bias = sum_g.sum({0, 2, 3});  // [C]
  const auto part = [&](const at::Tensor& t, int64_t start, int64_t length) {
    return t.narrow(0, start, length).to(dtype, /*non_blocking=*/false, /*copy=*/true);
  };
  return {grad_x, part(grad_weight, 0, s.K), part(grad_bias, 0, s.K), part(grad_weight, s.K, s.Ci),
          part(grad_bias, s.K, s.Ci)};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("ibnorm", &ibnorm_cpu); }

// Device-agnostic ATen: the same backward serves the CPU kernel and the Triton one.
TORCH_LIBRARY_IMPL(fastmatte, CompositeExplicitAutograd, m) {
  m.impl("ibnorm_backward", &ibnorm_backward);
}

}  // namespace fastmatte
