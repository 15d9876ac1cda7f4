// scatter_tiles on CUDA. Forward: one thread per output pixel, each written once. Backward:
// gathers only (one thread per refined element, one per coarse element): no atomics, so it is
// deterministic. The count stays in device memory and is read by the kernels: no host sync.
// The per-pixel math is csrc/scatter_tiles.h, shared with the CPU kernels line for line.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <type_traits>

#include "scatter_tiles.h"

namespace fastmatte {
namespace {

constexpr int kThreads = 256;

// Rows below this are selected: count, clipped to the capacity because the GPU never validates
// it (that would need a host sync). A negative count selects nothing.
__device__ __forceinline__ int64_t selected_rows(const int32_t* count, int64_t capacity) {
  const int64_t n = *count;
  return n < capacity ? n : capacity;
}

__host__ __device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
__host__ __device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// grid.x = output row (b, c, y), grid.y * blockDim.x + threadIdx.x = output column x.
template <typename scalar_t, bool kBilinear>
__global__ void scatter_tiles_forward_kernel(const scalar_t* __restrict__ coarse,
                                             const scalar_t* __restrict__ refined,
                                             const int32_t* __restrict__ tile_map,
                                             const int32_t* __restrict__ count,
                                             scalar_t* __restrict__ alpha, int64_t C, int64_t h,
                                             int64_t w, int64_t t, int64_t capacity) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t H = h * t, W = w * t;
  const int64_t x = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (x >= W) return;
  const int64_t row = blockIdx.x;
  const int64_t y = row % H, bc = row / H, b = bc / C, c = bc % C;
  const int64_t ty = y / t, tx = x / t;
  const int32_t r = tile_map[(b * h + ty) * w + tx];
  opmath_t v;
  if (is_selected(r, selected_rows(count, capacity))) {
    v = static_cast<opmath_t>(refined[((r * C + c) * t + (y - ty * t)) * t + (x - tx * t)]);
  } else {
    v = upsampled_at(kBilinear, coarse + bc * h * w, w, axis_tap<opmath_t>(kBilinear, y, h, H),
                     axis_tap<opmath_t>(kBilinear, x, w, W));
  }
  alpha[row * W + x] = static_cast<scalar_t>(clamp01(v));
}

// One thread per element (r, c, dy, dx) of grad_refined: the grad of the pixel row r wrote,
// through the clamp mask; 0 for rows past count and rows not pasted anywhere.
template <typename scalar_t>
__global__ void scatter_tiles_grad_refined_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ refined,
    const int32_t* __restrict__ tiles, const int32_t* __restrict__ tile_map,
    const int32_t* __restrict__ count, scalar_t* __restrict__ grad_refined, int64_t B, int64_t C,
    int64_t h, int64_t w, int64_t t, int64_t capacity) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= capacity * C * t * t) return;
  const int64_t dx = i % t, dy = i / t % t, c = i / (t * t) % C, r = i / (t * t * C);
  scalar_t out = scalar_t(0);
  if (r < selected_rows(count, capacity)) {
    const int64_t b = tiles[3 * r], ty = tiles[3 * r + 1], tx = tiles[3 * r + 2];
    // An out-of-grid row (a corrupt selection, unvalidated here) is skipped, not read past.
    const bool on_grid = b >= 0 && b < B && ty >= 0 && ty < h && tx >= 0 && tx < w;
    if (on_grid && tile_map[(b * h + ty) * w + tx] == r &&
        inside01(static_cast<opmath_t>(refined[i]))) {
      out = grad[((b * C + c) * h * t + ty * t + dy) * (w * t) + tx * t + dx];
    }
  }
  grad_refined[i] = out;
}

// One thread per coarse element (b, c, i, j): the sum over the output pixels that read it (only
// rows in [(i-1)t, (i+2)t) and columns in [(j-1)t, (j+2)t) can) and were not replaced, of tap
// weight x clamp mask x grad. Same summation order as the CPU kernel: over y per column x, then
// over x.
template <typename scalar_t, bool kBilinear>
__global__ void scatter_tiles_grad_coarse_kernel(const scalar_t* __restrict__ grad,
                                                 const scalar_t* __restrict__ coarse,
                                                 const int32_t* __restrict__ tile_map,
                                                 const int32_t* __restrict__ count,
                                                 scalar_t* __restrict__ grad_coarse, int64_t B,
                                                 int64_t C, int64_t h, int64_t w, int64_t t,
                                                 int64_t capacity) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= B * C * h * w) return;
  const int64_t H = h * t, W = w * t;
  const int64_t j = k % w, i = k / w % h, bc = k / (h * w), b = bc / C;
  const int64_t n = selected_rows(count, capacity);
  const scalar_t* plane = coarse + bc * h * w;
  const scalar_t* g = grad + bc * H * W;
  const int32_t* map = tile_map + b * h * w;
  opmath_t sum = 0;
  for (int64_t x = imax(0, (j - 1) * t); x < imin(W, (j + 2) * t); ++x) {
    const BilinearTap<opmath_t> tx = axis_tap<opmath_t>(kBilinear, x, w, W);
    opmath_t wx;
    if (!tap_weight(tx, j, &wx)) continue;
    opmath_t column = 0;
    for (int64_t y = imax(0, (i - 1) * t); y < imin(H, (i + 2) * t); ++y) {
      const BilinearTap<opmath_t> ty = axis_tap<opmath_t>(kBilinear, y, h, H);
      opmath_t wy;
      if (!tap_weight(ty, i, &wy)) continue;
      if (is_selected(map[(y / t) * w + x / t], n)) continue;
      if (!inside01(upsampled_at(kBilinear, plane, w, ty, tx))) continue;
      column += wy * static_cast<opmath_t>(g[y * W + x]);
    }
    sum += wx * column;
  }
  grad_coarse[k] = static_cast<scalar_t>(sum);
}

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

