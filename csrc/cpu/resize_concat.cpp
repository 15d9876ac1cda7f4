// resize_concat on the CPU: torch.cat([F.interpolate(t, size, bilinear) for t in tensors], 1) in
// one pass that writes the channels-last output once. Tasks are runs of output rows (b, y); for
// each row every input writes its channel slice: channels-last inputs blend four source pixels
// over their contiguous channels (the inner loop vectorizes), NCHW inputs gather channel by
// channel, inputs already at the output size copy their row. The column taps are computed once
// per input. Neither an upsampled tensor nor a concatenation copy is ever made.
// The backward is ATen's upsample_bilinear2d_backward per channel slice: see below.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <string>
#include <vector>

#include "checks.h"
#include "cpu/avx2_clone.h"
#include "resample.h"


namespace fastmatte {
namespace {

struct OutputSize {
  int64_t B, C, H, W;
};

std::string input_name(size_t i) { return "tensors[" + std::to_string(i) + "]"; }

// tensors: 1+ [B, C_i, h_i, w_i] float tensors of one batch size, dtype and device, C_i, h_i, w_i >= 1
// (F.interpolate refuses C = 0);
// size: (H, W) >= 1. Returns the output's [B, sum C_i, H, W].
OutputSize check_inputs(at::TensorList tensors, at::IntArrayRef size, const char* op) {
  TORCH_CHECK(!tensors.empty(), "fastmatte.", op, ": tensors must hold at least one tensor, got none");
  TORCH_CHECK(size.size() == 2, "fastmatte.", op, ": size must be (H, W), got ", size);
  check_int_range(size[0], 1, kInt32Max, op, "size[0] (H)");
  check_int_range(size[1], 1, kInt32Max, op, "size[1] (W)");
  const at::Tensor& first = tensors[0];
  int64_t channels = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const std::string name = input_name(i);
    check_rank(t, op, name.c_str(), 4, "[B, C, h, w]");
    check_float_dtype(t, op, name.c_str());
    if (i == 0) continue;
    TORCH_CHECK(t.scalar_type() == first.scalar_type(), "fastmatte.", op, ": ", name, " must be ",
                first.scalar_type(), " (tensors[0]'s dtype), got ", t.scalar_type());
    check_same_device(t, first, op, name.c_str(), "tensors[0]");
    TORCH_CHECK(t.size(0) == first.size(0), "fastmatte.", op, ": ", name, " must have tensors[0]'s batch ",
                first.size(0), ", got ", t.sizes());
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    TORCH_CHECK(t.size(1) > 0 && t.size(2) > 0 && t.size(3) > 0, "fastmatte.", op, ": ", input_name(i),
                " must be [B, C, h, w] with C, h, w >= 1, got ", t.sizes());
    channels += t.size(1);
  }
  const OutputSize out{first.size(0), channels, size[0], size[1]};
  check_output_size({out.B, out.C, out.H, out.W}, first.scalar_type(), op, "the output");
  return out;
}

// The channels-last strides of a [B, C, H, W] tensor as at::empty makes them.
std::vector<int64_t> channels_last_strides(at::IntArrayRef s) {
  return {s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]};
}

// One axis' taps as ATen's CPU kernel makes them (an axis of equal sizes samples itself).
template <typename opmath_t>
FM_INLINE BilinearTap<opmath_t> axis_tap(int64_t dst, int64_t in_size, int64_t out_size) {
  return aten_cpu_bilinear_tap<false, opmath_t>(dst, in_size, out_size);
}

// One input as the row loop reads it.
template <typename scalar_t>
struct Source {
  using opmath_t = at::opmath_type<scalar_t>;
  const scalar_t* data;
  int64_t C, h, w;
  int64_t offset;       // first output channel
  bool channels_last;   // else NCHW
  bool identity;        // (h, w) == (H, W): rows are copied
  // Column taps of every output column; for channels-last inputs the indices are pre-multiplied
  // by C (element offsets within a source row).
  std::vector<int64_t> x0, x1;
  std::vector<opmath_t> l0, l1;
};

template <typename scalar_t>
struct Rows {
  using opmath_t = at::opmath_type<scalar_t>;
  const std::vector<Source<scalar_t>>* sources;
  scalar_t* out;
  OutputSize s;

