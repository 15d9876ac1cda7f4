// area_resize on the CPU: F.adaptive_avg_pool2d(x, (H, W)) (= F.interpolate(mode="area")), separable
// and in one pass over the input. Output row i averages source rows [hs, he) and output column j
// source columns [ws, we), with ATen's start_index / end_index (int64). For each output row the
// source rows of its window (1-3 typically) are summed into a row buffer (opmath_t, vectorized
// along the row), then each output column sums its window of the buffer, divided by the window's
// count kh * kw. The column windows are a precomputed table of K = max kw buffer offsets per
// column, windows shorter than K padded with an offset of a zero slot at the buffer's end (adding
// an exact 0 leaves a sum as it was, NaN and inf included), so the column loop has a fixed trip
// count. An output row whose window equals the previous row's (upscaling) is a copy of it.
// NCHW: tasks are runs of the B * C * H output rows. Channels-last: runs of the B * H output rows,
// each column's sum vectorized over the contiguous channels. Other layouts are copied first.
// The backward is ATen's _adaptive_avg_pool2d_backward (see below).
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "checks.h"
#include "cpu/avx2_clone.h"


namespace fastmatte {
namespace {

// ATen's adaptive pooling windows (aten/src/ATen/native/AdaptivePooling.h): output index a of b
// outputs over c inputs averages [start_index, end_index).
FM_INLINE int64_t start_index(int64_t a, int64_t b, int64_t c) { return (a / b) * c + ((a % b) * c) / b; }
FM_INLINE int64_t end_index(int64_t a, int64_t b, int64_t c) { return 1 + ((a + 1) * c - 1) / b; }

struct Shape {
  int64_t B, C, h, w, H, W;
};

// x: [B, C, h, w] float, C, h, w >= 1 (B may be 0); size: (H, W) in [1, 2**31 - 1].
Shape check_inputs(const at::Tensor& x, at::IntArrayRef size, const char* op) {
  check_rank(x, op, "x", 4, "[B, C, h, w]");
  check_float_dtype(x, op, "x");
  TORCH_CHECK(x.size(1) > 0 && x.size(2) > 0 && x.size(3) > 0, "fastmatte.", op,
              ": x must be [B, C, h, w] with C, h, w >= 1, got ", x.sizes());
  TORCH_CHECK(size.size() == 2, "fastmatte.", op, ": size must be (H, W), got ", size);
  check_int_range(size[0], 1, kInt32Max, op, "size[0] (H)");
  check_int_range(size[1], 1, kInt32Max, op, "size[1] (W)");
  const Shape s{x.size(0), x.size(1), x.size(2), x.size(3), size[0], size[1]};
  check_output_size({s.B, s.C, s.H, s.W}, x.scalar_type(), op, "the output");
  return s;
}

template <typename scalar_t>
struct Plan {
  using opmath_t = at::opmath_type<scalar_t>;
  const scalar_t* in;
  scalar_t* out;
  Shape s;
  int64_t K;                   // the widest column window
  std::vector<int64_t> taps;   // [W, K] buffer offsets (element offsets: channels-last scales by C)
  std::vector<opmath_t> kw;    // each column window's width

