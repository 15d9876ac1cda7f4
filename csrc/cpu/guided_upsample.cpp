// guided_upsample on the CPU: the full-resolution end of a deep guided filter in one pass over the
// frame. Each thread walks a run of output rows; for each it blends two low-resolution coefficient
// rows that were already widened to W columns (the horizontal half of the bilinear upsampling,
// done once per low-resolution row and reused by the ~H/h output rows that share it), applies
// A * [image, mean] + b and writes foreground and alpha. No full-resolution coefficient map exists.
// The backward is ATen arithmetic (it materializes the upsampled coefficients): see below.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "checks.h"
#include "cpu/avx2_clone.h"
#include "resample.h"


namespace fastmatte {
namespace {

constexpr int64_t kCoefficients = 4;  // A and b each have 4 channels: 3 foreground + alpha
constexpr int64_t kWide = 2 * kCoefficients;  // the widened rows hold A's 4 then b's 4

struct Sizes {
  int64_t B, h, w, H, W;
};

Sizes check_inputs(const at::Tensor& image, const at::Tensor& coef_a, const at::Tensor& coef_b,
                   const char* op) {
  check_rank(image, op, "image", 4, "[B, 3, H, W]");
  check_float_dtype(image, op, "image");
  TORCH_CHECK(image.size(1) == 3 && image.size(2) > 0 && image.size(3) > 0, "fastmatte.", op,
              ": image must be [B, 3, H, W] with H, W >= 1, got ", image.sizes());
  const int64_t B = image.size(0);
  const auto check_coefficients = [&](const at::Tensor& t, const char* name) {
    check_rank(t, op, name, 4, "[B, 4, h, w]");
    check_dtype(t, image.scalar_type(), op, name);
    check_same_device(t, image, op, name, "image");
    TORCH_CHECK(t.size(0) == B && t.size(1) == kCoefficients && t.size(2) > 0 && t.size(3) > 0,
                "fastmatte.", op, ": ", name, " must be [B=", B,
                ", 4, h, w] (image's batch, 4 coefficients) with h, w >= 1, got ", t.sizes());
  };
  check_coefficients(coef_a, "coef_a");
  check_coefficients(coef_b, "coef_b");
  TORCH_CHECK(coef_b.sizes() == coef_a.sizes(), "fastmatte.", op,
              ": coef_b must have coef_a's shape ", coef_a.sizes(), ", got ", coef_b.sizes());
  return {B, coef_a.size(2), coef_a.size(3), image.size(2), image.size(3)};
}

// The horizontal taps of every output column, shared by all rows.
template <typename opmath_t>
struct ColumnTaps {
  std::vector<int64_t> i0, i1;
  std::vector<opmath_t> lambda1;

  ColumnTaps(int64_t w, int64_t W) : i0(W), i1(W), lambda1(W) {
    for (int64_t x = 0; x < W; ++x) {
      const auto tap = bilinear_tap<opmath_t>(x, w, W);
      i0[x] = tap.i0;
      i1[x] = tap.i1;
      lambda1[x] = tap.lambda1;
    }
  }
};

// Widens low-resolution row `row` of the 8 coefficient planes (A's 4, then b's 4) to W columns.
template <typename scalar_t, typename opmath_t>
FM_INLINE void widen_row(const scalar_t* const* planes, int64_t row, int64_t w,
                         const ColumnTaps<opmath_t>& taps, int64_t W, opmath_t* out) {
  for (int64_t c = 0; c < kWide; ++c) {
    const scalar_t* src = planes[c] + row * w;
    opmath_t* dst = out + c * W;
    for (int64_t x = 0; x < W; ++x) {
      const opmath_t l1 = taps.lambda1[x];
      dst[x] = (opmath_t(1) - l1) * static_cast<opmath_t>(src[taps.i0[x]]) +
               l1 * static_cast<opmath_t>(src[taps.i1[x]]);
    }
  }
}

// One output row: coefficients blended vertically from the widened rows `top` and `bottom`
// (weight l1 on bottom), then foreground = clamp(A[:3] * x + b[:3] + x) and
// alpha = clamp(A[3] * mean(x) + b[3]). `image` and `out` point at channel 0 of the row, with
// `plane` elements between channels; alpha is written to `alpha`.
template <typename scalar_t, typename opmath_t>
FM_INLINE void blend_row(const opmath_t* __restrict top, const opmath_t* __restrict bottom,
                         opmath_t l1, const scalar_t* __restrict image, int64_t plane,
                         scalar_t* __restrict foreground, scalar_t* __restrict alpha, int64_t W) {
  const opmath_t l0 = opmath_t(1) - l1;
  for (int64_t x = 0; x < W; ++x) {
    opmath_t coef[kWide];
    for (int64_t c = 0; c < kWide; ++c) coef[c] = l0 * top[c * W + x] + l1 * bottom[c * W + x];
    const opmath_t r = static_cast<opmath_t>(image[x]);
    const opmath_t g = static_cast<opmath_t>(image[plane + x]);
    const opmath_t b = static_cast<opmath_t>(image[2 * plane + x]);
    const opmath_t mean = (r + g + b) / opmath_t(3);
    foreground[x] = static_cast<scalar_t>(clamp01(coef[0] * r + coef[4] + r));
    foreground[plane + x] = static_cast<scalar_t>(clamp01(coef[1] * g + coef[5] + g));
    foreground[2 * plane + x] = static_cast<scalar_t>(clamp01(coef[2] * b + coef[6] + b));
    alpha[x] = static_cast<scalar_t>(clamp01(coef[3] * mean + coef[7]));
  }
}

// A thread's two widened rows and which (batch * h + low-resolution row) each holds.
template <typename opmath_t>
struct WideRows {
  std::vector<opmath_t> rows[2];
  int64_t key[2] = {-1, -1};