  // Output rows [begin, end) of the B * H rows.
  FM_INLINE void run(int64_t begin, int64_t end) const {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / s.H, y = row % s.H;
      scalar_t* out_row = out + row * s.W * s.C;
      for (const Source<scalar_t>& src : *sources) {
        if (src.identity) {
          copy_row(src, b, y, out_row + src.offset);
        } else if (src.channels_last) {
          blend_row_channels_last(src, b, y, out_row + src.offset);
        } else {
          blend_row_planar(src, b, y, out_row + src.offset);
        }
      }
    }
  }

  FM_INLINE void copy_row(const Source<scalar_t>& src, int64_t b, int64_t y,
                          scalar_t* __restrict out_row) const {
    const int64_t C = src.C, W = s.W, stride = s.C;
    if (src.channels_last) {
      const scalar_t* in = src.data + (b * s.H + y) * W * C;
      for (int64_t x = 0; x < W; ++x) std::memcpy(out_row + x * stride, in + x * C, C * sizeof(scalar_t));
      return;
    }
    const int64_t plane = s.H * W;
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* __restrict in = src.data + (b * C + c) * plane + y * W;
      for (int64_t x = 0; x < W; ++x) out_row[x * stride + c] = in[x];
    }
  }

  // out = (1 - ly) * ((1 - lx) * v00 + lx * v01) + ly * ((1 - lx) * v10 + lx * v11), the order
  // of ATen's separable CPU kernel (rows outer, columns inner), in opmath_t.
  FM_INLINE void blend_row_channels_last(const Source<scalar_t>& src, int64_t b, int64_t y,
                                         scalar_t* __restrict out_row) const {
    const int64_t C = src.C, stride = s.C, row = src.w * C;
    const auto ty = axis_tap<opmath_t>(y, src.h, s.H);
    const opmath_t ly1 = ty.lambda1, ly0 = opmath_t(1) - ly1;
    const scalar_t* image = src.data + b * src.h * row;
    const scalar_t* r0 = image + ty.i0 * row;
    const scalar_t* r1 = image + ty.i1 * row;
    for (int64_t x = 0; x < s.W; ++x) {
      const scalar_t* __restrict v00 = r0 + src.x0[x];
      const scalar_t* __restrict v01 = r0 + src.x1[x];
      const scalar_t* __restrict v10 = r1 + src.x0[x];
      const scalar_t* __restrict v11 = r1 + src.x1[x];
      const opmath_t lx0 = src.l0[x], lx1 = src.l1[x];
      scalar_t* __restrict o = out_row + x * stride;
      for (int64_t c = 0; c < C; ++c) {
        const opmath_t top = lx0 * static_cast<opmath_t>(v00[c]) + lx1 * static_cast<opmath_t>(v01[c]);
        const opmath_t bottom = lx0 * static_cast<opmath_t>(v10[c]) + lx1 * static_cast<opmath_t>(v11[c]);
        o[c] = static_cast<scalar_t>(ly0 * top + ly1 * bottom);
      }
    }
  }

  FM_INLINE void blend_row_planar(const Source<scalar_t>& src, int64_t b, int64_t y,
                                  scalar_t* __restrict out_row) const {
    const int64_t C = src.C, stride = s.C, plane = src.h * src.w;
    const auto ty = axis_tap<opmath_t>(y, src.h, s.H);
    const opmath_t ly1 = ty.lambda1, ly0 = opmath_t(1) - ly1;
    const int64_t* __restrict x0 = src.x0.data();
    const int64_t* __restrict x1 = src.x1.data();
    const opmath_t* __restrict l0 = src.l0.data();
    const opmath_t* __restrict l1 = src.l1.data();
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* channel = src.data + (b * C + c) * plane;
      const scalar_t* __restrict r0 = channel + ty.i0 * src.w;
      const scalar_t* __restrict r1 = channel + ty.i1 * src.w;
      scalar_t* __restrict o = out_row + c;
      for (int64_t x = 0; x < s.W; ++x) {
        const opmath_t top = l0[x] * static_cast<opmath_t>(r0[x0[x]]) + l1[x] * static_cast<opmath_t>(r0[x1[x]]);
        const opmath_t bottom = l0[x] * static_cast<opmath_t>(r1[x0[x]]) + l1[x] * static_cast<opmath_t>(r1[x1[x]]);
        o[x * stride] = static_cast<scalar_t>(ly0 * top + ly1 * bottom);
      }
    }
  }
};