void check_grid(int64_t blocks_x, int64_t blocks_y, const char* op) {
  TORCH_CHECK(blocks_x <= 2147483647 && blocks_y <= 65535, "fastmatte.", op,
              ": input too large for one CUDA launch (", blocks_x, " x ", blocks_y, " blocks)");
}

// Calls f(std::true_type{}) for mode "bilinear", f(std::false_type{}) for "nearest", so each
// kernel is compiled per mode and branches on it at compile time.
template <typename F>
void with_mode(c10::string_view mode, F&& f) {
  if (mode == "bilinear") {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

at::Tensor scatter_tiles_cuda(const at::Tensor& coarse, const at::Tensor& refined,
                              const at::Tensor& tiles, const at::Tensor& count,
                              const at::Tensor& tile_map, c10::string_view mode) {
  const char* op = "scatter_tiles";
  const ScatterSizes s = check_scatter_inputs(coarse, refined, tiles, count, tile_map, mode, op);
  c10::cuda::CUDAGuard guard(coarse.device());
  const int64_t H = s.h * s.t, W = s.w * s.t;
  at::Tensor alpha = at::empty({s.B, s.C, H, W}, coarse.options());
  if (alpha.numel() == 0) return alpha;
  // Narrow images get a block of the row's width (rounded up to a warp), not 256 idle threads.
  const int threads = static_cast<int>(imin(kThreads, (W + 31) / 32 * 32));
  const int64_t rows = s.B * s.C * H, column_blocks = (W + threads - 1) / threads;
  check_grid(rows, column_blocks, op);
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(column_blocks));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, coarse.scalar_type(), "scatter_tiles_cuda", [&] {
    with_mode(mode, [&](auto bilinear) {
      scatter_tiles_forward_kernel<scalar_t, decltype(bilinear)::value><<<grid, threads, 0, stream>>>(
          coarse.data_ptr<scalar_t>(), refined.data_ptr<scalar_t>(), tile_map.data_ptr<int32_t>(),
          count.data_ptr<int32_t>(), alpha.data_ptr<scalar_t>(), s.C, s.h, s.w, s.t, s.capacity);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return alpha;
}

std::tuple<at::Tensor, at::Tensor> scatter_tiles_backward_cuda(
    const at::Tensor& grad_alpha, const at::Tensor& coarse, const at::Tensor& refined,
    const at::Tensor& tiles, const at::Tensor& count, const at::Tensor& tile_map,
    c10::string_view mode) {
  const char* op = "scatter_tiles_backward";
  const ScatterSizes s = check_scatter_inputs(coarse, refined, tiles, count, tile_map, mode, op);
  check_scatter_grad(grad_alpha, coarse, s, op);
  c10::cuda::CUDAGuard guard(coarse.device());
  at::Tensor grad_coarse = at::empty_like(coarse);
  at::Tensor grad_refined = at::empty_like(refined);
  const int64_t coarse_blocks = blocks_for(coarse.numel());
  const int64_t refined_blocks = blocks_for(refined.numel());
  check_grid(coarse_blocks, 1, op);
  check_grid(refined_blocks, 1, op);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, coarse.scalar_type(), "scatter_tiles_backward_cuda", [&] {
    if (refined_blocks > 0) {
      scatter_tiles_grad_refined_kernel<scalar_t><<<refined_blocks, kThreads, 0, stream>>>(
          grad_alpha.data_ptr<scalar_t>(), refined.data_ptr<scalar_t>(),
          tiles.data_ptr<int32_t>(), tile_map.data_ptr<int32_t>(), count.data_ptr<int32_t>(),
          grad_refined.data_ptr<scalar_t>(), s.B, s.C, s.h, s.w, s.t, s.capacity);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (coarse_blocks > 0) {
      with_mode(mode, [&](auto bilinear) {
        scatter_tiles_grad_coarse_kernel<scalar_t, decltype(bilinear)::value>
            <<<coarse_blocks, kThreads, 0, stream>>>(
                grad_alpha.data_ptr<scalar_t>(), coarse.data_ptr<scalar_t>(),
                tile_map.data_ptr<int32_t>(), count.data_ptr<int32_t>(),
                grad_coarse.data_ptr<scalar_t>(), s.B, s.C, s.h, s.w, s.t, s.capacity);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
  });
  return {grad_coarse, grad_refined};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastmatte, CUDA, m) {
  m.impl("scatter_tiles", &scatter_tiles_cuda);
  m.impl("scatter_tiles_backward", &scatter_tiles_backward_cuda);
}

}  // namespace fastmatte