  explicit WideRows(int64_t W) : rows{std::vector<opmath_t>(kWide * W), std::vector<opmath_t>(kWide * W)} {}
};

template <typename scalar_t>
struct ForwardRows {
  using opmath_t = at::opmath_type<scalar_t>;
  const scalar_t* image;
  const scalar_t* coef_a;
  const scalar_t* coef_b;
  scalar_t* foreground;
  scalar_t* alpha;
  Sizes s;
  const ColumnTaps<opmath_t>* taps;

  // Output rows [begin, end) of the B * H rows.
  FM_INLINE void run(int64_t begin, int64_t end) const {
    WideRows<opmath_t> wide(s.W);
    const int64_t plane = s.H * s.W, low = s.h * s.w;
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / s.H, y = row % s.H;
      const auto tap = bilinear_tap<opmath_t>(y, s.h, s.H);
      const scalar_t* planes[kWide];
      for (int64_t c = 0; c < kCoefficients; ++c) {
        planes[c] = coef_a + (n * kCoefficients + c) * low;
        planes[kCoefficients + c] = coef_b + (n * kCoefficients + c) * low;
      }
      const opmath_t* top = widened(wide, planes, n, tap.i0, -1);
      const opmath_t* bottom = widened(wide, planes, n, tap.i1, n * s.h + tap.i0);
      const int64_t offset = n * 3 * plane + y * s.W;
      blend_row(top, bottom, tap.lambda1, image + offset, plane, foreground + offset,
                alpha + n * plane + y * s.W, s.W);
    }
  }

  // The widened row `i` of batch n, computed into a slot unless one holds it already; `keep` is
  // the key of a row that must not be evicted (the other tap of the same output row).
  FM_INLINE const opmath_t* widened(WideRows<opmath_t>& wide, const scalar_t* const* planes,
                                    int64_t n, int64_t i, int64_t keep) const {
    const int64_t key = n * s.h + i;
    for (int slot = 0; slot < 2; ++slot)
      if (wide.key[slot] == key) return wide.rows[slot].data();
    const int slot = wide.key[0] == keep ? 1 : 0;
    widen_row(planes, i, s.w, *taps, s.W, wide.rows[slot].data());
    wide.key[slot] = key;
    return wide.rows[slot].data();
  }
};

std::tuple<at::Tensor, at::Tensor> guided_upsample_cpu(const at::Tensor& image_in,
                                                       const at::Tensor& coef_a_in,
                                                       const at::Tensor& coef_b_in) {
  const char* op = "guided_upsample";
  const Sizes s = check_inputs(image_in, coef_a_in, coef_b_in, op);
  const at::Tensor image = image_in.contiguous(), coef_a = coef_a_in.contiguous(),
                   coef_b = coef_b_in.contiguous();
  at::Tensor foreground = at::empty({s.B, 3, s.H, s.W}, image.options());
  at::Tensor alpha = at::empty({s.B, 1, s.H, s.W}, image.options());
  if (s.B == 0) return {foreground, alpha};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "guided_upsample", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const ColumnTaps<opmath_t> taps(s.w, s.W);
    const ForwardRows<scalar_t> rows{image.data_ptr<scalar_t>(), coef_a.data_ptr<scalar_t>(),
                                     coef_b.data_ptr<scalar_t>(), foreground.data_ptr<scalar_t>(),
                                     alpha.data_ptr<scalar_t>(), s, &taps};
    // Runs of rows long enough to reuse each widened row ~H/h times, short enough to share out.
    const int64_t grain = std::max<int64_t>(8, 4 * ((s.H + s.h - 1) / s.h));
    at::parallel_for(0, s.B * s.H, grain, [&](int64_t begin, int64_t end) {
run_with_best_isa(rows, begin, end);
    });
  });
  return {foreground, alpha};
}

