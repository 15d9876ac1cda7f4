// gradient_error on the CPU: DIM's Grad metric of each image. Both mattes are min-max stretched
// (MATLAB's mat2gray), filtered with gaussgradient's 9x9 first-order Gaussian-derivative kernel
// (sigma 1.4, unit L2 norm, imfilter 'replicate' + 'conv'), and the squared differences of the
// gradient magnitudes are summed over the mask and divided by 1000.
//
// The 9x9 kernel is the outer product of a smoothing and a derivative filter, so each image is
// filtered in two separable 9-tap passes over horizontal strips of rows: every strip filters its
// rows (plus 4 halo rows each side) horizontally into a small buffer, then vertically. Partial
// sums are kept per strip and added in strip order, so the result does not depend on the
// number of threads. Arithmetic is in the working precision (float32 for uint8 and float32
// mattes, float64 for float64), sums in double. uint8 mattes are read as they are: each image's
// 256 possible samples are stretched once into a table, with the float path's arithmetic on
// v / 255, so a uint8 matte gives the same bits as its float32 copy v / 255.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "matting_metrics.h"

namespace fastmatte {
namespace {

constexpr int64_t kRadius = 4;  // gaussgradient's ceil(s * sqrt(-2 log(sqrt(2 pi) s 0.01))) at s = 1.4
constexpr int64_t kTaps = 2 * kRadius + 1;
constexpr int64_t kStripRows = 64;

// gaussgradient builds hx(i, j) = gauss(i) * dgauss(j) / ||gauss (x) dgauss||_2 for offsets
// i (rows), j (columns) in -4..4, and hy = hx'. The norm of an outer product is the product of
// the norms, so hx = smooth (x) derivative with both factors of unit norm.
template <typename T>
struct Taps {
  std::array<T, kTaps> smooth, derivative;
};

template <typename T>
Taps<T> gaussgradient_taps() {
  constexpr double sigma = 1.4;
  std::array<double, kTaps> g{}, d{};
  double g_norm = 0.0, d_norm = 0.0;
  for (int64_t i = 0; i < kTaps; ++i) {
    const double x = static_cast<double>(i - kRadius);
    g[i] = std::exp(-x * x / (2.0 * sigma * sigma)) / (sigma * std::sqrt(2.0 * M_PI));
    d[i] = -x * g[i] / (sigma * sigma);
    g_norm += g[i] * g[i];
    d_norm += d[i] * d[i];
  }
  Taps<T> taps;
  for (int64_t i = 0; i < kTaps; ++i) {
    taps.smooth[i] = static_cast<T>(g[i] / std::sqrt(g_norm));
    taps.derivative[i] = static_cast<T>(d[i] / std::sqrt(d_norm));
  }
  return taps;
}

// mat2gray: (x - lo) / (hi - lo) when the image is not constant, else x unchanged (a constant
// image has zero gradient either way).
template <typename T>
struct Stretch {
  T lo, range;
  bool active;
  Stretch(T lo, T hi) : lo(lo), range(hi - lo), active(hi > lo) {}
  T operator()(T x) const { return active ? (x - lo) / range : x; }
};

// mat2gray of a uint8 matte: the stretched value of each of the 256 samples, computed once from
// matte_value(v) exactly as Stretch<float> computes it for the float copy.
struct StretchTable {
  std::array<float, 256> value;
  StretchTable(uint8_t lo, uint8_t hi) {
    const Stretch<float> stretch(matte_value(lo), matte_value(hi));
    for (int v = 0; v < 256; ++v) value[v] = stretch(matte_value(static_cast<uint8_t>(v)));
  }
  float operator()(uint8_t v) const { return value[v]; }
};

template <typename In, typename T>
using StretchOf = std::conditional_t<std::is_same_v<In, uint8_t>, StretchTable, Stretch<T>>;

// One row of one matte, stretched and replicate-padded by kRadius, filtered horizontally with
// the derivative taps (into `deriv`) and the smoothing taps (into `smooth`). 'conv' flips the
// kernel: out[x] = sum_j taps[j] * in[x - (j - kRadius)].
template <typename In, typename T, typename S>
void filter_row(const In* row, int64_t W, const S& stretch, const Taps<T>& taps,
                std::vector<T>& padded, T* deriv, T* smooth) {
  for (int64_t x = -kRadius; x < W + kRadius; ++x)
    padded[x + kRadius] = stretch(row[std::clamp<int64_t>(x, 0, W - 1)]);
  // Tap-major loops, so that the compiler vectorizes along the row.
  std::fill(deriv, deriv + W, T(0));
  std::fill(smooth, smooth + W, T(0));
  for (int64_t j = 0; j < kTaps; ++j) {
    const T* in = padded.data() + 2 * kRadius - j;
    const T d = taps.derivative[j], s = taps.smooth[j];
    for (int64_t x = 0; x < W; ++x) {
      deriv[x] += d * in[x];
      smooth[x] += s * in[x];
    }
  }
}

// Sum over the counted pixels of rows [y0, y1) of one image.
template <typename In, typename T, typename S>
double strip_error(const In* pred, const In* gt, const CountedPixels& counted, int64_t H,
                   int64_t W, int64_t y0, int64_t y1, const S& stretch_pred, const S& stretch_gt,
                   const Taps<T>& taps) {
  const int64_t r0 = std::max<int64_t>(y0 - kRadius, 0), r1 = std::min(y1 + kRadius, H);
  const int64_t rows = r1 - r0;
  // Horizontal passes: [matte][filter] planes of rows x W; filter 0 = derivative, 1 = smooth.
  std::vector<T> planes(4 * rows * W), padded(W + 2 * kRadius);
  auto plane = [&](int m, int f) { return planes.data() + (2 * m + f) * rows * W; };
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t at = (r - r0) * W;
    filter_row(pred + r * W, W, stretch_pred, taps, padded, plane(0, 0) + at, plane(0, 1) + at);
    filter_row(gt + r * W, W, stretch_gt, taps, padded, plane(1, 0) + at, plane(1, 1) + at);
  }
  std::vector<T> amplitude_pred(W), amplitude_gt(W), gx(W), gy(W);
  std::array<int64_t, kTaps> source{};
  double sum = 0.0;
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t i = 0; i < kTaps; ++i)  // row y - (i - kRadius), clamped, within the buffer
      source[i] = (std::clamp<int64_t>(y - (i - kRadius), 0, H - 1) - r0) * W;
    for (int m = 0; m < 2; ++m) {
      // gx = smoothing down the columns of the horizontal derivative; gy = derivative down
      // the columns of the horizontal smoothing (hy = hx').
      const T* hd = plane(m, 0);
      const T* hs = plane(m, 1);
      std::fill(gx.begin(), gx.end(), T(0));
      std::fill(gy.begin(), gy.end(), T(0));
      for (int64_t i = 0; i < kTaps; ++i) {
        const T s = taps.smooth[i], d = taps.derivative[i];
        const T* a = hd + source[i];
        const T* c = hs + source[i];
        for (int64_t x = 0; x < W; ++x) {
          gx[x] += s * a[x];
          gy[x] += d * c[x];
        }
      }
      T* amplitude = m == 0 ? amplitude_pred.data() : amplitude_gt.data();
      for (int64_t x = 0; x < W; ++x) amplitude[x] = std::sqrt(gx[x] * gx[x] + gy[x] * gy[x]);
    }
    for (int64_t x = 0; x < W; ++x) {
      if (!counted(y * W + x)) continue;
      const T e = amplitude_pred[x] - amplitude_gt[x];
      sum += static_cast<double>(e * e);
    }
  }
  return sum;
}

