// window_attention (Swin's shifted-window attention) on the CPU, in one pass over qkv: no
// padded, rolled, partitioned, bias or mask tensor is made. at::parallel_for runs over (batch,
// window, head) tasks of the map padded to whole windows. A task gathers its window's
// N = wh*ww tokens from their un-rolled positions (zeros for the padding past the map) into
// small buffers in the math type (fp32, fp64 for fp64): q [N, D], k transposed [D, Np] and
// v [Np, Dp], N and D padded with zeros to whole pairs of vectors, so that the scores
// Q K^T [N, Np] and the output P V [N, Dp] are the dense products of cpu/block_products.h
// (compiled per vector ISA). In between, one vectorized pass per query row scales its scores,
// adds the head's bias (an [N, Np] matrix of table entries, made once per call) and blocks
// every key whose class (shift region 0..8, or -1 for padding and the pad columns) differs
// from the query's; the softmax then subtracts the row max and exponentiates, a blocked key
// giving exactly 0. Padded queries are not written: the output holds the real tokens only.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "checks.h"
#include "cpu/block_products.h"
#include "cpu/simd.h"
#include "cpu/softmax_exp.h"

namespace fastmatte {
namespace {

constexpr int64_t kPad = 16;  // padded lengths: multiples of 2 vectors, as matmul needs
int64_t padded(int64_t n) { return (n + kPad - 1) / kPad * kPad; }

// Each row a of s [rows, ld] := softmax over b of s[a, b] * scale + bias[a, b], over the keys b
// with cls[b] == cls[a] only (the others get probability 0).
template <typename T>
FM_ALWAYS_INLINE void softmax_impl(T* s, const T* bias, const T* cls, int64_t rows, int64_t ld,
                                   T scale) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  const V blocked = V{} - std::numeric_limits<T>::infinity();
  for (int64_t a = 0; a < rows; ++a) {
    T* row = s + a * ld;
    V top = blocked;
    for (int64_t b = 0; b < ld; b += L) {
      const V x = vload(row + b) * scale + vload(bias + a * ld + b);
      const V kept = vload(cls + b) == cls[a] ? x : blocked;
      vstore(row + b, kept);
      top = top < kept ? kept : top;
    }
    T max = top[0], total = 0;
    for (int64_t l = 1; l < L; ++l) max = std::max(max, top[l]);
    V sums = {};
    for (int64_t b = 0; b < ld; b += L) {
      const V e = softmax_exp(vload(row + b) - max);
      vstore(row + b, e);
      sums += e;
    }
    for (int64_t l = 0; l < L; ++l) total += sums[l];
    const T inverse = T(1) / total;  // total >= 1: the max term is e^0
    for (int64_t b = 0; b < ld; b += L) vstore(row + b, vload(row + b) * inverse);
  }
}
FM_ISA_CLONES void softmax_rows(float* s, const float* bias, const float* cls, int64_t rows,
                                int64_t ld, float scale) {
  softmax_impl(s, bias, cls, rows, ld, scale);
}
FM_ISA_CLONES void softmax_rows(double* s, const double* bias, const double* cls, int64_t rows,
                                int64_t ld, double scale) {
  softmax_impl(s, bias, cls, rows, ld, scale);
}

struct Shape {
  int64_t batch, hp, wp, heads, dim, window, wh, ww, sh, sw, height, width;
};

// Shift region (0, 1 or 2) of the rolled coordinate r on an axis of padded length p, window w,
// shift s: r < p - w, p - w <= r < p - s, r >= p - s; one region when s == 0.
int64_t region(int64_t r, int64_t p, int64_t w, int64_t s) {
  return s == 0 ? 0 : (r >= p - w) + (r >= p - s);
}

template <typename scalar_t>
void forward_kernel(const Shape& s, const scalar_t* qkv, const scalar_t* table, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = s.wh * s.ww, np = padded(n), D = s.dim, dp = padded(D), C = s.heads * D;
  const int64_t windows_y = s.hp / s.wh, windows_x = s.wp / s.ww, windows = windows_y * windows_x;
  // bias[h, a, b]: head h's table entry for query a and key b of a window; 0 in the pad columns.
  std::vector<acc_t> bias(s.heads * n * np, acc_t(0));
  for (int64_t a = 0; a < n; ++a) {
    for (int64_t b = 0; b < n; ++b) {
      const int64_t row = (a / s.ww - b / s.ww + s.window - 1) * (2 * s.window - 1) +
                          (a % s.ww - b % s.ww + s.window - 1);
      for (int64_t h = 0; h < s.heads; ++h)
        bias[(h * n + a) * np + b] = static_cast<acc_t>(table[row * s.heads + h]);
    }
  }
  const acc_t scale = acc_t(1) / std::sqrt(static_cast<acc_t>(D));
  at::parallel_for(0, s.batch * windows * s.heads, 1, [&](int64_t begin, int64_t end) {
    // Zero padded once: the pad rows and columns stay zero, the pad columns' class -1.
    std::vector<acc_t> q(n * D), kt(D * np, 0), v(np * dp, 0), scores(n * np), o(n * dp);
    std::vector<acc_t> cls(np, -1);  // small integers, in acc_t for the vector compare
    std::vector<int64_t> token(n);   // the token's row of qkv and out
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task % s.heads, w = task / s.heads % windows, b = task / s.heads / windows;
      for (int64_t t = 0; t < n; ++t) {
        const int64_t ry = w / windows_x * s.wh + t / s.ww, rx = w % windows_x * s.ww + t % s.ww;
        const int64_t y = (ry + s.sh) % s.hp, x = (rx + s.sw) % s.wp;
        const bool real = y < s.height && x < s.width;
        token[t] = real ? (b * s.height + y) * s.width + x : -1;
        cls[t] = real ? static_cast<acc_t>(region(ry, s.hp, s.wh, s.sh) * 3 + region(rx, s.wp, s.ww, s.sw))
                      : acc_t(-1);
        const scalar_t* src = qkv + std::max<int64_t>(token[t], 0) * 3 * C + h * D;
        for (int64_t d = 0; d < D; ++d) q[t * D + d] = real ? static_cast<acc_t>(src[d]) : acc_t(0);
        for (int64_t d = 0; d < D; ++d) kt[d * np + t] = real ? static_cast<acc_t>(src[C + d]) : acc_t(0);
        for (int64_t d = 0; d < D; ++d) v[t * dp + d] = real ? static_cast<acc_t>(src[2 * C + d]) : acc_t(0);
      }
      matmul(q.data(), n, D, kt.data(), np, np, scores.data());
      softmax_rows(scores.data(), bias.data() + h * n * np, cls.data(), n, np, scale);
      matmul(scores.data(), n, np, v.data(), dp, dp, o.data());
      for (int64_t t = 0; t < n; ++t) {
        if (token[t] < 0) continue;
        scalar_t* dst = out + token[t] * C + h * D;
        for (int64_t d = 0; d < D; ++d) dst[d] = static_cast<scalar_t>(o[t * dp + d]);
      }
    }
  });
}