// The backward, in ATen arithmetic: with A, b upsampled and out = A * [x, mean x] + b,
//   d_out = grad * (clamp's mask), grad_A = d_out * [x, mean x], grad_b = d_out,
//   grad_x = grad_foreground * mask + d_out[:3] * A[:3] + d_out[3] * A[3] / 3,
// and the coefficients' gradients carried back through the bilinear upsampling (its adjoint).
// It builds full-resolution maps; training runs the refiner at modest sizes, and the fused pass
// is the forward, which inference runs on every frame.
std::tuple<at::Tensor, at::Tensor, at::Tensor> guided_upsample_backward(
    const at::Tensor& grad_foreground, const at::Tensor& grad_alpha, const at::Tensor& image,
    const at::Tensor& coef_a, const at::Tensor& coef_b) {
  const char* op = "guided_upsample_backward";
  const Sizes s = check_inputs(image, coef_a, coef_b, op);
  check_rank(grad_foreground, op, "grad_foreground", 4, "[B, 3, H, W]");
  check_rank(grad_alpha, op, "grad_alpha", 4, "[B, 1, H, W]");
  TORCH_CHECK(grad_foreground.sizes() == image.sizes(), "fastmatte.", op,
              ": grad_foreground must have image's shape ", image.sizes(), ", got ",
              grad_foreground.sizes());
  TORCH_CHECK(grad_alpha.size(0) == s.B && grad_alpha.size(1) == 1 && grad_alpha.size(2) == s.H &&
                  grad_alpha.size(3) == s.W,
              "fastmatte.", op, ": grad_alpha must be [", s.B, ", 1, ", s.H, ", ", s.W, "], got ",
              grad_alpha.sizes());
  const auto compute = at::toOpMathType(image.scalar_type());
  const at::Tensor x = image.to(compute), a_low = coef_a.to(compute), b_low = coef_b.to(compute);
  const at::Tensor A = at::upsample_bilinear2d(a_low, {s.H, s.W}, false);
  const at::Tensor b = at::upsample_bilinear2d(b_low, {s.H, s.W}, false);
  const at::Tensor guide = at::cat({x, x.mean(1, true)}, 1);
  const at::Tensor out = A * guide + b;
  const at::Tensor before_clamp = at::cat({out.narrow(1, 0, 3) + x, out.narrow(1, 3, 1)}, 1);
  const at::Tensor inside = before_clamp.ge(0).logical_and_(before_clamp.le(1));
  const at::Tensor grad = at::cat({grad_foreground.to(compute), grad_alpha.to(compute)}, 1);
  const at::Tensor d_out = at::where(inside, grad, at::zeros({}, grad.options()));
  const at::Tensor d_A = d_out * A;
  const at::Tensor grad_x =
      d_out.narrow(1, 0, 3) * (A.narrow(1, 0, 3) + 1) + d_A.narrow(1, 3, 1) / 3;
  const auto low_size = a_low.sizes();
  const at::Tensor grad_a =
      at::upsample_bilinear2d_backward(d_out * guide, {s.H, s.W}, low_size, false);
  const at::Tensor grad_b = at::upsample_bilinear2d_backward(d_out, {s.H, s.W}, low_size, false);
  return {grad_x.to(image.scalar_type()), grad_a.to(coef_a.scalar_type()),
          grad_b.to(coef_b.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("guided_upsample", &guided_upsample_cpu); }

// Device-agnostic ATen: the same backward serves the CPU kernel and the Triton one.
TORCH_LIBRARY_IMPL(fastmatte, CompositeExplicitAutograd, m) {
  m.impl("guided_upsample_backward", &guided_upsample_backward);
}

}  // namespace fastmatte