  // Sums source rows [hs, he) of one image plane (NCHW) or one image (channels-last, row = w * C
  // elements) into buf[0, row); buf[row, row + slot) stays 0. Up to four rows per sweep of the
  // buffer, added in row order: ((r0 + r1) + r2) + ..., the order of one row at a time.
  FM_INLINE static void sum_rows(const scalar_t* __restrict image, int64_t row, int64_t hs, int64_t he,
                                 opmath_t* __restrict buf) {
    using T = opmath_t;
    int64_t y = hs;
    {
      const int64_t n = std::min<int64_t>(he - y, 4);
      const scalar_t* __restrict r0 = image + y * row;
      const scalar_t* __restrict r1 = r0 + row;
      const scalar_t* __restrict r2 = r1 + row;
      const scalar_t* __restrict r3 = r2 + row;
      if (n == 1) {
        for (int64_t k = 0; k < row; ++k) buf[k] = T(r0[k]);
      } else if (n == 2) {
        for (int64_t k = 0; k < row; ++k) buf[k] = T(r0[k]) + T(r1[k]);
      } else if (n == 3) {
        for (int64_t k = 0; k < row; ++k) buf[k] = T(r0[k]) + T(r1[k]) + T(r2[k]);
      } else {
        for (int64_t k = 0; k < row; ++k) buf[k] = T(r0[k]) + T(r1[k]) + T(r2[k]) + T(r3[k]);
      }
      y += n;
    }
    while (y < he) {
      const int64_t n = std::min<int64_t>(he - y, 3);
      const scalar_t* __restrict r0 = image + y * row;
      const scalar_t* __restrict r1 = r0 + row;
      const scalar_t* __restrict r2 = r1 + row;
      if (n == 1) {
        for (int64_t k = 0; k < row; ++k) buf[k] = buf[k] + T(r0[k]);
      } else if (n == 2) {
        for (int64_t k = 0; k < row; ++k) buf[k] = buf[k] + T(r0[k]) + T(r1[k]);
      } else {
        for (int64_t k = 0; k < row; ++k) buf[k] = buf[k] + T(r0[k]) + T(r1[k]) + T(r2[k]);
      }
      y += n;
    }
  }

  // NCHW output rows [begin, end) of the B * C * H rows.
  FM_INLINE void planar(int64_t begin, int64_t end) const {
    std::vector<opmath_t> buffer(s.w + 1, opmath_t(0)), sum_row(s.W);
    opmath_t* __restrict buf = buffer.data();
    opmath_t* __restrict sums = sum_row.data();
    const int64_t* __restrict tap = taps.data();
    const opmath_t* __restrict width = kw.data();
    int64_t last_hs = -1, last_he = -1;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t plane = r / s.H, i = r % s.H;
      const int64_t hs = start_index(i, s.H, s.h), he = end_index(i, s.H, s.h);
      scalar_t* __restrict o = out + r * s.W;
      if (r > begin && i > 0 && hs == last_hs && he == last_he) {  // the row above, again
        std::memcpy(o, o - s.W, s.W * sizeof(scalar_t));
        continue;
      }
      last_hs = hs;
      last_he = he;
      sum_rows(in + plane * s.h * s.w, s.w, hs, he, buf);
      for (int64_t j = 0; j < s.W; ++j) {
        const int64_t* t = tap + j * K;
        opmath_t sum = buf[t[0]];
        for (int64_t k = 1; k < K; ++k) sum += buf[t[k]];
        sums[j] = sum;
      }
      const opmath_t kh = static_cast<opmath_t>(he - hs);
      for (int64_t j = 0; j < s.W; ++j) o[j] = static_cast<scalar_t>(sums[j] / (kh * width[j]));
    }
  }

  // Channels-last output rows [begin, end) of the B * H rows.
  FM_INLINE void channels_last(int64_t begin, int64_t end) const {
    const int64_t C = s.C, row = s.w * C, out_row = s.W * C;
    std::vector<opmath_t> buffer(row + C, opmath_t(0));
    std::vector<opmath_t> accumulator(C);
    opmath_t* __restrict buf = buffer.data();
    opmath_t* __restrict acc = accumulator.data();
    int64_t last_hs = -1, last_he = -1;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / s.H, i = r % s.H;
      const int64_t hs = start_index(i, s.H, s.h), he = end_index(i, s.H, s.h);
      scalar_t* __restrict o = out + r * out_row;
      if (r > begin && i > 0 && hs == last_hs && he == last_he) {
        std::memcpy(o, o - out_row, out_row * sizeof(scalar_t));
        continue;
      }
      last_hs = hs;
      last_he = he;
      sum_rows(in + b * s.h * row, row, hs, he, buf);
      const opmath_t kh = static_cast<opmath_t>(he - hs);
      for (int64_t j = 0; j < s.W; ++j) {
        const int64_t* t = taps.data() + j * K;
        const opmath_t* __restrict first = buf + t[0];
        for (int64_t c = 0; c < C; ++c) acc[c] = first[c];
        for (int64_t k = 1; k < K; ++k) {
          const opmath_t* __restrict v = buf + t[k];
          for (int64_t c = 0; c < C; ++c) acc[c] += v[c];
        }
        const opmath_t count = kh * kw[j];
        scalar_t* __restrict oj = o + j * C;
        for (int64_t c = 0; c < C; ++c) oj[c] = static_cast<scalar_t>(acc[c] / count);
      }
    }
  }