std::pair<int64_t, int64_t> pair_of(at::IntArrayRef value, const char* name) {
  TORCH_CHECK(value.size() == 2, "fastmatte.window_attention: ", name, " must be 2 ints, got ", value);
  return {value[0], value[1]};
}

Shape check_inputs(const at::Tensor& qkv, const at::Tensor& bias_table, int64_t window,
                   at::IntArrayRef window_size, at::IntArrayRef shift) {
  const char* op = "window_attention";
  check_rank(qkv, op, "qkv", 4, "[B, H, W, 3*C]");
  const auto dtype = qkv.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
              "fastmatte.window_attention: qkv must be float32, float64, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(qkv.device().is_cpu(), "fastmatte.window_attention: qkv must be on the CPU, got ", qkv.device());
  check_contiguous(qkv, op, "qkv");
  check_int_range(window, 1, kMaxTableRange, op, "window");
  check_rank(bias_table, op, "bias_table", 2, "[(2*window-1)^2, heads]");
  const int64_t rows = (2 * window - 1) * (2 * window - 1), heads = bias_table.size(1);
  TORCH_CHECK(bias_table.size(0) == rows && heads >= 1, "fastmatte.window_attention: bias_table must be "
              "[(2*window-1)^2 = ", rows, ", heads >= 1] for window ", window, ", got ", bias_table.sizes());
  check_dtype(bias_table, dtype, op, "bias_table");
  check_same_device(bias_table, qkv, op, "bias_table", "qkv");
  check_contiguous(bias_table, op, "bias_table");
  const int64_t height = qkv.size(1), width = qkv.size(2), channels = qkv.size(3);
  TORCH_CHECK(channels >= 1 && channels % (3 * heads) == 0, "fastmatte.window_attention: qkv's last axis "
              "must be 3 * heads * D with heads = bias_table.size(1) = ", heads, ", got ", channels);
  const auto [wh, ww] = pair_of(window_size, "window_size");
  const auto [sh, sw] = pair_of(shift, "shift");
  check_int_range(wh, 1, window, op, "window_size[0]", "window");
  check_int_range(ww, 1, window, op, "window_size[1]", "window");
  check_int_range(sh, 0, wh - 1, op, "shift[0]", "window_size[0] - 1");
  check_int_range(sw, 0, ww - 1, op, "shift[1]", "window_size[1] - 1");
  // forward_kernel makes the [heads, N, N] bias of a window's scores once per call (N = wh * ww)
  check_output_size({heads, wh * ww, wh * ww}, at::toOpMathType(dtype), op,
                    "the attention matrix of a window");
  const int64_t hp = (height + wh - 1) / wh * wh, wp = (width + ww - 1) / ww * ww;  // the padded map
  return {qkv.size(0), hp, wp, heads, channels / (3 * heads), window, wh, ww, sh, sw, height, width};
}

at::Tensor window_attention_cpu(const at::Tensor& qkv, const at::Tensor& bias_table, int64_t window,
                                at::IntArrayRef window_size, at::IntArrayRef shift) {
  const Shape s = check_inputs(qkv, bias_table, window, window_size, shift);
  at::Tensor out = at::empty({s.batch, s.height, s.width, s.heads * s.dim}, qkv.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, qkv.scalar_type(), "window_attention_cpu", [&] {
    forward_kernel(s, qkv.data_ptr<scalar_t>(), bias_table.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("window_attention", &window_attention_cpu); }

}  // namespace fastmatte
