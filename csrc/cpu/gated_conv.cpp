// gated_conv (PP-Matting's gated convolution, BatchNorms folded into the weights) on the CPU.
//
// x [B, C, H*W] is cut into blocks of up to kBlock consecutive pixels of one image (a C x P
// strided matrix); at::parallel_for runs over blocks. A block is copied once into a scratch
// matrix in the math type (fp32, fp64 for fp64) with two more rows, the resized guide and ones,
// so the first 1x1 conv with its guide column and bias is one small product
// [C+1, C+2] x [C+2, P], and the output conv another, [C, C] x [C, P]; out = (1 + gate) *
// (W_out x), which is W_out (x (1 + gate)) up to rounding. The products (cpu/block_products.h)
// and the elementwise passes run in code compiled for the CPU's vector ISA, picked at load
// time. Forward reads x and the low-res guide once and writes out once. The forward also takes a
// channels-last x (a block is then P consecutive pixels of C channels each, transposed into the
// scratch matrix) and writes out in x's layout; the backward takes contiguous tensors.
//
// Backward recomputes each block's forward. The block's output-side gradients, m*grad_out and
// d(hidden pre-activation), stacked as D [2C+1, P], give grad_x and the full-resolution guide
// gradient as one product [C+1, 2C+1] x D, and every weight gradient as the sums over pixels
// D [XG; 1]^T (plus the gate's from the hidden activations). Those sums are kept per fixed group
// of blocks (the groups depend on the shapes only) and the groups are added in index order, so
// the result is the same bits for any thread count (on one machine: whether the clone uses FMA
// changes the rounding from one CPU to another). The guide's gradient is then ATen's
// upsample_bilinear2d_backward of the full-resolution one, as for eager F.interpolate.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "checks.h"
#include "cpu/block_products.h"
#include "resample.h"