at::Tensor gradient_error_cpu(const at::Tensor& pred, const at::Tensor& gt,
                              const std::optional<at::Tensor>& mask) {
  check_metric_inputs(pred, gt, mask, "gradient_error");
  const int64_t B = pred.size(0), H = pred.size(1), W = pred.size(2);
  at::Tensor out = at::zeros({B}, pred.options().dtype(at::kDouble));
  if (B == 0 || H == 0 || W == 0) return out;
  // Per-image minimum and maximum; NaN propagates into them (and then into the result).
  auto [pred_lo, pred_hi] = at::aminmax(pred.view({B, H * W}), 1);
  auto [gt_lo, gt_hi] = at::aminmax(gt.view({B, H * W}), 1);
  const int64_t strips = (H + kStripRows - 1) / kStripRows;
  std::vector<double> partial(B * strips, 0.0);
  const CountedPixels counted(mask);

  dispatch_mattes(pred.scalar_type(), [&](auto in, auto working) {
    using In = decltype(in);
    using T = decltype(working);
    const Taps<T> taps = gaussgradient_taps<T>();
    const In* p = pred.data_ptr<In>();
    const In* g = gt.data_ptr<In>();
    const In *plo = pred_lo.data_ptr<In>(), *phi = pred_hi.data_ptr<In>();
    const In *glo = gt_lo.data_ptr<In>(), *ghi = gt_hi.data_ptr<In>();
    std::vector<StretchOf<In, T>> stretch_pred, stretch_gt;
    for (int64_t b = 0; b < B; ++b) {
      stretch_pred.emplace_back(plo[b], phi[b]);
      stretch_gt.emplace_back(glo[b], ghi[b]);
    }
    at::parallel_for(0, B * strips, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / strips, s = task % strips;
        const int64_t offset = b * H * W;
        partial[task] = strip_error(p + offset, g + offset, counted.at(offset), H, W, s * kStripRows,
                                    std::min(H, (s + 1) * kStripRows), stretch_pred[b],
                                    stretch_gt[b], taps);
      }
    });
    double* o = out.data_ptr<double>();
    for (int64_t b = 0; b < B; ++b) {
      double sum = 0.0;
      for (int64_t s = 0; s < strips; ++s) sum += partial[b * strips + s];
      const bool nan = std::isnan(matte_value(plo[b])) || std::isnan(matte_value(phi[b])) ||
                       std::isnan(matte_value(glo[b])) || std::isnan(matte_value(ghi[b]));
      o[b] = nan ? std::numeric_limits<double>::quiet_NaN() : sum / 1000.0;
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("gradient_error", &gradient_error_cpu); }

}  // namespace fastmatte