  FM_INLINE void run(bool cl, int64_t begin, int64_t end) const {
    if (cl) {
      channels_last(begin, end);
    } else {
      planar(begin, end);
    }
  }
};

at::Tensor area_resize_cpu(const at::Tensor& x, at::IntArrayRef size) {
  const char* op = "area_resize";
  const Shape s = check_inputs(x, size, op);
  // ATen's choice: the output (and the layout read) is x's suggested memory format.
  const at::MemoryFormat format = x.suggest_memory_format();
  const bool cl = format == at::MemoryFormat::ChannelsLast;
  at::Tensor out = at::empty({s.B, s.C, s.H, s.W}, x.options().memory_format(format));
  if (s.B == 0) return out;
  const at::Tensor input = x.contiguous(format);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "area_resize", [&] {
    Plan<scalar_t> plan;
    plan.in = input.data_ptr<scalar_t>();
    plan.out = out.data_ptr<scalar_t>();
    plan.s = s;
    using opmath_t = at::opmath_type<scalar_t>;
    plan.K = 0;
    plan.kw.resize(s.W);
    std::vector<int64_t> kw(s.W);
    for (int64_t j = 0; j < s.W; ++j) {
      kw[j] = end_index(j, s.W, s.w) - start_index(j, s.W, s.w);
      plan.kw[j] = static_cast<opmath_t>(kw[j]);
      plan.K = std::max(plan.K, kw[j]);
    }
    const int64_t step = cl ? s.C : 1, zero = s.w * step;  // the zero slot after the buffer's row
    plan.taps.resize(s.W * plan.K);
    for (int64_t j = 0; j < s.W; ++j) {
      const int64_t ws = start_index(j, s.W, s.w);
      for (int64_t k = 0; k < plan.K; ++k) {
        plan.taps[j * plan.K + k] = k < kw[j] ? (ws + k) * step : zero;
      }
    }
    const int64_t rows = cl ? s.B * s.H : s.B * s.C * s.H;
    const int64_t row_elements = cl ? s.W * s.C : s.W;
    // Each task writes at least ~32K output elements.
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_elements));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
run_with_best_isa(plan, cl, begin, end);
    });
  });
  return out;
}

// The backward: ATen's _adaptive_avg_pool2d_backward (the adjoint F.adaptive_avg_pool2d's autograd
// uses), x's shape, in x's suggested memory format with at::empty's strides, as the fake says.
at::Tensor area_resize_backward(const at::Tensor& grad, const at::Tensor& x, at::IntArrayRef size) {
  const char* op = "area_resize_backward";
  const Shape s = check_inputs(x, size, op);
  check_rank(grad, op, "grad", 4, "[B, C, H, W]");
  check_dtype(grad, x.scalar_type(), op, "grad");
  check_same_device(grad, x, op, "grad", "x");
  TORCH_CHECK(grad.size(0) == s.B && grad.size(1) == s.C && grad.size(2) == s.H && grad.size(3) == s.W,
              "fastmatte.", op, ": grad must be [", s.B, ", ", s.C, ", ", s.H, ", ", s.W,
              "] (the output's shape), got ", grad.sizes());
  const at::MemoryFormat format = x.suggest_memory_format();
  at::Tensor g = at::_adaptive_avg_pool2d_backward(grad, x);
  at::Tensor fresh = at::empty(x.sizes(), x.options().memory_format(format));
  if (g.strides() == fresh.strides()) return g;
  fresh.copy_(g);
  return fresh;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("area_resize", &area_resize_cpu); }

// Device-agnostic ATen: the same backward serves the CPU kernel and the Triton one.
TORCH_LIBRARY_IMPL(fastmatte, CompositeExplicitAutograd, m) {
  m.impl("area_resize_backward", &area_resize_backward);
}

}  // namespace fastmatte