namespace fastmatte {
namespace {

constexpr int64_t kBlock = 256;  // pixels per block
// Row stride of the scratch matrices: kBlock plus one cache line, so that the same column of
// consecutive rows does not fall into the same few L1 sets (a 1 KiB stride would).
constexpr int64_t kLd = kBlock + 16;
constexpr int64_t kPad = 16;  // computed widths are multiples of 16 (2 vectors of float)
constexpr int64_t kMaxGroups = 256;  // backward: groups of blocks with their own weight sums

// ReLU that keeps NaN (as torch.relu does).
template <typename T> FM_ALWAYS_INLINE T relu(T v) { return v < T(0) ? T(0) : v; }

// gate[p] = sigmoid(b_gate + w_gate . relu(z[:, p])) for the C+1 hidden rows of z.
template <typename T>
FM_ALWAYS_INLINE void gate_impl(const T* __restrict__ z, const T* __restrict__ w_gate, int64_t rows,
                                T b_gate, int64_t width, T* __restrict__ gate) {
  for (int64_t p = 0; p < width; ++p) gate[p] = b_gate;
  for (int64_t j = 0; j < rows; ++j) {
    const T wj = w_gate[j];
    for (int64_t p = 0; p < width; ++p) gate[p] += wj * relu(z[j * kLd + p]);
  }
  for (int64_t p = 0; p < width; ++p) gate[p] = T(1) / (T(1) + std::exp(-gate[p]));
}

FM_ISA_CLONES void gate_of(const float* z, const float* w_gate, int64_t rows, float b_gate,
                           int64_t width, float* gate) {
  gate_impl(z, w_gate, rows, b_gate, width, gate);
}
FM_ISA_CLONES void gate_of(const double* z, const double* w_gate, int64_t rows, double b_gate,
                           int64_t width, double* gate) {
  gate_impl(z, w_gate, rows, b_gate, width, gate);
}

// The backward between the two products, for one block. In: d rows 0..C-1 = grad_out, y =
// w_out @ x, z = hidden pre-activations, gate. Out: d rows 0..C-1 = m grad_out (m = 1 + gate),
// rows C..2C = d(z); z = relu(z); ds = d(gate logit). out = m y, so d(m) = grad_out . y.
template <typename T>
FM_ALWAYS_INLINE void gate_adjoint_impl(int64_t C, int64_t width, const T* __restrict__ y,
                                        const T* __restrict__ gate, const T* __restrict__ w_gate,
                                        T* __restrict__ d, T* __restrict__ z, T* __restrict__ ds) {
  std::fill(ds, ds + width, T(0));
  for (int64_t i = 0; i < C; ++i)
    for (int64_t p = 0; p < width; ++p) ds[p] += d[i * kLd + p] * y[i * kLd + p];
  for (int64_t i = 0; i < C; ++i)
    for (int64_t p = 0; p < width; ++p) d[i * kLd + p] *= T(1) + gate[p];
  for (int64_t p = 0; p < width; ++p) ds[p] *= gate[p] * (T(1) - gate[p]);
  // ReLU's gradient mask is torch's (result > 0 fails, so NaN passes): 0 where z <= 0.
  for (int64_t j = 0; j <= C; ++j) {
    const T wj = w_gate[j];
    T* __restrict__ zj = z + j * kLd;
    T* __restrict__ dz = d + (C + j) * kLd;
    for (int64_t p = 0; p < width; ++p) {
      const T v = zj[p];
      dz[p] = v <= T(0) ? T(0) : ds[p] * wj;
      zj[p] = relu(v);
    }
  }
}

FM_ISA_CLONES void gate_adjoint(int64_t C, int64_t width, const float* y, const float* gate,
                                const float* w_gate, float* d, float* z, float* ds) {
  gate_adjoint_impl(C, width, y, gate, w_gate, d, z, ds);
}
FM_ISA_CLONES void gate_adjoint(int64_t C, int64_t width, const double* y, const double* gate,
                                const double* w_gate, double* d, double* z, double* ds) {
  gate_adjoint_impl(C, width, y, gate, w_gate, d, z, ds);
}

struct Shape {
  int64_t batch, channels, height, width, guide_h, guide_w;
  bool channels_last;  // x (and out) [B, H, W, C] in memory
  int64_t pixels() const { return height * width; }
  int64_t blocks_per_image() const { return (pixels() + kBlock - 1) / kBlock; }
};

// The weights in the math type T, laid out for the block products.
template <typename T>
struct Weights {
  std::vector<T> hidden;  // [C+1, C+2]: w_hidden, then b_hidden as the ones row's column
  std::vector<T> out;     // [C, C]: w_out
  std::vector<T> gate;    // [C+1]: w_gate
  std::vector<T> back;    // [C+1, 2C+1]: rows k < C give grad_x, row C the guide's gradient
  T gate_bias;
};

template <typename T, typename scalar_t>
Weights<T> weights_of(const at::Tensor& w_hidden, const at::Tensor& b_hidden,
                      const at::Tensor& w_gate, const at::Tensor& b_gate,
                      const at::Tensor& w_out, int64_t C, bool backward) {
  const scalar_t* wh = w_hidden.data_ptr<scalar_t>();
  const scalar_t* bh = b_hidden.data_ptr<scalar_t>();
  const scalar_t* wo = w_out.data_ptr<scalar_t>();
  const scalar_t* wg = w_gate.data_ptr<scalar_t>();
  Weights<T> w{std::vector<T>((C + 1) * (C + 2)), std::vector<T>(wo, wo + C * C),
               std::vector<T>(wg, wg + C + 1), {}, static_cast<T>(b_gate.data_ptr<scalar_t>()[0])};
  for (int64_t j = 0; j <= C; ++j) {
    for (int64_t k = 0; k <= C; ++k) w.hidden[j * (C + 2) + k] = static_cast<T>(wh[j * (C + 1) + k]);
    w.hidden[j * (C + 2) + C + 1] = static_cast<T>(bh[j]);
  }
  if (backward) {
    // d(x_k) = sum_i w_out[i, k] (m g)_i + sum_j w_hidden[j, k] dz_j; d(guide) is column C's.
    w.back.assign((C + 1) * (2 * C + 1), T(0));
    for (int64_t k = 0; k <= C; ++k) {
      T* row = w.back.data() + k * (2 * C + 1);
      for (int64_t i = 0; k < C && i < C; ++i) row[i] = static_cast<T>(wo[i * C + k]);
      for (int64_t j = 0; j <= C; ++j) row[C + j] = static_cast<T>(wh[j * (C + 1) + k]);
    }
  }
  return w;
}

// Bilinear taps of every full-resolution row and column into the guide.
template <typename T>
struct GuideTaps {
  std::vector<BilinearTap<T>> rows, cols;
  explicit GuideTaps(const Shape& s) : rows(s.height), cols(s.width) {
    for (int64_t y = 0; y < s.height; ++y) rows[y] = bilinear_tap<T>(y, s.guide_h, s.height);
    for (int64_t x = 0; x < s.width; ++x) cols[x] = bilinear_tap<T>(x, s.guide_w, s.width);
  }
};

// One block: image b, pixels [start, start + count) of its H*W plane.
struct Block {
  int64_t b, start, count, width;  // width: count rounded up to kPad
  Block(const Shape& s, int64_t index)
      : b(index / s.blocks_per_image()), start(index % s.blocks_per_image() * kBlock),
        count(std::min(kBlock, s.pixels() - start)), width((count + kPad - 1) / kPad * kPad) {}
};

// rows [C, width] of dst = the block's columns of src [B, C, H*W] (or of [B, H*W, C] when
// channels_last), zero past count.
template <typename T, typename scalar_t>
void load_rows(const scalar_t* src, const Shape& s, const Block& blk, T* dst) {
  if (s.channels_last) {
    const scalar_t* pixels = src + (blk.b * s.pixels() + blk.start) * s.channels;
    for (int64_t p = 0; p < blk.count; ++p)
      for (int64_t c = 0; c < s.channels; ++c)
        dst[c * kLd + p] = static_cast<T>(pixels[p * s.channels + c]);
    for (int64_t c = 0; c < s.channels; ++c)
      std::fill(dst + c * kLd + blk.count, dst + c * kLd + blk.width, T(0));
    return;
  }
  for (int64_t c = 0; c < s.channels; ++c) {
    const scalar_t* row = src + (blk.b * s.channels + c) * s.pixels() + blk.start;
    T* out = dst + c * kLd;
    for (int64_t p = 0; p < blk.count; ++p) out[p] = static_cast<T>(row[p]);
    std::fill(out + blk.count, out + blk.width, T(0));
  }
}

// xs [C+2, width]: the block's x, the resized guide, ones (all zero past count).
template <typename T, typename scalar_t>
void load_block(const scalar_t* x, const scalar_t* guide, const Shape& s, const GuideTaps<T>& taps,
                const Block& blk, T* xs) {
  load_rows(x, s, blk, xs);
  T* g = xs + s.channels * kLd;
  T* ones = g + kLd;
  const scalar_t* plane = guide + blk.b * s.guide_h * s.guide_w;
  int64_t y = blk.start / s.width, col = blk.start % s.width;
  for (int64_t p = 0; p < blk.count; ++p) {
    g[p] = bilinear_at(plane, s.guide_w, taps.rows[y], taps.cols[col]);
    ones[p] = T(1);
    if (++col == s.width) col = 0, ++y;
  }
  std::fill(g + blk.count, g + blk.width, T(0));
  std::fill(ones + blk.count, ones + blk.width, T(0));
}

template <typename scalar_t>
void forward_kernel(const scalar_t* x, const scalar_t* guide, const Weights<at::opmath_type<scalar_t>>& w,
                    const Shape& s, scalar_t* out) {
  using T = at::opmath_type<scalar_t>;
  const int64_t C = s.channels;
  const GuideTaps<T> taps(s);
  at::parallel_for(0, s.batch * s.blocks_per_image(), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> xs((C + 2) * kLd), z((C + 1) * kLd), y(C * kLd), gate(kLd);
    for (int64_t index = begin; index < end; ++index) {
      const Block blk(s, index);
      load_block(x, guide, s, taps, blk, xs.data());
      matmul(w.hidden.data(), C + 1, C + 2, xs.data(), kLd, blk.width, z.data());
      gate_of(z.data(), w.gate.data(), C + 1, w.gate_bias, blk.width, gate.data());
      matmul(w.out.data(), C, C, xs.data(), kLd, blk.width, y.data());
      if (s.channels_last) {
        scalar_t* dst = out + (blk.b * s.pixels() + blk.start) * C;
        for (int64_t p = 0; p < blk.count; ++p)
          for (int64_t i = 0; i < C; ++i)
            dst[p * C + i] = static_cast<scalar_t>((T(1) + gate[p]) * y[i * kLd + p]);
        continue;
      }
      for (int64_t i = 0; i < C; ++i) {
        scalar_t* dst = out + (blk.b * C + i) * s.pixels() + blk.start;
        const T* yi = y.data() + i * kLd;
        for (int64_t p = 0; p < blk.count; ++p) dst[p] = static_cast<scalar_t>((T(1) + gate[p]) * yi[p]);
      }
    }
  });
}

// Sizes of one group's weight-gradient sums: [2C+1, C+2] (rows of D against the rows of
// [x; guide; 1]) then [C+2] (ds against relu(z) and ones).
int64_t partial_size(int64_t C) { return (2 * C + 1) * (C + 2) + C + 2; }

// grad_x [B, C, H*W] (scalar_t), grad_guide_full [B, H*W] and partials [groups, partial_size]
// (both in T; partials zero-initialised).
template <typename scalar_t>
void backward_kernel(const scalar_t* grad_out, const scalar_t* x, const scalar_t* guide,
                     const Weights<at::opmath_type<scalar_t>>& w, const Shape& s, int64_t groups,
                     scalar_t* grad_x, at::opmath_type<scalar_t>* grad_guide_full,
                     at::opmath_type<scalar_t>* partials) {
  using T = at::opmath_type<scalar_t>;
  const int64_t C = s.channels, blocks = s.batch * s.blocks_per_image();
  const GuideTaps<T> taps(s);
  at::parallel_for(0, groups, 1, [&](int64_t group_begin, int64_t group_end) {
    std::vector<T> xs((C + 2) * kLd), z((C + 2) * kLd), y(C * kLd), d((2 * C + 1) * kLd),
        dx((C + 1) * kLd), gate(kLd), ds(kLd);
    for (int64_t group = group_begin; group < group_end; ++group) {
      T* partial = partials + group * partial_size(C);
      for (int64_t index = group * blocks / groups; index < (group + 1) * blocks / groups; ++index) {
        const Block blk(s, index);
        const int64_t n = blk.width;
        load_block(x, guide, s, taps, blk, xs.data());
        load_rows(grad_out, s, blk, d.data());
        matmul(w.hidden.data(), C + 1, C + 2, xs.data(), kLd, n, z.data());
        gate_of(z.data(), w.gate.data(), C + 1, w.gate_bias, n, gate.data());
        matmul(w.out.data(), C, C, xs.data(), kLd, n, y.data());
        gate_adjoint(C, n, y.data(), gate.data(), w.gate.data(), d.data(), z.data(), ds.data());
        // A ones row under relu(z): one call sums ds h_j (w_gate) and ds (b_gate).
        std::copy(xs.begin() + (C + 1) * kLd, xs.begin() + (C + 1) * kLd + n, z.begin() + (C + 1) * kLd);
        add_dots(d.data(), 2 * C + 1, xs.data(), C + 2, kLd, n, partial, C + 2);
        add_dots(ds.data(), 1, z.data(), C + 2, kLd, n, partial + (2 * C + 1) * (C + 2), C + 2);
        matmul(w.back.data(), C + 1, 2 * C + 1, d.data(), kLd, n, dx.data());
        for (int64_t k = 0; k < C; ++k) {
          scalar_t* dst = grad_x + (blk.b * C + k) * s.pixels() + blk.start;
          for (int64_t p = 0; p < blk.count; ++p) dst[p] = static_cast<scalar_t>(dx[k * kLd + p]);
        }
        std::copy(dx.begin() + C * kLd, dx.begin() + C * kLd + blk.count,
                  grad_guide_full + blk.b * s.pixels() + blk.start);
      }
    }
  });
}

Shape check_inputs(const char* op, const at::Tensor& x, const at::Tensor& guide,
                   const at::Tensor& w_hidden, const at::Tensor& b_hidden, const at::Tensor& w_gate,
                   const at::Tensor& b_gate, const at::Tensor& w_out, bool channels_last_ok) {
  check_rank(x, op, "x", 4, "[B, C, H, W]");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "fastmatte.", op, ": x must be float32, float64, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(x.size(1) >= 1, "fastmatte.", op, ": x must have at least one channel, got ", x.sizes());
  const bool channels_last = channels_last_ok && !x.is_contiguous() &&
                             x.is_contiguous(at::MemoryFormat::ChannelsLast);
  if (!channels_last) check_contiguous(x, op, "x");
  const int64_t B = x.size(0), C = x.size(1);
  check_rank(guide, op, "guide", 4, "[B, 1, h, w]");
  TORCH_CHECK(guide.size(0) == B && guide.size(1) == 1 && guide.size(2) >= 1 && guide.size(3) >= 1,
              "fastmatte.", op, ": guide must be [B=", B, ", 1, h, w] with h, w >= 1, got ",
              guide.sizes());
  const std::pair<const char*, const at::Tensor*> tensors[] = {
      {"guide", &guide}, {"w_hidden", &w_hidden}, {"b_hidden", &b_hidden},
      {"w_gate", &w_gate}, {"b_gate", &b_gate}, {"w_out", &w_out}};
  const std::vector<int64_t> sizes[] = {guide.sizes().vec(), {C + 1, C + 1}, {C + 1}, {C + 1}, {1}, {C, C}};
  for (int i = 0; i < 6; ++i) {
    const auto& [name, t] = tensors[i];
    TORCH_CHECK(t->sizes() == at::IntArrayRef(sizes[i]), "fastmatte.", op, ": ", name, " must be ",
                at::IntArrayRef(sizes[i]), " for x's C = ", C, ", got ", t->sizes());
    check_dtype(*t, dtype, op, name);
    check_same_device(*t, x, op, name, "x");
    check_contiguous(*t, op, name);
  }
  return {B, C, x.size(2), x.size(3), guide.size(2), guide.size(3), channels_last};
}

at::Tensor gated_conv_cpu(const at::Tensor& x, const at::Tensor& guide, const at::Tensor& w_hidden,
                          const at::Tensor& b_hidden, const at::Tensor& w_gate,
                          const at::Tensor& b_gate, const at::Tensor& w_out) {
  const Shape s = check_inputs("gated_conv", x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out, true);
  at::Tensor out = at::empty_like(x);  // x's layout
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gated_conv_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto w = weights_of<T, scalar_t>(w_hidden, b_hidden, w_gate, b_gate, w_out, s.channels, false);
    forward_kernel(x.data_ptr<scalar_t>(), guide.data_ptr<scalar_t>(), w, s, out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gated_conv_backward_cpu(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& guide,
                        const at::Tensor& w_hidden, const at::Tensor& b_hidden,
                        const at::Tensor& w_gate, const at::Tensor& b_gate,
                        const at::Tensor& w_out) {
  const char* op = "gated_conv_backward";
  const Shape s = check_inputs(op, x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out, false);
  TORCH_CHECK(grad_out.sizes() == x.sizes(), "fastmatte.", op, ": grad_out must be x's shape ",
              x.sizes(), ", got ", grad_out.sizes());
  check_dtype(grad_out, x.scalar_type(), op, "grad_out");
  check_same_device(grad_out, x, op, "grad_out", "x");
  check_contiguous(grad_out, op, "grad_out");
  const int64_t C = s.channels, blocks = s.batch * s.blocks_per_image();
  const auto dtype = x.scalar_type();
  const auto acc = x.options().dtype(at::toOpMathType(dtype));
  if (x.numel() == 0) {
    return {at::zeros_like(x), at::zeros_like(guide), at::zeros_like(w_hidden),
            at::zeros_like(b_hidden), at::zeros_like(w_gate), at::zeros_like(b_gate),
            at::zeros_like(w_out)};
  }
  const int64_t groups = std::min(blocks, kMaxGroups);
  at::Tensor grad_x = at::empty_like(x);
  at::Tensor grad_guide_full = at::empty({s.batch, 1, s.height, s.width}, acc);
  at::Tensor partials = at::zeros({groups, partial_size(C)}, acc);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "gated_conv_backward_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    const auto w = weights_of<T, scalar_t>(w_hidden, b_hidden, w_gate, b_gate, w_out, C, true);
    T* sums = partials.data_ptr<T>();
    backward_kernel(grad_out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
                    guide.data_ptr<scalar_t>(), w, s, groups, grad_x.data_ptr<scalar_t>(),
                    grad_guide_full.data_ptr<T>(), sums);
    // Groups are added in index order (at::sum's order could depend on the thread count).
    for (int64_t group = 1; group < groups; ++group)
      for (int64_t e = 0; e < partial_size(C); ++e) sums[e] += sums[group * partial_size(C) + e];
  });
  const at::Tensor total = partials[0];
  const at::Tensor by_row = total.narrow(0, 0, (2 * C + 1) * (C + 2)).view({2 * C + 1, C + 2});
  const at::Tensor gate_sums = total.narrow(0, (2 * C + 1) * (C + 2), C + 2);
  const auto as_output = [&](const at::Tensor& t) {
    return t.to(dtype, /*non_blocking=*/false, /*copy=*/true, at::MemoryFormat::Contiguous);
  };
  at::Tensor grad_guide = at::upsample_bilinear2d_backward(
      grad_guide_full, {s.height, s.width}, {s.batch, 1, s.guide_h, s.guide_w}, false);
  return {grad_x,
          as_output(grad_guide),
          as_output(by_row.slice(0, C).slice(1, 0, C + 1)),
          as_output(by_row.slice(0, C).select(1, C + 1)),
          as_output(gate_sums.narrow(0, 0, C + 1)),
          as_output(gate_sums.narrow(0, C + 1, 1)),
          as_output(by_row.slice(0, 0, C).slice(1, 0, C))};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) {
  m.impl("gated_conv", &gated_conv_cpu);
  m.impl("gated_conv_backward", &gated_conv_backward_cpu);
}

}  // namespace fastmatte