at::Tensor resize_concat_cpu(at::TensorList tensors, at::IntArrayRef size) {
  const char* op = "resize_concat";
  const OutputSize s = check_inputs(tensors, size, op);
  const at::Tensor& first = tensors[0];
  at::Tensor out = at::empty({s.B, s.C, s.H, s.W}, first.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (s.B == 0) return out;
  // NCHW and channels-last inputs are read in place; any other layout is copied to channels-last.
  std::vector<at::Tensor> inputs;
  std::vector<bool> channels_last;
  for (const at::Tensor& t : tensors) {
    const bool planar = t.is_contiguous();
    const bool cl = !planar && t.is_contiguous(at::MemoryFormat::ChannelsLast);
    inputs.push_back(planar || cl ? t : t.contiguous(at::MemoryFormat::ChannelsLast));
    channels_last.push_back(!planar);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, first.scalar_type(), "resize_concat", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    std::vector<Source<scalar_t>> sources(inputs.size());
    int64_t offset = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const at::Tensor& t = inputs[i];
      Source<scalar_t>& src = sources[i];
      src.data = t.data_ptr<scalar_t>();
      src.C = t.size(1);
      src.h = t.size(2);
      src.w = t.size(3);
      src.offset = offset;
      src.channels_last = channels_last[i];
      src.identity = src.h == s.H && src.w == s.W;
      offset += src.C;
      if (src.identity) continue;
      const int64_t step = src.channels_last ? src.C : 1;
      src.x0.resize(s.W);
      src.x1.resize(s.W);
      src.l0.resize(s.W);
      src.l1.resize(s.W);
      for (int64_t x = 0; x < s.W; ++x) {
        const auto tap = axis_tap<opmath_t>(x, src.w, s.W);
        src.x0[x] = tap.i0 * step;
        src.x1[x] = tap.i1 * step;
        src.l1[x] = tap.lambda1;
        src.l0[x] = opmath_t(1) - tap.lambda1;
      }
    }
    const Rows<scalar_t> rows{&sources, out.data_ptr<scalar_t>(), s};
    // Each task writes at least ~32K output elements.
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, s.W * s.C));
    at::parallel_for(0, s.B * s.H, grain, [&](int64_t begin, int64_t end) {
run_with_best_isa(rows, begin, end);
    });
  });
  return out;
}

// The backward: each input's channel slice of grad, carried back through the bilinear resize by
// ATen's upsample_bilinear2d_backward (the adjoint F.interpolate's autograd uses), or passed
// through for inputs at the output size. Each gradient is channels-last (the output's layout)
// with at::empty's strides, as the fake kernel says.
std::vector<at::Tensor> resize_concat_backward(const at::Tensor& grad, at::TensorList tensors,
                                               at::IntArrayRef size) {
  const char* op = "resize_concat_backward";
  const OutputSize s = check_inputs(tensors, size, op);
  check_rank(grad, op, "grad", 4, "[B, C, H, W]");
  check_dtype(grad, tensors[0].scalar_type(), op, "grad");
  check_same_device(grad, tensors[0], op, "grad", "tensors[0]");
  TORCH_CHECK(grad.size(0) == s.B && grad.size(1) == s.C && grad.size(2) == s.H && grad.size(3) == s.W,
              "fastmatte.", op, ": grad must be [", s.B, ", ", s.C, ", ", s.H, ", ", s.W,
              "] (the output's shape), got ", grad.sizes());
  std::vector<at::Tensor> grads;
  int64_t offset = 0;
  for (const at::Tensor& t : tensors) {
    const int64_t C = t.size(1);
    const at::Tensor slice = grad.narrow(1, offset, C);
    offset += C;
    const bool identity = t.size(2) == s.H && t.size(3) == s.W;
    at::Tensor g = identity ? slice
                            : at::upsample_bilinear2d_backward(slice, {s.H, s.W}, t.sizes(), false);
    const auto strides = channels_last_strides(t.sizes());
    if (identity || g.strides() != at::IntArrayRef(strides)) {  // a slice of grad is never returned
      at::Tensor fresh = at::empty_strided(t.sizes(), strides, grad.options());
      fresh.copy_(g);
      g = fresh;
    }
    grads.push_back(g);
  }
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CPU, m) { m.impl("resize_concat", &resize_concat_cpu); }

// Device-agnostic ATen: the same backward serves the CPU kernel and the Triton one.
TORCH_LIBRARY_IMPL(fastmatte, CompositeExplicitAutograd, m) {
  m.impl("resize_concat_backward", &resize_concat_backward);
}

}  // namespace fastmatte
